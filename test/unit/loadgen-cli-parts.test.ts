import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { functionSpecSchema } from '../../src/api/function-spec.ts';
import { deploySpec, formatProgress } from '../../src/cli/commands/loadgen-run.ts';
import { sampleFunctions, totalInvocations } from '../../src/loadgen/sample.ts';
import { planEntries, planFixedRate, planTrace } from '../../src/loadgen/schedule.ts';
import { synthesizeTrace } from '../../src/loadgen/synth.ts';
import { parseTrace } from '../../src/loadgen/trace.ts';

describe('planFixedRate', () => {
  it('sends R per second to one function, the first one inter-arrival time in', () => {
    const plan = planFixedRate({ rate: 4, seconds: 1, function: 'warm-function', execMs: 10 });
    assert.deepEqual(planEntries(plan).map((e) => e.atMs), [250, 500, 750, 1000]);
    assert.deepEqual(plan.functions, ['warm-function']);
  });
});

describe('planTrace --shift', () => {
  it('keeps each minute\'s count and moves its first invocation off :00', () => {
    const trace = parseTrace(synthesizeTrace({ functions: 30, minutes: 3, seed: 4 }));
    const plain = planTrace(trace.functions, { minutes: 3, iatDistribution: 'exponential', seed: 1 });
    const shifted = planTrace(trace.functions, { minutes: 3, iatDistribution: 'exponential', seed: 1, shift: true });
    assert.equal(shifted.length, plain.length);
    const perMinute = (p: typeof plain) => { const c = [0, 0, 0]; for (const m of p.minute) c[m] = (c[m] ?? 0) + 1; return c; };
    assert.deepEqual(perMinute(shifted), perMinute(plain));
    const atMinuteStart = (p: typeof plain) => [...p.atMs].filter((t) => t % 60_000 === 0).length;
    assert.ok(atMinuteStart(plain) > 0);
    assert.equal(atMinuteStart(shifted), 0);
  });
});

describe('sampleFunctions', () => {
  it('draws one function per rate stratum, the same for the same seed, in trace order', () => {
    const trace = parseTrace(synthesizeTrace({ functions: 100, minutes: 10, seed: 8 }));
    const a = sampleFunctions(trace.functions, 10, 3);
    assert.equal(a.length, 10);
    assert.deepEqual(sampleFunctions(trace.functions, 10, 3), a);
    const order = a.map((f) => trace.functions.indexOf(f));
    assert.deepEqual(order, [...order].sort((x, y) => x - y));
    const ranked = [...trace.functions].sort((x, y) => totalInvocations(x) - totalInvocations(y) || (x.hashFunction < y.hashFunction ? -1 : 1));
    const rank = (f: (typeof a)[number]) => ranked.indexOf(f);
    const strata = a.map((f) => Math.floor(rank(f) / 10)).sort((x, y) => x - y);
    assert.deepEqual(strata, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });
});

describe('synthesizeTrace', () => {
  it('has heavy tails: rates over orders of magnitude, median durations under a second', () => {
    const trace = parseTrace(synthesizeTrace({ functions: 500, minutes: 30, seed: 1 }));
    const totals = trace.functions.map(totalInvocations).sort((a, b) => a - b);
    assert.ok((totals[495] ?? 0) > 100 * Math.max(1, totals[250] ?? 1), `p99 ${totals[495]} vs median ${totals[250]}`);
    const durations = trace.functions.map((f) => f.durations.averageMs).sort((a, b) => a - b);
    assert.ok((durations[250] ?? 0) < 1_500 && (durations[450] ?? 0) > 5_000, `median ${durations[250]} ms, p90 ${durations[450]} ms`);
  });
});

describe('deploySpec', () => {
  it('asks a tenth of the largest memory of emulated functions, enough for process ones, and sweep functions scale as Dirigent\'s cold_start_sweep', () => {
    const trace = deploySpec('t1-0', 'trace', 'emulated', 175, undefined, 15_000);
    assert.deepEqual(trace.resources, { cpuMilli: 100, memoryMiB: 18 });
    assert.deepEqual(trace.scaling, { maxScale: 10_000 }, 'a trace function scales as far as its load asks');
    const sweep = deploySpec('cold-function-0', 'cold-sweep', 'emulated', 0, undefined, 15_000);
    assert.deepEqual(sweep.scaling, { minScale: 0, maxScale: 1, stableWindowMs: 6_000, panicWindowMs: 2_000, scaleToZeroGraceMs: 0 });
    const process = deploySpec('warm-function', 'rps', 'process', 10, `sha256:${'b'.repeat(64)}`, 15_000);
    assert.deepEqual(process.command, ['node', 'server.js']);
    assert.equal(process.resources?.memoryMiB, 128, 'a process function\'s memory is its limit: what it touches plus room for Node');
    assert.equal(deploySpec('t2-0', 'trace', 'process', 300, `sha256:${'b'.repeat(64)}`, 15_000).resources?.memoryMiB, 364);
    for (const spec of [trace, sweep, process]) assert.ok(functionSpecSchema.safeParse(spec).success);
  });
});

describe('formatProgress', () => {
  const p = { elapsedMs: 30_000, totalMs: 120_000, planned: 1000, sent: 250, inFlight: 12, errors: 3, rate: 8.333 };
  it('is a line on a pipe and a bar redrawn in place on a terminal', () => {
    assert.equal(formatProgress(p, false), '30s/120s sent 250/1000 in flight 12 errors 3 rate 8.3/s\n');
    assert.equal(formatProgress(p, true), '\r[######..................] 30s/120s sent 250/1000 in flight 12 errors 3 rate 8.3/s\x1b[K');
  });
});
