import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FunctionRecord } from '../../src/api/function-spec.ts';
import { newFunctionEntry, newWorkerEntry, Sandbox } from '../../src/controlplane/model.ts';

const record = { spec: { name: 'f', resources: { cpuMilli: 100, memoryMiB: 64 } }, generation: 1 } as unknown as FunctionRecord;

test("a function's and a worker's sandbox sets keep their own places through removals from anywhere", () => {
  const fn = newFunctionEntry(record);
  const workers = [0, 1].map((i) => newWorkerEntry({ id: `w${i}`, url: 'http://127.0.0.1:1', capacity: { cpuMilli: 1000, memoryMiB: 1024 }, runtimes: ['emulated'], state: 'ready', nowMs: 0 }));
  const sandboxes = ['a', 'b', 'c', 'd', 'e'].map((id, i) => {
    const worker = workers[i % 2] as (typeof workers)[number];
    const sandbox = new Sandbox({ id, fn, worker, generation: 1, resources: { cpuMilli: 100, memoryMiB: 64 }, requestedAtMs: 0, createdAtWallMs: 0 });
    fn.sandboxes.add(sandbox);
    fn.sandboxes.add(sandbox);
    worker.sandboxes.add(sandbox);
    return sandbox;
  });
  const ids = (set: Iterable<Sandbox>) => [...set].map((s) => s.id).sort();
  assert.equal(fn.sandboxes.size, 5);
  assert.deepEqual(ids(workers[0]!.sandboxes), ['a', 'c', 'e']);
  for (const gone of ['b', 'a', 'e']) {
    const sandbox = sandboxes.find((s) => s.id === gone)!;
    assert.equal(fn.sandboxes.delete(sandbox), true);
    assert.equal(fn.sandboxes.delete(sandbox), false);
    assert.equal(sandbox.worker.sandboxes.delete(sandbox), true);
    assert.equal(fn.sandboxes.has(sandbox), false);
    for (const s of fn.sandboxes) assert.equal(fn.sandboxes.has(s), true);
  }
  assert.deepEqual(ids(fn.sandboxes), ['c', 'd']);
  assert.deepEqual(ids(workers[0]!.sandboxes), ['c']);
  assert.deepEqual(ids(workers[1]!.sandboxes), ['d']);
  const d = sandboxes[3]!;
  assert.equal(workers[0]!.sandboxes.has(d), false, 'a slot in one set says nothing about another');
});
