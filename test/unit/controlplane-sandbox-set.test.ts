import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FunctionRecord } from '../../src/api/function-spec.ts';
import { newFunctionEntry, newWorkerEntry, Sandbox } from '../../src/controlplane/model.ts';
import { SandboxTable } from '../../src/controlplane/sandbox-table.ts';

const record = { spec: { name: 'f', resources: { cpuMilli: 100, memoryMiB: 64 } }, generation: 1 } as unknown as FunctionRecord;

test("the sandbox table keeps a function's and a worker's sandbox sets, and each worker's allocation, through removals from anywhere", () => {
  const fn = newFunctionEntry(record);
  const table = new SandboxTable();
  const workers = [0, 1].map((i) => newWorkerEntry({ id: `w${i}`, url: 'http://127.0.0.1:1', capacity: { cpuMilli: 1000, memoryMiB: 1024 }, runtimes: ['emulated'], state: 'ready', nowMs: 0 }));
  const sandboxes = ['a', 'b', 'c', 'd', 'e'].map((id, i) => {
    const worker = workers[i % 2] as (typeof workers)[number];
    const sandbox = new Sandbox({ id, fn, worker, generation: 1, resources: { cpuMilli: 100, memoryMiB: 64 }, requestedAtMs: 0, createdAtWallMs: 0 });
    table.add(sandbox);
    return sandbox;
  });
  const ids = (set: Iterable<Sandbox>) => [...set].map((s) => s.id).sort();
  assert.equal(fn.sandboxes.size, 5);
  assert.equal(table.size, 5);
  assert.deepEqual(ids(workers[0]!.sandboxes.items), ['a', 'c', 'e']);
  assert.deepEqual(workers[0]!.allocated, { cpuMilli: 300, memoryMiB: 192 });
  for (const gone of ['b', 'a', 'e']) {
    const sandbox = sandboxes.find((s) => s.id === gone)!;
    assert.equal(table.remove(sandbox), true);
    assert.equal(table.remove(sandbox), false, 'a second removal changes nothing');
    assert.equal(fn.sandboxes.items.has(sandbox), false);
    assert.equal(sandbox.worker.sandboxes.has(sandbox), false);
    assert.equal(table.get(gone), undefined);
    for (const s of fn.sandboxes.values()) assert.equal(fn.sandboxes.items.has(s), true);
  }
  assert.deepEqual(ids(fn.sandboxes.values()), ['c', 'd']);
  assert.deepEqual(ids(workers[0]!.sandboxes.items), ['c']);
  assert.deepEqual(ids(workers[1]!.sandboxes.items), ['d']);
  assert.deepEqual(workers[0]!.allocated, { cpuMilli: 100, memoryMiB: 64 }, 'removals released their resources');
  assert.deepEqual(workers[1]!.allocated, { cpuMilli: 100, memoryMiB: 64 });
  const d = sandboxes[3]!;
  assert.equal(workers[0]!.sandboxes.has(d), false, 'a slot in one set says nothing about another');
});
