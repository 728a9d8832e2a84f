import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FlatRecords } from '../../src/core/flat-records.ts';
import { ReusableFifo } from '../../src/core/reusable-fifo.ts';
import { TurnBatcher } from '../../src/core/turn-batcher.ts';
import { Backoff } from '../../src/core/backoff.ts';
import { ManualClock } from '../kit/manual-clock.ts';

test('flat records keep each record\'s fields apart, NaN until set', () => {
  const records = new FlatRecords(['a', 'b', 'c'] as const);
  assert.equal(records.size, 0);
  const first = records.append();
  const second = records.append();
  records.set(first, 'b', 2);
  records.set(second, 'a', 10);
  records.set(second, 'c', 30);
  assert.deepEqual([records.get(first, 'a'), records.get(first, 'b'), records.get(first, 'c')], [Number.NaN, 2, Number.NaN]);
  assert.deepEqual([records.get(second, 'a'), records.get(second, 'b'), records.get(second, 'c')], [10, Number.NaN, 30]);
  assert.equal(records.size, 2);
});

test('a reusable FIFO gives its items back in order, also across refills', () => {
  const fifo = new ReusableFifo<number>();
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 5; i++) fifo.push(round * 10 + i);
    assert.equal(fifo.shift(), round * 10);
    const rest: number[] = [];
    fifo.forEach((n) => rest.push(n));
    assert.deepEqual(rest, [1, 2, 3, 4].map((i) => round * 10 + i));
    while (fifo.size > 0) fifo.shift();
    assert.equal(fifo.shift(), undefined);
  }
  fifo.push(1);
  fifo.clear();
  assert.equal(fifo.size, 0);
});

test('a turn batcher hands over what one turn collected, once, at the next turn', () => {
  const clock = new ManualClock();
  const flushed: string[][] = [];
  const batcher = new TurnBatcher<string>(clock, (items) => flushed.push(items));
  batcher.add('a');
  batcher.add('b');
  assert.deepEqual(flushed, [], 'nothing during the turn');
  assert.equal(batcher.size, 2);
  assert.equal(clock.runTurns(), 1);
  assert.deepEqual(flushed, [['a', 'b']]);
  batcher.add('c');
  batcher.clear();
  batcher.schedule();
  clock.runTurns();
  assert.deepEqual(flushed, [['a', 'b'], []], 'cleared items are dropped; a bare schedule flushes an empty batch');
});

test('back-off doubles up to its cap, resets on success, and jitter only shortens a delay', () => {
  const backoff = new Backoff({ firstMs: 100, maxMs: 500 });
  assert.deepEqual([backoff.next(), backoff.next(), backoff.next(), backoff.next()], [100, 200, 400, 500]);
  assert.equal(backoff.failures, 4);
  backoff.reset();
  assert.equal(backoff.next(), 100);
  const jittered = new Backoff({ firstMs: 100, maxMs: 500, jitter: 0.5, random: () => 0.5 });
  assert.equal(jittered.next(), 75);
});
