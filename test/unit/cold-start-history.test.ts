import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ColdStartHistory } from '../../src/controlplane/model.ts';

const breakdown = (n: number) => ({ fetchMs: n, startMs: n + 0.5, readyMs: n + 0.25, totalMs: n + 1, controlPlaneMs: n + 2 });

test('a cold-start history keeps the last N, oldest first, with their breakdowns', () => {
  const history = new ColdStartHistory(3);
  assert.deepEqual(history.entries(), []);
  history.record('s1', 'w1', 1000, breakdown(1));
  history.record('s2', 'w2', 2000, undefined);
  assert.deepEqual(history.entries(), [
    { sandboxId: 's1', workerId: 'w1', readyAtWallMs: 1000, breakdown: breakdown(1) },
    { sandboxId: 's2', workerId: 'w2', readyAtWallMs: 2000, breakdown: undefined },
  ]);
  for (let i = 3; i <= 7; i++) history.record(`s${i}`, 'w1', i * 1000, breakdown(i));
  assert.equal(history.size, 3);
  assert.deepEqual(history.entries().map((e) => e.sandboxId), ['s5', 's6', 's7'], 'the oldest went first');
  assert.deepEqual(history.entries()[2], { sandboxId: 's7', workerId: 'w1', readyAtWallMs: 7000, breakdown: breakdown(7) });
});

test('a cold-start history grows its storage as it fills and keeps every record across the growth', () => {
  const history = new ColdStartHistory(20);
  for (let i = 1; i <= 25; i++) {
    history.record(`s${i}`, 'w', i, breakdown(i));
    const expected = Array.from({ length: Math.min(i, 20) }, (_, k) => i - Math.min(i, 20) + 1 + k);
    assert.deepEqual(history.entries().map((e) => e.readyAtWallMs), expected, `after ${i} records`);
  }
  assert.deepEqual(history.entries()[0]?.breakdown, breakdown(6));
});
