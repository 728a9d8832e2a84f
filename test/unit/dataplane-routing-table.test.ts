import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RoutingEndpoint, RoutingFunction, RoutingUpdate } from '../../src/api/dataplane.ts';
import { BatonError } from '../../src/core/errors.ts';
import { RoutingTable, type EndpointEntry, type RoutedFunction } from '../../src/dataplane/routing-table.ts';

const fn = (name: string, concurrency = 1): RoutingFunction => ({ name, generation: 1, concurrency, timeoutMs: 1000 });
const ep = (sandboxId: string, fnName: string, isDraining = false, address = `127.0.0.1:${sandboxId.length + 4000}`): RoutingEndpoint => ({ sandboxId, function: fnName, address, isDraining });

function makeTable() {
  const events: string[] = [];
  const table = new RoutingTable<{ name: string }>({
    createTraffic: (spec) => ({ name: spec.name }),
    onFunctionRemoved: (f: RoutedFunction<{ name: string }>) => events.push(`fn-removed:${f.name}`),
    onEndpointAdded: (e: EndpointEntry) => events.push(`ep-added:${e.sandboxId}`),
    onEndpointRetired: (e: EndpointEntry) => events.push(`ep-retired:${e.sandboxId}`),
    onCapacity: (f: RoutedFunction<{ name: string }>) => events.push(`capacity:${f.name}`),
  });
  return { table, events };
}

const snapshot = (epoch: string, version: number, functions: RoutingFunction[], endpoints: RoutingEndpoint[]): RoutingUpdate =>
  ({ kind: 'snapshot', epoch, version, functions, endpoints });
const delta = (epoch: string, baseVersion: number, version: number, changes: Extract<RoutingUpdate, { kind: 'delta' }>['changes']): RoutingUpdate =>
  ({ kind: 'delta', epoch, baseVersion, version, changes });

function view(table: RoutingTable<unknown>): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const f of table.functions()) out[f.name] = f.endpoints.items.map((e) => `${e.sandboxId}${e.isDraining ? '(d)' : ''}`).sort();
  return out;
}

test('a delta before any snapshot is a version gap', () => {
  const { table } = makeTable();
  assert.throws(() => table.apply(delta('e1', 0, 1, [{ type: 'function.put', function: fn('a') }])),
    (err: unknown) => err instanceof BatonError && err.code === 'ERR_VERSION_GAP');
  assert.equal(table.functionCount, 0);
  assert.equal(table.epoch, '');
});

test('a delta applies on its base version; a gap throws ERR_VERSION_GAP and changes nothing', () => {
  const { table } = makeTable();
  table.apply(snapshot('e1', 3, [fn('a')], [ep('s1', 'a')]));
  assert.deepEqual(table.apply(delta('e1', 3, 4, [{ type: 'endpoint.put', endpoint: ep('s2', 'a') }])), { epoch: 'e1', version: 4 });
  assert.deepEqual(view(table), { a: ['s1', 's2'] });

  for (const bad of [delta('e1', 3, 5, [{ type: 'endpoint.delete', sandboxId: 's1' }]), delta('e2', 4, 5, [{ type: 'function.delete', name: 'a' }])]) {
    assert.throws(() => table.apply(bad), (err: unknown) => err instanceof BatonError && err.code === 'ERR_VERSION_GAP' && err.status === 409);
    assert.deepEqual(view(table), { a: ['s1', 's2'] });
    assert.equal(table.version, 4);
    assert.equal(table.epoch, 'e1');
  }
});

test('a snapshot resyncs: replaces functions and endpoints, keeps state of endpoints that remain', () => {
  const { table, events } = makeTable();
  table.apply(snapshot('e1', 1, [fn('a'), fn('b')], [ep('s1', 'a'), ep('s2', 'a'), ep('s3', 'b')]));
  const s1 = table.getEndpoint('s1');
  assert.ok(s1);
  s1.inflight = 1;
  events.length = 0;
  table.apply(snapshot('e2', 7, [fn('a'), fn('c')], [ep('s1', 'a', true), ep('s4', 'c')]));
  assert.deepEqual(view(table), { a: ['s1(d)'], c: ['s4'] });
  assert.equal(table.getEndpoint('s1'), s1, 'the same entry, in-flight count kept');
  assert.equal(s1.inflight, 1);
  assert.deepEqual({ epoch: table.epoch, version: table.version }, { epoch: 'e2', version: 7 });
  assert.ok(events.includes('fn-removed:b'));
  assert.ok(events.includes('ep-retired:s2'));
  assert.ok(events.includes('ep-retired:s3'));
  assert.ok(events.includes('capacity:c'));
  assert.ok(!events.includes('capacity:a'), 'a only lost capacity');
});

test('puts and deletes are idempotent and keyed by sandbox id', () => {
  const { table, events } = makeTable();
  table.apply(snapshot('e1', 0, [], []));
  const changes = [
    { type: 'function.put', function: fn('a') },
    { type: 'endpoint.put', endpoint: ep('s1', 'a') },
    { type: 'endpoint.put', endpoint: ep('s1', 'a') },
    { type: 'endpoint.put', endpoint: ep('s2', 'a') },
    { type: 'endpoint.delete', sandboxId: 's2' },
    { type: 'endpoint.delete', sandboxId: 's2' },
    { type: 'endpoint.delete', sandboxId: 'unknown' },
    { type: 'function.delete', name: 'nope' },
  ] as const;
  table.apply(delta('e1', 0, 1, [...changes]));
  assert.deepEqual(view(table), { a: ['s1'] });
  assert.equal(events.filter((e) => e === 'ep-added:s1').length, 1, 'the second put of s1 is a no-op');
  assert.equal(table.functionCount, 1);
  // The same changes again as the next delta: same state.
  table.apply(delta('e1', 1, 2, [...changes]));
  assert.deepEqual(view(table), { a: ['s1'] });
});

test('drain flags and concurrency changes update endpoints in place and report new capacity', () => {
  const { table, events } = makeTable();
  table.apply(snapshot('e1', 0, [fn('a', 2)], [ep('s1', 'a')]));
  events.length = 0;
  table.apply(delta('e1', 0, 1, [{ type: 'endpoint.put', endpoint: ep('s1', 'a', true) }]));
  assert.equal(table.getEndpoint('s1')?.isDraining, true);
  assert.deepEqual(events, []);
  table.apply(delta('e1', 1, 2, [{ type: 'endpoint.put', endpoint: ep('s1', 'a', false) }]));
  assert.deepEqual(events, ['capacity:a']);
  table.apply(delta('e1', 2, 3, [{ type: 'function.put', function: fn('a', 5) }]));
  assert.equal(table.getEndpoint('s1')?.capacity, 5);
  assert.deepEqual(events, ['capacity:a', 'capacity:a']);
});

test('function delete retires its endpoints and reports the removal; unknown functions ignore endpoints', () => {
  const { table, events } = makeTable();
  table.apply(snapshot('e1', 0, [fn('a')], [ep('s1', 'a'), ep('s9', 'ghost')]));
  assert.equal(table.getEndpoint('s9'), undefined);
  const s1 = table.getEndpoint('s1');
  table.apply(delta('e1', 0, 1, [{ type: 'function.delete', name: 'a' }]));
  assert.equal(table.functionCount, 0);
  assert.equal(table.getEndpoint('s1'), undefined);
  assert.equal(s1?.isRetired, true);
  assert.deepEqual(events.slice(-2), ['ep-retired:s1', 'fn-removed:a']);
});

test('an endpoint put with a new address replaces the old entry', () => {
  const { table } = makeTable();
  table.apply(snapshot('e1', 0, [fn('a')], [ep('s1', 'a', false, '127.0.0.1:1')]));
  const old = table.getEndpoint('s1');
  table.apply(delta('e1', 0, 1, [{ type: 'endpoint.put', endpoint: ep('s1', 'a', false, '127.0.0.1:2') }]));
  assert.equal(old?.isRetired, true);
  assert.equal(table.getEndpoint('s1')?.address, '127.0.0.1:2');
  assert.equal(table.getFunction('a')?.endpoints.size, 1);
});

test("a function's endpoint array stays whole and indexed through removals from anywhere in it", () => {
  const { table } = makeTable();
  const ids = ['s1', 's2', 's3', 's4', 's5'];
  table.apply(snapshot('e1', 1, [fn('a')], ids.map((id) => ep(id, 'a'))));
  let version = 1;
  for (const gone of ['s2', 's5', 's1', 's4']) {
    table.apply(delta('e1', version, version + 1, [{ type: 'endpoint.delete', sandboxId: gone }]));
    version++;
    const endpoints = table.getFunction('a')?.endpoints.items ?? [];
    endpoints.forEach((e, i) => assert.equal(e.index, i));
    assert.equal(table.getEndpoint(gone)?.index, undefined);
  }
  assert.deepEqual(view(table), { a: ['s3'] });
  table.apply(delta('e1', version, version + 1, [{ type: 'endpoint.put', endpoint: ep('s6', 'a') }, { type: 'endpoint.delete', sandboxId: 's3' }]));
  assert.deepEqual(view(table), { a: ['s6'] });
  assert.equal(table.getFunction('a')?.endpoints.items[0]?.index, 0);
});
