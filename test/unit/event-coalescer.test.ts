import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { SandboxEventBatchesRequest, SandboxEventsRequest } from '../../src/api/worker.ts';
import { BatonError } from '../../src/core/errors.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { EventCoalescer } from '../../src/worker/event-coalescer.ts';
import { BatchingEventSink } from '../../src/worker/event-sink.ts';
import { ManualClock } from '../kit/manual-clock.ts';

const batch = (workerId: string): SandboxEventsRequest => ({ workerId, events: [{ type: 'exited', sandboxId: `${workerId}-s`, exitCode: 1, signal: null }] });
const signal = new AbortController().signal;

test('the batches of one event-loop turn travel in one request; each caller gets its own outcome', async () => {
  const sent: SandboxEventBatchesRequest[] = [];
  const clock = new ManualClock();
  const coalescer = new EventCoalescer(async (request) => {
    sent.push(request);
    return { unknownWorkers: ['w-2'] };
  }, clock);
  const sends = [coalescer.send(batch('w-1'), signal), coalescer.send(batch('w-2'), signal), coalescer.send(batch('w-3'), signal)];
  assert.equal(sent.length, 0, 'nothing leaves before the turn ends');
  assert.equal(clock.runTurns(), 1);
  const outcomes = await Promise.allSettled(sends);
  assert.equal(sent.length, 1);
  assert.deepEqual(sent[0]?.batches.map((b) => b.workerId), ['w-1', 'w-2', 'w-3']);
  assert.equal(outcomes[0]?.status, 'fulfilled');
  assert.equal(outcomes[2]?.status, 'fulfilled');
  assert.ok(outcomes[1]?.status === 'rejected' && outcomes[1].reason instanceof BatonError && outcomes[1].reason.code === 'ERR_WORKER_NOT_FOUND');
});

test('a transport failure fails every batch of the request, and the next turn sends a new request', async () => {
  let calls = 0;
  const clock = new ManualClock();
  const coalescer = new EventCoalescer(async () => {
    calls++;
    if (calls === 1) throw new BatonError('ERR_UNAVAILABLE', 'down');
    return { unknownWorkers: [] };
  }, clock);
  const sends = [coalescer.send(batch('a'), signal), coalescer.send(batch('b'), signal)];
  clock.runTurns();
  const first = await Promise.allSettled(sends);
  assert.deepEqual(first.map((o) => o.status), ['rejected', 'rejected']);
  const second = coalescer.send(batch('a'), signal);
  clock.runTurns();
  await second;
  assert.equal(calls, 2);
});

test('event sinks that flush through the coalescer\'s scheduler send in the next turn, all in one request', async () => {
  const sent: SandboxEventBatchesRequest[] = [];
  const clock = new ManualClock();
  const coalescer = new EventCoalescer(async (request) => {
    sent.push(request);
    return { unknownWorkers: [] };
  }, clock);
  const sinks = ['w-1', 'w-2', 'w-3'].map((workerId) => new BatchingEventSink({
    workerId, send: coalescer.send, defer: coalescer.defer, clock, logger: silentLogger(),
  }));
  sinks.forEach((sink, i) => sink.push({ type: 'exited', sandboxId: `s-${i}`, exitCode: 0, signal: null }));
  sinks[0]?.push({ type: 'exited', sandboxId: 's-0b', exitCode: 0, signal: null });
  assert.equal(clock.runTurns(1), 1);
  assert.equal(sent.length, 1, 'one request, one turn after the events');
  assert.deepEqual(sent[0]?.batches.map((b) => [b.workerId, b.events.length]), [['w-1', 2], ['w-2', 1], ['w-3', 1]]);
  await clock.settle();
  assert.ok(sinks.every((sink) => sink.pending === 0), 'every sink saw its batch delivered');
});

test('an event batch refused with a code that is not retryable is dropped and counted, not retried forever; a retryable failure is retried', async () => {
  const clock = new ManualClock();
  const answers: (BatonError | undefined)[] = [new BatonError('ERR_INVALID_REQUEST', 'bad'), new BatonError('ERR_UNAVAILABLE', 'down'), undefined];
  const sent: number[] = [];
  const sink = new BatchingEventSink({
    workerId: 'w', clock, logger: silentLogger(),
    send: async (request) => {
      sent.push(request.events.length);
      const answer = answers.shift();
      if (answer !== undefined) throw answer;
    },
  });
  sink.push({ type: 'exited', sandboxId: 's-1', exitCode: 0, signal: null });
  await clock.settle();
  assert.deepEqual(sent, [1]);
  assert.equal(sink.pending, 0, 'the refused batch is gone');
  assert.equal(sink.dropped, 1);
  sink.push({ type: 'exited', sandboxId: 's-2', exitCode: 0, signal: null });
  await clock.settle();
  assert.equal(sink.pending, 1, 'unreachable: kept for a retry');
  clock.advance(100);
  await clock.settle();
  assert.deepEqual(sent, [1, 1, 1]);
  assert.equal(sink.pending, 0);
  assert.equal(clock.pendingTimers, 0);
});
