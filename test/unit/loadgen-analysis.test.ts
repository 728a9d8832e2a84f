import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  dirigentFunctionKey, percentile, percentiles, perFunctionSchedulingLatency, perFunctionSlowdown, schedulingLatenciesMs, summarizeRun,
} from '../../src/loadgen/analysis.ts';
import { recordsFromRows } from '../../src/loadgen/records.ts';
import type { InvocationRow } from '../../src/loadgen/records.ts';

const close = (actual: number, expected: number, what = ''): void => assert.ok(Math.abs(actual - expected) < 1e-9, `${what} ${actual} ≠ ${expected}`);

describe('percentile (nearest rank)', () => {
  it('returns observed values by rank ceil(p/100 × n)', () => {
    const sorted = [10, 20, 30, 40];
    assert.equal(percentile(sorted, 0), 10);
    assert.equal(percentile(sorted, 25), 10); // rank 1
    assert.equal(percentile(sorted, 26), 20); // rank ceil(1.04) = 2
    assert.equal(percentile(sorted, 50), 20); // rank 2
    assert.equal(percentile(sorted, 99), 40); // rank ceil(3.96) = 4
    assert.equal(percentile(sorted, 100), 40);
    assert.ok(Number.isNaN(percentile([], 50)));
  });
  it('sorts a copy for unsorted input', () => {
    const values = [5, 1, 4, 2, 3];
    assert.deepEqual(percentiles(values, [20, 60, 100]), [1, 3, 5]);
    assert.deepEqual(values, [5, 1, 4, 2, 3]);
    const hundred = Array.from({ length: 100 }, (_, i) => 100 - i); // 1…100
    assert.deepEqual(percentiles(hundred, [50, 99, 29]), [50, 99, 29]);
  });
});

describe('summarizeRun', () => {
  // Five invocations of 10 ms requested, scheduled every 250 ms (4 /s).
  const rows: InvocationRow[] = [
    { function: 'a', requestedExecMs: 10, scheduledMs: 0, sentMs: 0, endMs: 30, status: 200, execUs: 10_000 },
    { function: 'a', requestedExecMs: 10, scheduledMs: 250, sentMs: 251, endMs: 300, status: 200, execUs: 12_000 },
    { function: 'b', requestedExecMs: 10, scheduledMs: 500, sentMs: 502, endMs: 560, status: 200 }, // no ExecutionTime
    { function: 'b', requestedExecMs: 10, scheduledMs: 750, sentMs: 750, endMs: 760, status: 503, error: 'ERR_QUEUE_FULL' },
    { function: 'b', requestedExecMs: 10, scheduledMs: 1000, sentMs: 1004, endMs: 2000, status: 0, error: 'TIMEOUT' },
  ];
  it('computes counts, rates, latency and overhead percentiles and send lag', () => {
    const s = summarizeRun(recordsFromRows(rows), { creationLatencyMs: 5 });
    assert.equal(s.count, 5);
    assert.equal(s.ok, 3);
    assert.deepEqual(s.errorsByCode, { ERR_QUEUE_FULL: 1, TIMEOUT: 1 });
    close(s.sentRps, 4 / 1.004, 'sentRps'); // 4 gaps over 1004 ms
    close(s.achievedRps, (4 / 1.004) * 3 / 5, 'achievedRps');
    // Latencies from scheduled: 30, 50, 60 → p50 = 50 (rank 2), p99 = 60 (rank 3).
    assert.equal(s.p50Ms, 50);
    assert.equal(s.p99Ms, 60);
    // From sent: 30, 49, 58.
    assert.equal(s.p50FromSentMs, 49);
    assert.equal(s.p99FromSentMs, 58);
    // Overheads: 30 − 10 − 5 = 15; 50 − 12 − 5 = 33; 60 − 10 (requested) − 5 = 45.
    assert.equal(s.overheadP50Ms, 33);
    assert.equal(s.overheadP99Ms, 45);
    // Lags 0, 1, 2, 0, 4 → p99 = 4.
    assert.equal(s.sendLagP99Ms, 4);
  });
  it('names errors without a code by their HTTP status and copes with an empty run', () => {
    const s = summarizeRun(recordsFromRows([{ function: 'a', requestedExecMs: 1, scheduledMs: 0, sentMs: 0, endMs: 1, status: 500 }]));
    assert.deepEqual(s.errorsByCode, { HTTP_500: 1 });
    const empty = summarizeRun(recordsFromRows([]));
    assert.equal(empty.count, 0);
    assert.equal(empty.achievedRps, 0);
    assert.ok(Number.isNaN(empty.p50Ms));
  });
  it('counts only the invocations scheduled in [fromMs, untilMs) when a window is given', () => {
    const records = recordsFromRows(rows);
    // A 500 ms warm-up left out: the last three count (ok one at 500, then a 503 and a timeout).
    const after = summarizeRun(records, { fromMs: 500 });
    assert.equal(after.count, 3);
    assert.equal(after.ok, 1);
    assert.deepEqual(after.errorsByCode, { ERR_QUEUE_FULL: 1, TIMEOUT: 1 });
    assert.equal(after.p99Ms, 60);
    close(after.sentRps, 2 / 0.502, 'sentRps'); // 2 gaps, sent at 502 … 1004
    assert.equal(after.sendLagP99Ms, 4); // lags 2, 0, 4
    // The warm-up alone: the first two, both ok.
    const warmup = summarizeRun(records, { untilMs: 500 });
    assert.equal(warmup.count, 2);
    assert.equal(warmup.ok, 2);
    assert.deepEqual(warmup.errorsByCode, {});
    assert.equal(warmup.p99Ms, 50);
    assert.equal(warmup.sendLagP99Ms, 1);
    // Both bounds: only the one scheduled at 500.
    assert.equal(summarizeRun(records, { fromMs: 500, untilMs: 750 }).count, 1);
  });
  it('can measure latency from the send time', () => {
    const s = summarizeRun(recordsFromRows(rows), { latencyFrom: 'sent' });
    assert.equal(s.p50Ms, 49);
    assert.equal(s.overheadP99Ms, 48); // 58 − 10
  });
});

describe('Dirigent metrics', () => {
  // Minute 12 unless said; responseTime measured from sentMs.
  const rows: InvocationRow[] = [
    { function: 'tf1-0', requestedExecMs: 100, minute: 12, scheduledMs: 0, sentMs: 0, endMs: 400, status: 200, execUs: 100_000 }, // sched 300, slowdown 4
    { function: 'tf1-0', requestedExecMs: 100, minute: 12, scheduledMs: 0, sentMs: 0, endMs: 900, status: 200, execUs: 100_000 }, // sched 800, slowdown 9
    { function: 'tf1-0', requestedExecMs: 100, minute: 12, scheduledMs: 0, sentMs: 0, endMs: 90, status: 200, execUs: 85_000 }, //   sched 5, slowdown 0.9 → discarded
    { function: 'tf1-0', requestedExecMs: 100, minute: 3, scheduledMs: 0, sentMs: 0, endMs: 10_000, status: 200, execUs: 100_000 }, // warm-up: no slowdown; sched 9900
    { function: 'tf2-1', requestedExecMs: 10, minute: 12, scheduledMs: 0, sentMs: 0, endMs: 20, status: 0, error: 'TIMEOUT' }, //        sched 20 (no exec), slowdown 2, failed
  ];
  const records = recordsFromRows(rows);

  it('per-invocation scheduling latency = responseTime − actualDuration, every row', () => {
    assert.deepEqual([...schedulingLatenciesMs(records)], [300, 800, 5, 9900, 20]);
  });
  it('averages scheduling latency per function (arithmetic mean) and reports a separate p99', () => {
    const result = perFunctionSchedulingLatency(records);
    assert.deepEqual(result.map((r) => [r.function, r.count]), [['tf1-0', 4], ['tf2-1', 1]]);
    close(result[0]?.meanMs ?? 0, (300 + 800 + 5 + 9900) / 4);
    assert.equal(result[0]?.p99Ms, 9900);
    assert.equal(result[1]?.meanMs, 20);
  });
  it('slowdown: drops warm-up minutes and slowdowns below 1, takes the geometric mean', () => {
    const report = perFunctionSlowdown(records);
    assert.equal(report.considered, 4);
    close(report.failureShare, 1 / 4);
    close(report.discardedBelowOneShare, 1 / 4);
    assert.equal(report.perFunction.length, 2);
    close(report.perFunction[0]?.slowdown ?? 0, 6, 'gmean(4, 9)'); // √36
    assert.equal(report.perFunction[0]?.count, 2);
    close(report.perFunction[1]?.slowdown ?? 0, 2);
  });
  it('groups with Dirigent\'s suffix regex when asked', () => {
    assert.equal(dirigentFunctionKey('tc13acdc7567b225971-3'), 'tc13acdc7567b225971');
    assert.equal(dirigentFunctionKey('tabc-42-00001-deployment-5d8f-x2'), 'tabc');
    assert.equal(dirigentFunctionKey('hello'), 'hello');
    const merged = recordsFromRows([
      { function: 'tf1-0', requestedExecMs: 10, scheduledMs: 0, sentMs: 0, endMs: 20, status: 200, execUs: 10_000 },
      { function: 'tf1-7', requestedExecMs: 10, scheduledMs: 0, sentMs: 0, endMs: 40, status: 200, execUs: 10_000 },
    ]);
    const result = perFunctionSchedulingLatency(merged, { groupBy: dirigentFunctionKey });
    assert.deepEqual(result.map((r) => [r.function, r.meanMs]), [['tf1', 20]]);
  });
});
