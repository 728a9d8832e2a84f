import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { InvocationQueue, type QueueEntry } from '../../src/dataplane/invocation-queue.ts';
import { ManualClock } from '../kit/manual-clock.ts';

function makeQueue(capacity: number, timeoutMs: number) {
  const clock = new ManualClock(1000);
  const expired: number[] = [];
  const queue = new InvocationQueue<number>({ capacity, timeoutMs, clock, onExpired: (v) => expired.push(v) });
  return { clock, queue, expired };
}

test('FIFO: shift returns values in push order', () => {
  const { queue } = makeQueue(10, 100);
  for (const v of [1, 2, 3]) queue.push(v);
  assert.deepEqual([queue.shift()?.value, queue.shift()?.value, queue.shift()?.value, queue.shift()], [1, 2, 3, undefined]);
  assert.equal(queue.size, 0);
});

test('capacity: a push beyond it returns undefined and changes nothing', () => {
  const { queue } = makeQueue(2, 100);
  assert.ok(queue.push(1));
  assert.ok(queue.push(2));
  assert.equal(queue.push(3), undefined);
  assert.equal(queue.size, 2);
  queue.shift();
  assert.ok(queue.push(4));
  assert.deepEqual(queue.drain(), [2, 4]);
});

test('an emptied queue holds no timer, whether by shift, remove or drain; a new push arms one again', () => {
  const { clock, queue, expired } = makeQueue(10, 10_000);
  queue.push(1);
  queue.push(2);
  assert.equal(clock.pendingTimers, 1);
  queue.shift();
  assert.equal(clock.pendingTimers, 1, 'one entry is still waiting');
  queue.shift();
  assert.equal(clock.pendingTimers, 0);
  const entry = queue.push(3) as QueueEntry<number>;
  assert.equal(clock.pendingTimers, 1);
  queue.remove(entry);
  assert.equal(clock.pendingTimers, 0);
  queue.push(4);
  queue.drain();
  assert.equal(clock.pendingTimers, 0);
  queue.push(5);
  clock.advance(10_000);
  assert.deepEqual(expired, [5], 'the re-armed timer still expires what is queued');
  assert.equal(clock.pendingTimers, 0);
});

test('capacity 0 refuses everything', () => {
  const { queue } = makeQueue(0, 100);
  assert.equal(queue.push(1), undefined);
});

test('deadline: entries expire in order at push time + timeoutMs, with one timer', () => {
  const { clock, queue, expired } = makeQueue(10, 100);
  queue.push(1);
  clock.advance(30);
  queue.push(2);
  queue.push(3);
  assert.equal(clock.pendingTimers, 1, 'one timer for the whole queue');
  clock.advance(69);
  assert.deepEqual(expired, []);
  clock.advance(1);
  assert.deepEqual(expired, [1]);
  assert.equal(queue.size, 2);
  clock.advance(30);
  assert.deepEqual(expired, [1, 2, 3]);
  assert.equal(queue.size, 0);
  assert.equal(clock.pendingTimers, 0, 'an empty queue holds no timer once it fired');
});

test('an entry shifted before its deadline never expires; the timer re-arms for the next head', () => {
  const { clock, queue, expired } = makeQueue(10, 100);
  queue.push(1);
  clock.advance(50);
  queue.push(2);
  assert.equal(queue.shift()?.value, 1);
  clock.advance(50);
  assert.deepEqual(expired, []);
  clock.advance(50);
  assert.deepEqual(expired, [2]);
});

test('remove takes an entry out from anywhere, once', () => {
  const { clock, queue, expired } = makeQueue(10, 100);
  const entries = [1, 2, 3, 4].map((v) => queue.push(v) as QueueEntry<number>);
  assert.equal(queue.remove(entries[1] as QueueEntry<number>), true);
  assert.equal(queue.remove(entries[1] as QueueEntry<number>), false);
  assert.equal(queue.remove(entries[3] as QueueEntry<number>), true);
  assert.equal(queue.remove(entries[0] as QueueEntry<number>), true);
  assert.equal(queue.size, 1);
  clock.advance(100);
  assert.deepEqual(expired, [3]);
  const shifted = queue.push(5) as QueueEntry<number>;
  assert.equal(queue.shift(), shifted);
  assert.equal(queue.remove(shifted), false, 'a shifted entry cannot be removed again');
});

test('property: FIFO order against a model, capacity never exceeded, expiries in order', () => {
  type Op = { kind: 'push' } | { kind: 'shift' } | { kind: 'remove'; index: number } | { kind: 'advance'; ms: number };
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.constant<Op>({ kind: 'push' }),
    fc.constant<Op>({ kind: 'shift' }),
    fc.nat(20).map((index): Op => ({ kind: 'remove', index })),
    fc.integer({ min: 0, max: 60 }).map((ms): Op => ({ kind: 'advance', ms })),
  );
  fc.assert(fc.property(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 1, max: 100 }), fc.array(op, { maxLength: 200 }), (capacity, timeoutMs, ops) => {
    const { clock, queue, expired } = makeQueue(capacity, timeoutMs);
    let model: { value: number; entry: QueueEntry<number> }[] = [];
    let next = 0;
    let expiredSeen = 0;
    for (const o of ops) {
      switch (o.kind) {
        case 'push': {
          const entry = queue.push(next);
          if (model.length >= capacity) assert.equal(entry, undefined);
          else {
            assert.ok(entry);
            model.push({ value: next, entry });
          }
          next++;
          break;
        }
        case 'shift':
          assert.equal(queue.shift()?.value, model.shift()?.value);
          break;
        case 'remove': {
          const target = model[o.index % Math.max(1, model.length)];
          if (target !== undefined) {
            assert.equal(queue.remove(target.entry), true);
            model = model.filter((m) => m !== target);
          }
          break;
        }
        case 'advance': {
          clock.advance(o.ms);
          const newlyExpired = expired.slice(expiredSeen);
          expiredSeen = expired.length;
          const due = model.filter((m) => m.entry.deadlineAt <= clock.now()).map((m) => m.value);
          assert.deepEqual(newlyExpired, due, 'exactly the due entries expire, oldest first');
          model = model.filter((m) => m.entry.deadlineAt > clock.now());
          break;
        }
      }
      assert.ok(queue.size <= capacity);
      assert.equal(queue.size, model.length);
      assert.ok(clock.pendingTimers <= 1);
    }
    assert.deepEqual(queue.drain(), model.map((m) => m.value));
  }), { numRuns: 300 });
});
