import { test, type TestContext } from 'node:test';
import type { AsyncStore } from '../../src/dataplane/async/async-store.ts';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createDeferred, type Deferred } from '../../src/core/deferred.ts';
import { BatonError } from '../../src/core/errors.ts';
import { createRandom } from '../../src/core/random.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { createRegistry } from '../../src/observability/metrics.ts';
import { registerAsyncMetrics } from '../../src/dataplane/async/async-metrics.ts';
import { ASYNC_DEFAULTS, type AsyncConfig, type AsyncEvent } from '../../src/dataplane/async/async-event.ts';
import { AsyncInvocations, type DeliveryResult } from '../../src/dataplane/async/async-invocations.ts';
import { EmbeddedStore } from '../../src/dataplane/async/embedded-store.ts';
import { SegmentLog } from '../../src/dataplane/async/segment-log.ts';
import { liveClock } from './live-clock.ts';
import { ManualClock } from './manual-clock.ts';

/**
 * The async queue's scheduling (retries, back-off, dead letters, age, bounds, recovery) on a
 * ManualClock, over a real store (the embedded log in a temp dir, or Redis); deliveries are
 * answered by the test. The same suite runs against every `AsyncStore`.
 */

/** A store's backing (a directory, a Redis key prefix): each `open()` is a new store over the same data, as after a restart. */
export interface StoreBacking {
  open(): AsyncStore;
}

const WALL_BASE = Date.UTC(2026, 0, 1);
const logger = createLogger({ name: 'test', level: 'silent' });

interface Harness {
  readonly clock: ManualClock;
  readonly invocations: AsyncInvocations;
  /** Deliveries asked for, in order, each answered by resolving its deferred. */
  readonly calls: { event: AsyncEvent; attempt: number; at: number; answer: Deferred<DeliveryResult> }[];
  config: AsyncConfig | undefined;
  /** Resolves once `n` deliveries have been asked for (each starts only after its attempt is durable). */
  calledTimes(n: number): Promise<void>;
}

async function harness(t: TestContext, backing: StoreBacking, overrides: Partial<{ capacity: number; config: AsyncConfig | undefined; clock: ManualClock }> = {}): Promise<Harness> {
  const clock = overrides.clock ?? new ManualClock();
  const calls: Harness['calls'] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const h: Harness = {
    clock, calls, config: 'config' in overrides ? overrides.config : { ...ASYNC_DEFAULTS, retryBackoffMs: 1000 },
    invocations: undefined as unknown as AsyncInvocations,
    calledTimes: (n) => (calls.length >= n ? Promise.resolve() : new Promise((resolve) => waiters.push({ n, resolve }))),
  };
  const invocations = new AsyncInvocations({
    store: backing.open(),
    clock,
    wallNow: () => WALL_BASE + clock.now(),
    random: createRandom(7),
    logger,
    deliver: (event) => {
      const answer = createDeferred<DeliveryResult>();
      calls.push({ event, attempt: event.attempts.length, at: clock.now(), answer });
      for (const waiter of waiters.filter((w) => calls.length >= w.n)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
      return answer.promise;
    },
    configOf: () => h.config,
    capacity: overrides.capacity ?? 1000,
    maxBytes: 1 << 24,
    deliveryConcurrency: 64,
    resultRetentionMs: 60_000,
    resultRetentionMax: 1000,
    deadLetterRetentionMs: 3_600_000,
    throttleBackoffMs: 100,
  });
  (h as { invocations: AsyncInvocations }).invocations = invocations;
  await invocations.start();
  t.after(() => invocations.close(0));
  return h;
}

/** The embedded log in a temp dir. */
export async function embeddedBacking(t: TestContext): Promise<StoreBacking> {
  const dir = await mkdtemp(path.join(tmpdir(), 'baton-async-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return { open: () => new EmbeddedStore(new SegmentLog({ dir, clock: liveClock, groupCommitMs: 0, segmentMaxBytes: 1 << 20 }), logger) };
}

const request = (n: number) => ({ kind: 'lambda' as const, method: 'POST', path: '/', headers: [], body: Buffer.from(JSON.stringify({ n })) });
const failed: DeliveryResult = { outcome: 'function-error', status: 200 };
const ok: DeliveryResult = { outcome: 'succeeded', status: 200, response: { status: 200, headers: {}, body: Buffer.from('"done"'), isTruncated: false } };
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Registers the suite's tests, each over a fresh backing from `makeBacking`. */
export function asyncInvocationsSuite(label: string, makeBacking: (t: TestContext) => Promise<StoreBacking>): void {
  test(`${label}: a function that always fails is dead-lettered after exactly maxRetryAttempts + 1 attempts, with growing back-off`, async (t) => {
    const h = await harness(t, await makeBacking(t));
    await h.invocations.accept('ev-1', 'f', request(1));
    for (let attempt = 1; attempt <= 3; attempt++) {
      await h.calledTimes(attempt);
      h.calls[attempt - 1]?.answer.resolve(failed);
      await settle();
      h.clock.advance(10_000);
    }
    h.clock.advance(60_000);
    await settle();
    assert.equal(h.calls.length, 3, 'no fourth attempt');
    const event = h.invocations.get('ev-1');
    assert.equal(event?.state, 'dead-lettered');
    assert.equal(event?.deadLetterReason, 'retries-exhausted');
    assert.deepEqual(event?.attempts.map((a) => a.outcome), ['function-error', 'function-error', 'function-error']);
    // Back-off: base 1000 ms × 2^(n−1) × [0.5, 1.5): the second wait is at least 1000 ms, the first at least 500.
    const starts = event?.attempts.map((a) => a.startedAt) ?? [];
    assert.ok((starts[1] ?? 0) - (starts[0] ?? 0) >= 500);
    assert.ok((starts[2] ?? 0) - (starts[1] ?? 0) >= 1000);
    assert.deepEqual(h.invocations.list('f', 'dead-lettered', 10).map((e) => e.id), ['ev-1']);
  });

  test(`${label}: maxRetryAttempts 0 dead-letters after the first failure; a success is kept with its response`, async (t) => {
    const h = await harness(t, await makeBacking(t));
    h.config = { ...ASYNC_DEFAULTS, maxRetryAttempts: 0 };
    await h.invocations.accept('a', 'f', request(1));
    await h.invocations.accept('b', 'f', request(2));
    await h.calledTimes(2);
    h.calls[0]?.answer.resolve(failed);
    h.calls[1]?.answer.resolve(ok);
    await settle();
    assert.equal(h.invocations.get('a')?.state, 'dead-lettered');
    assert.equal(h.invocations.get('b')?.state, 'succeeded');
    assert.equal(h.invocations.get('b')?.response?.body.toString(), '"done"');
    assert.equal(h.calls.length, 2);
  });

  test(`${label}: an event older than maxEventAgeMs is dead-lettered without running`, async (t) => {
    const h = await harness(t, await makeBacking(t), { config: undefined });
    await h.invocations.accept('old', 'f', request(1));
    assert.equal(h.calls.length, 0, 'the function is not known yet: nothing is delivered');
    h.clock.advance(5_000);
    h.config = { ...ASYNC_DEFAULTS, maxEventAgeMs: 2_000 };
    h.clock.advance(31_000);
    assert.equal(h.calls.length, 0);
    const event = h.invocations.get('old');
    assert.equal(event?.state, 'dead-lettered');
    assert.equal(event?.deadLetterReason, 'max-event-age');
    assert.equal(event?.attempts.length, 0);
  });

  test(`${label}: a throttled attempt is retried and not counted`, async (t) => {
    const h = await harness(t, await makeBacking(t));
    h.config = { ...ASYNC_DEFAULTS, maxRetryAttempts: 0 };
    await h.invocations.accept('t', 'f', request(1));
    await h.calledTimes(1);
    h.calls[0]?.answer.resolve({ outcome: 'throttled', status: 503, code: 'ERR_QUEUE_FULL' });
    await settle();
    h.clock.advance(1_000);
    await h.calledTimes(2);
    h.calls[1]?.answer.resolve(ok);
    await settle();
    const event = h.invocations.get('t');
    assert.equal(event?.state, 'succeeded');
    assert.equal(event?.attempts.length, 1);
    assert.equal(event?.throttles, 1);
  });

  test(`${label}: a full queue refuses with ERR_ASYNC_QUEUE_FULL and accepts again once drained`, async (t) => {
    const h = await harness(t, await makeBacking(t), { capacity: 2 });
    await h.invocations.accept('1', 'f', request(1));
    await h.invocations.accept('2', 'f', request(2));
    await assert.rejects(h.invocations.accept('3', 'f', request(3)), (err: unknown) => err instanceof BatonError && err.code === 'ERR_ASYNC_QUEUE_FULL');
    assert.equal(h.invocations.get('3'), undefined, 'a refused event leaves nothing behind');
    await h.calledTimes(1);
    h.calls[0]?.answer.resolve(ok);
    await settle();
    await h.invocations.accept('3', 'f', request(3));
    assert.equal(h.invocations.depth, 2);
  });

  test(`${label}: at most maxConcurrency attempts of a function are in flight`, async (t) => {
    const h = await harness(t, await makeBacking(t));
    h.config = { ...ASYNC_DEFAULTS, maxConcurrency: 2 };
    for (let i = 0; i < 5; i++) await h.invocations.accept(`c${i}`, 'f', request(i));
    assert.equal(h.invocations.list('f', 'running', 10).length, 2, 'slots are taken when an attempt is started: a third waits');
    await h.calledTimes(2);
    assert.equal(h.invocations.list('f', 'queued', 10).length, 3);
    h.calls[0]?.answer.resolve(ok);
    await h.calledTimes(3);
    for (const call of h.calls.slice(1)) call.answer.resolve(ok);
    await h.calledTimes(5);
    for (const call of h.calls.slice(3)) call.answer.resolve(ok);
    await settle();
    assert.deepEqual(h.calls.map((c) => c.event.id), ['c0', 'c1', 'c2', 'c3', 'c4'], 'in order of acceptance');
  });

  test(`${label}: a dead letter redriven is delivered again as new`, async (t) => {
    const h = await harness(t, await makeBacking(t));
    h.config = { ...ASYNC_DEFAULTS, maxRetryAttempts: 0 };
    await h.invocations.accept('r', 'f', request(1));
    await h.calledTimes(1);
    h.calls[0]?.answer.resolve(failed);
    await settle();
    assert.equal(h.invocations.get('r')?.state, 'dead-lettered');
    assert.deepEqual(h.invocations.redrive('f', undefined), ['r']);
    await h.calledTimes(2);
    h.calls[1]?.answer.resolve(ok);
    await settle();
    assert.equal(h.invocations.get('r')?.state, 'succeeded');
    assert.equal(h.invocations.get('r')?.redrives, 1);
  });

  test(`${label}: after a restart, unfinished events are delivered; one that was running is marked interrupted; finished ones stay finished`, async (t) => {
    const dir = await makeBacking(t);
    const clock = new ManualClock();
    const first = await harness(t, dir, { clock });
    first.config = { ...ASYNC_DEFAULTS, maxConcurrency: 1 };
    await first.invocations.accept('done', 'f', request(1));
    await first.invocations.accept('running', 'f', request(2));
    await first.invocations.accept('queued', 'f', request(3));
    await first.calledTimes(1);
    first.calls[0]?.answer.resolve(ok);
    // The second runs once its start is durable; then the first's success is on disk too (same or earlier batch).
    await first.calledTimes(2);
    // A crash: nothing is closed.
    const second = await harness(t, dir, { clock });
    second.config = { ...ASYNC_DEFAULTS, maxConcurrency: 10 };
    second.invocations.poke('f');
    await second.calledTimes(2);
    assert.equal(second.invocations.get('done')?.state, 'succeeded');
    const redelivered = second.calls.map((c) => c.event.id).sort();
    assert.deepEqual(redelivered, ['queued', 'running']);
    const running = second.invocations.get('running');
    assert.deepEqual(running?.attempts.map((a) => a.outcome), ['interrupted', undefined]);
  });

  test(`${label}: an event its function can take at once starts its attempt in its acceptance record (a crash right after the 202 shows it interrupted)`, async (t) => {
    const backing = await makeBacking(t);
    const clock = new ManualClock();
    const first = await harness(t, backing, { clock });
    first.config = { ...ASYNC_DEFAULTS, maxConcurrency: 1 };
    await first.invocations.accept('now', 'f', request(1));
    assert.equal(first.invocations.get('now')?.state, 'running', 'started with its acceptance');
    await first.invocations.accept('later', 'f', request(2));
    assert.equal(first.invocations.get('later')?.state, 'queued', 'the function\'s one slot is taken: queued');
    // A crash as soon as both were accepted: nothing else was saved.
    const second = await harness(t, backing, { clock });
    second.invocations.poke('f');
    await second.calledTimes(2);
    assert.deepEqual(second.invocations.get('now')?.attempts.map((a) => a.outcome), ['interrupted', undefined]);
    assert.deepEqual(second.invocations.get('later')?.attempts.map((a) => a.outcome), [undefined]);
  });

  test(`${label}: the queue's depth and the age of its oldest event, as the metrics show them`, async (t) => {
    const h = await harness(t, await makeBacking(t));
    h.config = { ...ASYNC_DEFAULTS, maxConcurrency: 1 };
    const registry = createRegistry('dataplane', { withDefaults: false });
    registerAsyncMetrics(registry, () => h.invocations, () => 0);
    await h.invocations.accept('m1', 'f', request(1));
    h.clock.advance(3_000);
    await h.invocations.accept('m2', 'f', request(2));
    await h.invocations.accept('m3', 'g', request(3));
    assert.deepEqual([...h.invocations.queueRows()].sort((a, b) => a.fn.localeCompare(b.fn)), [{ fn: 'f', depth: 2, oldestAgeMs: 3_000 }, { fn: 'g', depth: 1, oldestAgeMs: 0 }]);
    const text = await registry.metrics();
    assert.match(text, /^baton_dataplane_async_queue_depth\{function="f"\} 2$/m);
    assert.match(text, /^baton_dataplane_async_oldest_age_seconds\{function="f"\} 3$/m);
    await h.calledTimes(2);
    for (const call of h.calls) call.answer.resolve(ok);
    await h.calledTimes(3);
    h.calls[2]?.answer.resolve(ok);
    await settle();
    assert.deepEqual([...h.invocations.queueRows()], []);
    assert.doesNotMatch(await registry.metrics(), /async_queue_depth\{/);
  });

  test(`${label}: an event that keeps failing goes to the on-failure function with Lambda's destination record`, async (t) => {
    const h = await harness(t, await makeBacking(t));
    h.config = { ...ASYNC_DEFAULTS, maxRetryAttempts: 0, onFailure: { type: 'function', name: 'catcher' } };
    await h.invocations.accept('d', 'f', request(7));
    await h.calledTimes(1);
    h.calls[0]?.answer.resolve({ outcome: 'function-error', status: 200, response: { status: 200, headers: {}, body: Buffer.from('{"errorMessage":"no"}'), isTruncated: false } });
    await h.calledTimes(2);
    assert.equal(h.invocations.get('d')?.state, 'failed');
    const forwarded = h.calls[1]?.event;
    assert.equal(forwarded?.fn, 'catcher');
    assert.equal(forwarded?.id, 'd-failure');
    const record = JSON.parse(forwarded?.request.body.toString() ?? '{}') as { requestContext: { requestId: string; condition: string; approximateInvokeCount: number }; requestPayload: unknown; responsePayload: unknown };
    assert.deepEqual(record.requestContext.requestId, 'd');
    assert.equal(record.requestContext.condition, 'RetriesExhausted');
    assert.equal(record.requestContext.approximateInvokeCount, 1);
    assert.deepEqual(record.requestPayload, { n: 7 });
    assert.deepEqual(record.responsePayload, { errorMessage: 'no' });
  });
}
