import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Counter, Registry } from 'prom-client';
import { CounterFamily, createRegistry } from '../../src/observability/metrics.ts';

test('a counter family renders the same exposition text as a prom-client counter, escapes included', async () => {
  const family = new CounterFamily('x_total', 'Things done.', ['function', 'code']);
  const registry = new Registry();
  const counter = new Counter({ name: 'x_total', help: 'Things done.', labelNames: ['function', 'code'], registers: [registry] });
  const rows: [string, string, number][] = [['a', '2xx', 3], ['we"ird\\name\nx', '5xx', 1], ['a', '2xx', 2], ['b', 'ERR_QUEUE_FULL', 7]];
  for (const [fn, code, n] of rows) {
    family.add([fn, code], n);
    counter.inc({ function: fn, code }, n);
  }
  const theirs = (await registry.metrics()).trim().split('\n');
  const ours = family.render().trim().split('\n');
  assert.deepEqual(ours.slice(0, 2), theirs.slice(0, 2), 'HELP and TYPE lines');
  assert.deepEqual(ours.slice(2).sort(), theirs.slice(2).sort());
  assert.equal(family.get(['a', '2xx']), 5);
  family.remove(['a', '2xx']);
  assert.equal(family.get(['a', '2xx']), undefined);
  assert.doesNotMatch(family.render(), /function="a"/);
});

test('a single-label family keys by the value itself; the registry serves its text after its own metrics', async () => {
  const registry = createRegistry('test', { withDefaults: false });
  const family = new CounterFamily('y_total', 'Y.', ['function']);
  registry.addExposition(() => family.render());
  family.add(['f']);
  family.add(['f']);
  const text = await registry.metrics();
  assert.match(text, /^# TYPE y_total counter$/m);
  assert.match(text, /^y_total\{function="f"\} 2$/m);
});

test('a family renders in slices of whole series, and a scrape lets other work run between them', async () => {
  const family = new CounterFamily('z_total', 'Z.', ['function']);
  for (let i = 0; i < 3_500; i++) family.add([`f${i}`], i);
  const slices = [...family.slices(1_000)];
  assert.equal(slices.length, 4);
  assert.equal(slices.join(''), family.render());
  assert.ok(slices.every((slice) => slice.endsWith('\n')), 'no series is cut');

  const registry = createRegistry('test', { withDefaults: false });
  registry.addExposition(() => family.slices());
  let isScraping = true;
  let turns = 0;
  const turn = (): void => {
    turns++;
    if (isScraping) setImmediate(turn);
  };
  setImmediate(turn);
  const text = await registry.metrics();
  isScraping = false;
  assert.equal(text.trimStart(), family.render());
  assert.ok(turns >= 3, `the event loop turned ${turns} times during the scrape`);
});
