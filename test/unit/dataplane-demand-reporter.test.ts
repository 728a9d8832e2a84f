import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DemandReport } from '../../src/api/dataplane.ts';
import { createDeferred, type Deferred } from '../../src/core/deferred.ts';
import { DemandReporter, REPORT_CHUNK } from '../../src/dataplane/demand-reporter.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { ManualClock } from '../kit/manual-clock.ts';

function makeReporter(options: { fail?: boolean; hold?: boolean } = {}) {
  const clock = new ManualClock(0);
  const sent: DemandReport[] = [];
  const pending: Deferred<void>[] = [];
  const deferred: (() => void)[] = [];
  const reporter = new DemandReporter({
    dataplaneId: 'dp-1',
    intervalMs: 1000,
    clock,
    logger: silentLogger(),
    defer: (fn) => deferred.push(fn),
    send: (report) => {
      sent.push(report);
      if (options.fail === true) return Promise.reject(new Error('unreachable'));
      if (options.hold === true) {
        const d = createDeferred<void>();
        pending.push(d);
        return d.promise;
      }
      return Promise.resolve();
    },
  });
  const runDeferred = () => { for (const fn of deferred.splice(0)) fn(); };
  return { clock, reporter, sent, pending, runDeferred };
}

const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

test('reports the time-weighted average of in flight + queued over the interval', () => {
  const { clock, reporter, sent } = makeReporter();
  const a = reporter.track('a');
  a.change(0, 2); // t=0: 2 queued
  clock.advance(250);
  a.change(2, -2); // t=250: both at sandboxes, still 2
  clock.advance(250);
  a.change(-1, 0); // t=500: 1
  clock.advance(500); // t=1000: tick. ∫ = 2×500 + 1×500 = 1500 → 1.5
  assert.equal(sent.length, 1);
  assert.deepEqual(sent[0], { dataplaneId: 'dp-1', isPoke: false, entries: [{ function: 'a', concurrency: 1.5, queued: 0, inflight: 1 }] });
});

test('one batched report for all active functions; idle ones are not sent; one final zero, then nothing', async () => {
  const { clock, reporter, sent } = makeReporter();
  const a = reporter.track('a');
  const b = reporter.track('b');
  reporter.track('idle');
  a.change(1, 0);
  clock.advance(500);
  b.change(1, 0);
  a.change(-1, 0);
  clock.advance(500);
  // t=1000: a = 0.5, b = 0.5 (b had 1 for the second half)
  assert.equal(sent.length, 1);
  assert.deepEqual(sent[0]?.entries.map((e) => [e.function, e.concurrency]), [['a', 0.5], ['b', 0.5]]);
  b.change(-1, 0);
  await settle();
  clock.advance(1000); // t=2000: a final zero for a (count 0, avg 0); b avg 0 too (went idle at t=1000)
  assert.deepEqual(sent[1]?.entries.map((e) => [e.function, e.concurrency]), [['a', 0], ['b', 0]]);
  await settle();
  clock.advance(5000);
  assert.equal(sent.length, 2, 'nothing more once every function reported its zero');
  assert.equal(clock.pendingTimers, 0, 'no timer while nothing is active');
});

test('a function still busy keeps being reported; averages restart each interval', async () => {
  const { clock, reporter, sent } = makeReporter();
  const a = reporter.track('a');
  a.change(3, 0);
  clock.advance(1000);
  await settle();
  clock.advance(1000);
  assert.deepEqual(sent.map((r) => r.entries[0]?.concurrency), [3, 3]);
});

test('a poke is sent at the next turn, batched, with current counts; not repeated while in flight unless the queue grew', async () => {
  const { reporter, sent, pending, runDeferred } = makeReporter({ hold: true });
  const a = reporter.track('a');
  const b = reporter.track('b');
  a.change(0, 1);
  a.poke();
  b.change(0, 1);
  b.poke();
  a.poke();
  assert.equal(sent.length, 0, 'not sent synchronously');
  runDeferred();
  assert.equal(sent.length, 1);
  assert.deepEqual(sent[0], {
    dataplaneId: 'dp-1', isPoke: true,
    entries: [{ function: 'a', concurrency: 1, queued: 1, inflight: 0 }, { function: 'b', concurrency: 1, queued: 1, inflight: 0 }],
  });
  a.poke();
  runDeferred();
  assert.equal(sent.length, 1, 'a poke for a is in flight and its queue did not grow');
  a.change(0, 1);
  a.poke();
  runDeferred();
  assert.equal(sent.length, 2, 'the queue grew');
  assert.deepEqual(sent[1]?.entries, [{ function: 'a', concurrency: 2, queued: 2, inflight: 0 }]);
  for (const d of pending) d.resolve();
  await settle();
  b.poke();
  runDeferred();
  assert.equal(sent.length, 3, 'after the poke settled, a new poke goes out');
});

test('failed reports are not queued up; a closing zero that failed is sent again next interval', async () => {
  const { clock, reporter, sent } = makeReporter({ fail: true });
  const a = reporter.track('a');
  a.change(1, 0);
  clock.advance(1000);
  a.change(-1, 0);
  await settle();
  clock.advance(1000); // the zero entry: fails
  await settle();
  assert.deepEqual(sent.map((r) => r.entries[0]?.concurrency), [1, 0]);
  clock.advance(1000); // sent again
  await settle();
  assert.deepEqual(sent.map((r) => r.entries[0]?.concurrency), [1, 0, 0]);
  assert.ok(sent.length <= 3);
  reporter.close();
  clock.advance(10_000);
  await settle();
  assert.equal(clock.pendingTimers, 0);
});

test('while a periodic report is in flight, only the newest waits', async () => {
  const { clock, reporter, sent, pending } = makeReporter({ hold: true });
  const a = reporter.track('a');
  a.change(1, 0);
  clock.advance(1000);
  clock.advance(1000);
  clock.advance(1000);
  assert.equal(sent.length, 1, 'one in flight');
  pending[0]?.resolve();
  await settle();
  await settle();
  assert.equal(sent.length, 2, 'then only the newest of the two waiting');
});

test('the sandboxes used during an interval are reported once, then forgotten', async () => {
  const { clock, reporter, sent } = makeReporter();
  const a = reporter.track('a');
  a.change(1, 0);
  a.markUsed('s1');
  a.markUsed('s2');
  a.markUsed('s1');
  clock.advance(1000);
  assert.deepEqual([...(sent[0]?.entries[0]?.usedSandboxes ?? [])].sort(), ['s1', 's2']);
  await settle();
  clock.advance(1000);
  assert.equal(sent[1]?.entries[0]?.usedSandboxes, undefined, 'no invocation in the second interval');
});

test('a report of many functions leaves in parts, each sent once the one before is answered', async () => {
  const { clock, reporter, sent, pending } = makeReporter({ hold: true });
  const n = 2 * REPORT_CHUNK + 1;
  const trackers = Array.from({ length: n }, (_, i) => reporter.track(`f${i}`));
  for (const t of trackers) t.change(1, 0);
  clock.advance(1000);
  assert.equal(sent.length, 1, 'one part in flight');
  assert.equal(sent[0]?.entries.length, REPORT_CHUNK);
  pending[0]?.resolve();
  await settle();
  assert.equal(sent.length, 2);
  pending[1]?.resolve();
  await settle();
  assert.equal(sent.length, 3);
  assert.equal(sent[2]?.entries.length, 1);
  const names = sent.flatMap((r) => r.entries.map((e) => e.function));
  assert.equal(new Set(names).size, n, 'every function exactly once');
  assert.ok(sent.every((r) => r.isPoke === false && r.dataplaneId === 'dp-1'));
});

test('a new report replaces the unsent parts of the one before; their closing zeros are sent later', async () => {
  const { clock, reporter, sent, pending } = makeReporter({ hold: true });
  const n = 2 * REPORT_CHUNK;
  const trackers = Array.from({ length: n }, (_, i) => reporter.track(`f${i}`));
  for (const t of trackers) {
    t.change(1, 0);
    t.change(-1, 0); // in and out at once: each closes with a zero in the first report
  }
  clock.advance(1000); // report A: two parts of closing zeros; part 1 in flight
  assert.equal(sent.length, 1);
  const busy = reporter.track('busy');
  busy.change(1, 0);
  clock.advance(1000); // report B ([busy]) replaces A's unsent part 2
  pending[0]?.resolve();
  await settle();
  assert.equal(sent.length, 2);
  assert.deepEqual(sent[1]?.entries.map((e) => e.function), ['busy'], 'B, not the rest of A');
  pending[1]?.resolve();
  await settle();
  clock.advance(1000); // report C: busy and the closing zeros A could not send
  for (let k = 2; k < 4; k++) {
    pending[k]?.resolve();
    await settle();
  }
  assert.equal(sent.length, 4);
  const zeros = sent.flatMap((r) => r.entries.filter((e) => e.function !== 'busy').map((e) => { assert.equal(e.concurrency, 0); return e.function; }));
  assert.equal(zeros.length, n, 'each zero sent once');
  assert.equal(new Set(zeros).size, n);
});

test('pokeQueued: after a (re)registration, every function with queued invocations is poked again, even one poked before', () => {
  const { reporter, sent, runDeferred } = makeReporter({ fail: true });
  const queued = reporter.track('queued');
  const running = reporter.track('running');
  queued.change(0, 2);
  queued.poke();
  runDeferred();
  assert.equal(sent.length, 1, 'the first poke went out (and failed: the control plane is down)');
  running.change(1, 0);
  reporter.pokeQueued();
  runDeferred();
  assert.equal(sent.length, 2);
  assert.deepEqual(sent[1], { dataplaneId: 'dp-1', isPoke: true, entries: [{ function: 'queued', concurrency: 2, queued: 2, inflight: 0 }] },
    'only the function with a queue, with its counts now');
});
