import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BatonError } from '../../src/core/errors.ts';
import type { RoutingChange } from '../../src/api/dataplane.ts';
import { setupCore } from '../kit/control-plane-core.ts';

const isCode = (code: string) => (err: unknown) => err instanceof BatonError && err.code === code;

test('a function is stored and on the data planes before it is acknowledged', async () => {
  const kit = await setupCore();
  await kit.registerDataplane();
  // What the data plane has at the instant each change is answered.
  const onDataplane = (pred: (c: RoutingChange) => boolean) => () => kit.dataplane.changes.some(pred);
  const record = await kit.settled(kit.core.registry.create({ name: 'f', runtime: 'emulated' }).then((r) => ({ r, had: onDataplane((c) => c.type === 'function.put' && c.function.name === 'f')() })));
  assert.equal(record.r.generation, 1);
  assert.deepEqual((await kit.store.list<{ spec: { name: string } }>('functions')).map((r) => r.spec.name), ['f']);
  assert.ok(record.had, 'the data plane acknowledged it before create returned');
  const updated = await kit.settled(kit.core.registry.update('f', { runtime: 'emulated', env: { V: '2' } }).then((r) => ({ r, had: onDataplane((c) => c.type === 'function.put' && c.function.generation === 2)() })));
  assert.equal(updated.r.generation, 2);
  assert.ok(updated.had, 'and the update before update returned');
  const deleted = await kit.settled(kit.core.registry.delete('f').then(() => onDataplane((c) => c.type === 'function.delete' && c.name === 'f')()));
  assert.ok(deleted, 'and the deletion before delete returned');
  kit.core.close();
});

test('a data plane that does not answer holds a function change up for at most 2 s', async () => {
  const kit = await setupCore();
  await kit.registerDataplane();
  kit.dataplane.isUnresponsive = true;
  let isAnswered = false;
  const created = kit.core.registry.create({ name: 'f', runtime: 'emulated' }).then((record) => { isAnswered = true; return record; });
  await kit.clock.settle();
  kit.clock.advance(1_999);
  await kit.clock.settle();
  assert.equal(isAnswered, false, 'still waiting for the data plane at 1,999 ms');
  kit.clock.advance(1);
  await kit.clock.settle();
  assert.equal(isAnswered, true, 'answered at 2 s without the data plane');
  assert.equal((await created).generation, 1);
  assert.equal(kit.core.registry.get('f').record.generation, 1, 'the change itself stands');
  kit.core.close();
});

test('a bad spec, a duplicate name and an unknown function are refused with their codes and change nothing', async () => {
  const kit = await setupCore();
  await assert.rejects(kit.core.registry.create({ name: 'Bad_Name', runtime: 'emulated' }), isCode('ERR_INVALID_SPEC'));
  await kit.settled(kit.core.registry.create({ name: 'f', runtime: 'emulated' }));
  await assert.rejects(kit.core.registry.create({ name: 'f', runtime: 'emulated' }), isCode('ERR_FUNCTION_EXISTS'));
  await assert.rejects(kit.core.registry.update('f', { name: 'g', runtime: 'emulated' }), isCode('ERR_INVALID_SPEC'));
  await assert.rejects(kit.core.registry.update('nope', { runtime: 'emulated' }), isCode('ERR_FUNCTION_NOT_FOUND'));
  await assert.rejects(kit.core.registry.create({ name: 'p', runtime: 'process', artifact: `sha256:${'0'.repeat(64)}`, handler: 'index.handler' }), isCode('ERR_INVALID_SPEC'));
  assert.deepEqual(kit.core.registry.list().map((fn) => [fn.name, fn.record.generation]), [['f', 1]]);
  assert.equal((await kit.store.list('functions')).length, 1);
  kit.core.close();
});

test('an update is a new generation that keeps the size: new sandboxes replace the ready ones one for one', async () => {
  const kit = await setupCore();
  const worker = await kit.registerWorker('w-1');
  await kit.registerDataplane();
  await kit.settled(kit.core.registry.create({ name: 'f', runtime: 'emulated', scaling: { minScale: 2, maxScale: 4 } }));
  await kit.advance(2000, 100);
  for (const { sandboxId } of worker.creates) kit.ready('w-1', sandboxId);
  const record = await kit.settled(kit.core.registry.update('f', { runtime: 'emulated', env: { V: '2' }, scaling: { minScale: 2, maxScale: 4 } }));
  assert.equal(record.generation, 2);
  kit.clock.runTurns();
  const created = worker.creates.slice(2);
  assert.equal(created.length, 2, 'two sandboxes of the new generation at once');
  assert.ok(created.every((c) => c.function.generation === 2 && c.function.env['V'] === '2'));
  kit.ready('w-1', created[0]!.sandboxId);
  await kit.clock.settle();
  const draining = [...kit.dataplane.endpoints.entries()].filter(([, e]) => e.isDraining).map(([id]) => id);
  assert.equal(draining.length, 1, 'one old sandbox retired for the one new that is ready');
  kit.core.close();
});

test('changes to one function are applied one after another, in the order asked', async () => {
  const kit = await setupCore();
  await kit.settled(kit.core.registry.create({ name: 'f', runtime: 'emulated' }));
  const updates = [1, 2, 3].map((i) => kit.core.registry.update('f', { runtime: 'emulated', env: { N: String(i) } }));
  const records = await Promise.all(updates);
  assert.deepEqual(records.map((r) => r.generation), [2, 3, 4]);
  assert.equal(kit.core.registry.get('f').record.spec.env['N'], '3');
  kit.core.close();
});
