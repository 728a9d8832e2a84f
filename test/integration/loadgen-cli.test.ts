import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile, cp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { formatInvitroCsv, INVITRO_CSV_HEADER, parseResultsCsv } from '../../src/loadgen/invitro-csv.ts';
import { recordsFromRows } from '../../src/loadgen/records.ts';
import { analyzeRecords } from '../../src/loadgen/report.ts';
import { formatScheduleCsv, parseScheduleCsv, SCHEDULE_CSV_HEADER } from '../../src/loadgen/schedule-csv.ts';
import { planEntries, planTrace } from '../../src/loadgen/schedule.ts';
import { readTrace } from '../../src/loadgen/trace.ts';
import { runCli } from '../kit/run-cli.ts';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures');
const TRACE = join(FIXTURES, 'azure2019-example');
const HAND_MADE = join(FIXTURES, 'loadgen', 'hand-made.csv');

/** Equal up to floating-point rounding (geometric means go through exp/log). */
function near(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= 1e-9 * Math.max(1, Math.abs(expected)), `${what}: ${actual}, expected ${expected}`);
}

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'baton-loadgen-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

interface ScheduleRow { function: string; invocationID: string; minute: number; offsetUs: number; runtimeMs: number; memoryMiB: number }

async function readSchedule(file: string): Promise<{ header: string; rows: ScheduleRow[] }> {
  const [header = '', ...lines] = (await readFile(file, 'utf8')).trimEnd().split('\n');
  return {
    header,
    rows: lines.map((line) => {
      const [fn = '', id = '', minute, offset, runtime, memory] = line.split(',');
      return { function: fn, invocationID: id, minute: Number(minute), offsetUs: Number(offset), runtimeMs: Number(runtime), memoryMiB: Number(memory) };
    }),
  };
}

describe('baton loadgen plan', () => {
  it('reproduces the fixture trace\'s per-minute counts exactly, in the documented columns', async (t) => {
    const dir = await tempDir(t);
    const out = join(dir, 'schedule.csv');
    const result = await runCli(['loadgen', 'plan', TRACE, '--minutes', '12', '-o', out]);
    assert.equal(result.code, 0, result.stderr);
    const { header, rows } = await readSchedule(out);
    assert.equal(header, 'function,invocationID,minute,offsetUs,runtimeMs,memoryMiB');
    const trace = await readTrace(TRACE);
    for (const fn of trace.functions) {
      for (let m = 0; m < 12; m++) {
        const inMinute = rows.filter((r) => r.function === fn.name && r.minute === m);
        assert.equal(inMinute.length, fn.perMinute[m], `${fn.name} minute ${m}`);
        assert.deepEqual(inMinute.map((r) => r.invocationID), inMinute.map((_, k) => `min${m}.inv${k}`));
      }
    }
    assert.ok(rows.length > 0);
    assert.ok(rows.every((r) => r.offsetUs >= 0 && r.offsetUs < 60_000_000 && r.runtimeMs >= 1 && r.memoryMiB >= 1));
    // The fixture's durations are 100/500/250/125 ms averages with ±1 ms percentiles.
    const byFunction = new Map(trace.functions.map((f) => [f.name, f]));
    for (const r of rows) {
      const pct = byFunction.get(r.function)?.durations.percentilesMs ?? [0, 0, 0, 0, 0, 0, 0];
      assert.ok(r.runtimeMs >= Math.trunc(pct[0]) && r.runtimeMs <= Math.trunc(pct[6]), `${r.runtimeMs} within [${pct[0]}, ${pct[6]}]`);
    }
  });

  it('gives the same schedule for the same seed and another for another seed', async (t) => {
    const dir = await tempDir(t);
    const run = async (seed: string, file: string): Promise<string> => {
      const result = await runCli(['loadgen', 'plan', TRACE, '--minutes', '8', '--seed', seed, '-o', join(dir, file)]);
      assert.equal(result.code, 0, result.stderr);
      return readFile(join(dir, file), 'utf8');
    };
    const a = await run('7', 'a.csv');
    assert.equal(await run('7', 'b.csv'), a);
    assert.notEqual(await run('8', 'c.csv'), a);
  });

  it('samples K functions reproducibly, keeping the mix of rates', async (t) => {
    const dir = await tempDir(t);
    const synth = await runCli(['loadgen', 'synth', '--functions', '200', '--minutes', '5', '--seed', '3', '-o', join(dir, 'trace')]);
    assert.equal(synth.code, 0, synth.stderr);
    const plan = async (seed: string, file: string) => {
      const result = await runCli(['loadgen', 'plan', join(dir, 'trace'), '--functions', '20', '--seed', seed, '-o', join(dir, file)]);
      assert.equal(result.code, 0, result.stderr);
      return readSchedule(join(dir, file));
    };
    const first = await plan('1', 'a.csv');
    const names = new Set(first.rows.map((r) => r.function));
    assert.ok(names.size <= 20 && names.size >= 15, `${names.size} functions invoked`); // every sampled function ran at least once in the trace, maybe not within the 5 minutes
    assert.deepEqual((await plan('1', 'b.csv')).rows, first.rows);
    // Stratified by rate: the sample holds both a rarely invoked function and one of the busiest tenth.
    const trace = await readTrace(join(dir, 'trace'));
    const totals = trace.functions.map((f) => [...f.perMinute].reduce((a, b) => a + b, 0)).sort((a, b) => a - b);
    const busy = totals[Math.floor(totals.length * 0.9)] ?? 0;
    const counts = [...names].map((n) => first.rows.filter((r) => r.function === n).length);
    assert.ok(counts.some((c) => c >= busy), `a busy function sampled (${counts.join(' ')}; p90 ${busy})`);
    assert.ok(counts.some((c) => c <= (totals[Math.floor(totals.length * 0.2)] ?? 0)), 'a rare function sampled');
  });

  it('lists unusable rows on stderr with the reason, and reads columns by name in any order', async (t) => {
    const dir = await tempDir(t);
    await cp(TRACE, dir, { recursive: true });
    const memory = (await readFile(join(dir, 'memory.csv'), 'utf8')).trimEnd().split('\n');
    const dropped = memory.pop() ?? '';
    await writeFile(join(dir, 'memory.csv'), `${memory.join('\n')}\n`);
    // durations.csv with its columns reversed.
    const durations = (await readFile(join(dir, 'durations.csv'), 'utf8')).trimEnd().split('\n').map((l) => l.split(',').reverse().join(','));
    await writeFile(join(dir, 'durations.csv'), `${durations.join('\n')}\n`);
    const out = join(dir, 's.csv');
    const result = await runCli(['loadgen', 'plan', dir, '--minutes', '10', '-o', out]);
    assert.equal(result.code, 0, result.stderr);
    const hash = dropped.split(',')[2] ?? '';
    assert.match(result.stderr, new RegExp(`skipped function ${hash}: missing-memory: not in memory.csv`));
    const { rows } = await readSchedule(out);
    assert.equal(new Set(rows.map((r) => r.function)).size, 3);
  });

  it('refuses bad flags and more minutes than the trace has, writing nothing', async (t) => {
    const dir = await tempDir(t);
    const out = join(dir, 's.csv');
    const bad = await runCli(['loadgen', 'plan', TRACE, '--iat', 'poisson', '-o', out]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--iat must be one of exponential, uniform, equidistant/);
    const tooLong = await runCli(['loadgen', 'plan', TRACE, '--minutes', '2000', '-o', out]);
    assert.equal(tooLong.code, 1);
    assert.match(tooLong.stderr, /ERR_INVALID_REQUEST: the trace has 1440 minutes/);
    assert.deepEqual(await readdir(dir), []);
  });

  it('round-trips a plan through the schedule CSV', async () => {
    const trace = await readTrace(TRACE);
    const plan = planTrace(trace.functions, { minutes: 10, iatDistribution: 'exponential', seed: 5, shift: true });
    const text = formatScheduleCsv(plan);
    assert.equal(text.split('\n')[0], SCHEDULE_CSV_HEADER);
    const back = parseScheduleCsv(text);
    const round = (entries: ReturnType<typeof planEntries>) => entries.map((e) => ({ ...e, atMs: Math.round(e.atMs * 1000) }));
    assert.deepEqual(round(planEntries(back)), round(planEntries(plan)));
    assert.deepEqual([...back.minute], [...plan.minute]);
  });
});

describe('baton loadgen synth', () => {
  it('writes a trace the planner reads, the same for the same seed', async (t) => {
    const dir = await tempDir(t);
    const synth = async (out: string, seed: string) => {
      const result = await runCli(['loadgen', 'synth', '--functions', '40', '--minutes', '3', '--seed', seed, '-o', join(dir, out)]);
      assert.equal(result.code, 0, result.stderr);
      return Promise.all(['invocations.csv', 'durations.csv', 'memory.csv'].map((f) => readFile(join(dir, out, f), 'utf8')));
    };
    const a = await synth('a', '9');
    assert.deepEqual(await synth('b', '9'), a);
    assert.notDeepEqual(await synth('c', '10'), a);
    const trace = await readTrace(join(dir, 'a'));
    assert.equal(trace.functions.length, 40);
    assert.deepEqual(trace.issues, []);
    assert.equal(trace.minutes, 3);
  });
});

describe('baton loadgen analyze', () => {
  it('computes Dirigent\'s metrics of a hand-made results file', async () => {
    const result = await runCli(['loadgen', 'analyze', HAND_MADE, '--json', '--warmup-minutes', '1']);
    assert.equal(result.code, 0, result.stderr);
    const report = JSON.parse(result.stdout) as Record<string, unknown> & ReturnType<typeof analyzeRecords>;
    assert.equal(report.invocations, 7);
    assert.equal(report.functions, 3);
    // Per-function means of responseTime − actualDuration: fb (10+80+5)/3, fa (50+300+10)/3 = 120, fc 990.
    assert.deepEqual(report.schedulingLatencyMs.perFunctionMean, { p50: 120, p99: 990 });
    // Minute 0 dropped; slowdowns < 1 (fa's 0.9, fb's failed 0.5) dropped: fa 4, fb √(2 × 9), fc 100.
    near(report.slowdown.perFunctionGeomean.p99, 100, 'slowdown p99');
    near(report.slowdown.perFunctionGeomean.p50, Math.sqrt(18), 'slowdown p50');
    assert.deepEqual(report.responseTimeMs, { p50: 90, p99: 1000 });
    assert.deepEqual(report.failures, { total: 1, byCode: { functionTimeout: 1 } });
  });

  it('leaves out the first 10 trace minutes of the slowdown by default', async () => {
    const { records } = parseResultsCsv(await readFile(HAND_MADE, 'utf8'));
    const report = analyzeRecords(records);
    assert.equal(report.slowdown.warmupMinutes, 10);
    // Only minutes 12 and 13 remain: fb 9 (its 0.5 dropped), fc 100; fa has nothing left.
    near(report.slowdown.perFunctionGeomean.p50, 9, 'slowdown p50');
    near(report.slowdown.perFunctionGeomean.p99, 100, 'slowdown p99');
    assert.equal(report.slowdown.considered, 3);
    assert.ok(Math.abs(report.slowdown.discardedBelowOneShare - 1 / 3) < 1e-12);
  });

  it('prints a table, and plots two files on the same axes with --labels', async (t) => {
    const dir = await tempDir(t);
    const other = join(dir, 'other.csv');
    const text = await readFile(HAND_MADE, 'utf8');
    await writeFile(other, text.replace(/,1000000,10000,/, ',2000000,10000,'));
    const result = await runCli(['loadgen', 'analyze', HAND_MADE, other, '--labels', 'baton,other', '--plots', join(dir, 'plots')]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /per-function mean sched\. latency p99 \(ms\)\s+990\.0\s+1990\.0/);
    const plots = (await readdir(join(dir, 'plots'))).sort();
    assert.deepEqual(plots, ['latency-over-time.svg', 'scheduling-latency-cdf.svg', 'scheduling-latency-per-function-cdf.svg', 'slowdown-per-function-cdf.svg']);
    for (const plot of plots) {
      const svg = await readFile(join(dir, 'plots', plot), 'utf8');
      assert.match(svg, /^<svg/);
      assert.match(svg, />baton/);
      assert.match(svg, />other/);
    }
  });

  it('refuses a file that is not a per-invocation CSV, naming the problem', async (t) => {
    const dir = await tempDir(t);
    await writeFile(join(dir, 'x.csv'), 'a,b\n1,2\n');
    const result = await runCli(['loadgen', 'analyze', join(dir, 'x.csv')]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /ERR_INVALID_REQUEST: .*x\.csv line 1: the header has no instance column/);
  });
});

describe('results CSV', () => {
  it('has Invitro\'s columns in Invitro\'s order (metric.ExecutionRecord), Baton\'s after them', () => {
    // As written by Invitro's gocsv from metric.ExecutionRecord (reference: invitro-and-traces.md §3.1).
    assert.equal(INVITRO_CSV_HEADER, 'phase,instance,invocationID,startTime,requestedDuration,grpcConnEstablish,responseTime,actualDuration,connectionTimeout,functionTimeout,actualMemoryUsage,memoryAllocationTimeout,timeToSubmitMs,userCodeExecutionMs,timeToGetResponseMs');
    const records = recordsFromRows([
      { function: 'fa', requestedExecMs: 10, minute: 0, scheduledMs: 5, sentMs: 6, endMs: 20, status: 200, execUs: 10_000 },
      { function: 'fa', requestedExecMs: 10, minute: 0, scheduledMs: 7, sentMs: 7.5, endMs: 9, status: 503, error: 'ERR_QUEUE_FULL' },
    ]);
    const text = formatInvitroCsv(records, { startWallMs: 1_700_000_000_000, format: 'baton' });
    const [header, first, second] = text.trimEnd().split('\n');
    assert.equal(header, `${INVITRO_CSV_HEADER},scheduledTime,sendLag,status,errorCode`);
    assert.equal(first, '2,fa,min0.inv0,1700000000006000,10000,0,14000,10000,false,false,0,false,0,0,0,1700000000005000,1000,200,');
    assert.equal(second, '2,fa,min0.inv1,1700000000007500,10000,0,1500,0,false,true,0,false,0,0,0,1700000000007000,500,503,ERR_QUEUE_FULL');
    const back = parseResultsCsv(text);
    assert.equal(back.hasBatonColumns, true);
    assert.deepEqual(analyzeRecords(back.records).failures, { total: 1, byCode: { ERR_QUEUE_FULL: 1 } });
    assert.deepEqual(Array.from(back.records.scheduledMs), [0, 2]);
  });
});
