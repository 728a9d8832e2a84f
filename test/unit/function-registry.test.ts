import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BatonError } from '../../src/core/errors.ts';
import { setupCore } from '../kit/control-plane-core.ts';

const isCode = (code: string) => (err: unknown) => err instanceof BatonError && err.code === code;

test('a function is stored before it is acknowledged, and published to the data planes', async () => {
  const kit = await setupCore();
  await kit.registerDataplane();
  const record = await kit.core.registry.create({ name: 'f', runtime: 'emulated' });
  assert.equal(record.generation, 1);
  assert.deepEqual((await kit.store.list<{ spec: { name: string } }>('functions')).map((r) => r.spec.name), ['f']);
  await kit.clock.settle();
  assert.ok(kit.dataplane.changes.some((c) => c.type === 'function.put' && c.function.name === 'f'));
  kit.core.close();
});

test('a bad spec, a duplicate name and an unknown function are refused with their codes and change nothing', async () => {
  const kit = await setupCore();
  await assert.rejects(kit.core.registry.create({ name: 'Bad_Name', runtime: 'emulated' }), isCode('ERR_INVALID_SPEC'));
  await kit.core.registry.create({ name: 'f', runtime: 'emulated' });
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
  await kit.core.registry.create({ name: 'f', runtime: 'emulated', scaling: { minScale: 2, maxScale: 4 } });
  await kit.advance(2000, 100);
  for (const { sandboxId } of worker.creates) kit.ready('w-1', sandboxId);
  const record = await kit.core.registry.update('f', { runtime: 'emulated', env: { V: '2' }, scaling: { minScale: 2, maxScale: 4 } });
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
  await kit.core.registry.create({ name: 'f', runtime: 'emulated' });
  const updates = [1, 2, 3].map((i) => kit.core.registry.update('f', { runtime: 'emulated', env: { N: String(i) } }));
  const records = await Promise.all(updates);
  assert.deepEqual(records.map((r) => r.generation), [2, 3, 4]);
  assert.equal(kit.core.registry.get('f').record.spec.env['N'], '3');
  kit.core.close();
});
