import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BatonError } from '../../src/core/errors.ts';
import { createRandom } from '../../src/core/random.ts';
import { createPlacementPolicy, parsePlacementPolicy, PLACEMENT_POLICIES } from '../../src/policy/placement/index.ts';
import type { PlacementPolicy, PlacementPolicyName, PlacementRequest, WorkerSnapshot } from '../../src/policy/placement/index.ts';

interface WorkerOptions {
  readonly cpu?: number;
  readonly memory?: number;
  readonly usedCpu?: number;
  readonly usedMemory?: number;
  readonly runtimes?: readonly string[];
  readonly isSchedulable?: boolean;
  readonly cached?: readonly string[];
}

/** A worker of 1000m CPU and 1000 MiB unless told otherwise. */
const worker = (id: string, o: WorkerOptions = {}): WorkerSnapshot => ({
  id,
  capacity: { cpuMilli: o.cpu ?? 1_000, memoryMiB: o.memory ?? 1_000 },
  allocated: { cpuMilli: o.usedCpu ?? 0, memoryMiB: o.usedMemory ?? 0 },
  runtimes: o.runtimes ?? ['process'],
  isSchedulable: o.isSchedulable ?? true,
  cachedArtifacts: new Set(o.cached ?? []),
});

/** 100m CPU and 100 MiB per sandbox. */
const request = (count: number, cpuMilli = 100, memoryMiB = 100): PlacementRequest =>
  ({ function: 'f', runtime: 'process', artifact: 'sha256:aa', resources: { cpuMilli, memoryMiB }, count });
const policy = (name: PlacementPolicyName, seed = 1): PlacementPolicy => createPlacementPolicy(name, { random: createRandom(seed) });

describe('every placement policy', () => {
  const filtered = [
    worker('drained', { isSchedulable: false }),
    worker('no-runtime', { runtimes: ['container'] }),
    worker('no-cpu', { usedCpu: 950 }),
    worker('no-memory', { usedMemory: 901 }),
    worker('ok', { usedCpu: 700, usedMemory: 500 }),
  ];

  for (const name of PLACEMENT_POLICIES) {
    it(`${name}: filters, never overcommits, and reports what did not fit`, () => {
      const decision = policy(name).place(request(5), filtered);
      // 'ok' has 300m free → 3 sandboxes of 100m; the other 2 fit nowhere.
      assert.deepEqual(decision.workerIds, ['ok', 'ok', 'ok']);
      assert.equal(decision.unplaced, 2);
      assert.match(decision.reason, new RegExp(`^${name}: placed 3/5 on 1 worker\\(s\\); 2 unplaced`));
    });

    it(`${name}: places nothing for a count of 0 and everything when it fits`, () => {
      const p = policy(name);
      assert.deepEqual(p.place(request(0), [worker('a')]), { workerIds: [], unplaced: 0, reason: `${name}: placed 0/0 on 0 worker(s)` });
      const decision = p.place(request(6), [worker('a'), worker('b'), worker('c')]);
      assert.equal(decision.workerIds.length, 6);
      assert.equal(decision.unplaced, 0);
      assert.equal(p.place(request(1), []).unplaced, 1);
    });
  }
});

describe('least-allocated', () => {
  it('takes the emptiest worker and spreads', () => {
    const workers = [worker('half', { usedCpu: 500, usedMemory: 500 }), worker('a'), worker('b')];
    assert.deepEqual(policy('least-allocated').place(request(5), workers).workerIds, ['a', 'b', 'a', 'b', 'a']);
  });
});

describe('bin-packing', () => {
  it('fills the fullest worker that still fits', () => {
    const workers = [worker('empty'), worker('half', { usedCpu: 500, usedMemory: 500 }), worker('almost', { usedCpu: 950 })];
    // 'almost' has 50m free: no fit. 'half' takes 5 (500m free), then 'empty'.
    assert.deepEqual(policy('bin-packing').place(request(7), workers).workerIds, ['half', 'half', 'half', 'half', 'half', 'empty', 'empty']);
  });
});

describe('kubernetes', () => {
  it('prefers a balanced worker when least-allocated scores tie', () => {
    // After +100/+100: balanced 500/500 → least 50, balanced 100 = 150;
    // skewed 200/800 → least (80 + 20) / 2 = 50, balanced (1 − 0.6 / 2) × 100 = 70 = 120.
    const workers = [worker('skewed', { usedCpu: 100, usedMemory: 700 }), worker('balanced', { usedCpu: 400, usedMemory: 400 })];
    assert.deepEqual(policy('kubernetes').place(request(1), workers).workerIds, ['balanced']);
  });

  it('breaks ties at random', () => {
    const p = policy('kubernetes', 5);
    const chosen = new Set(Array.from({ length: 40 }, () => p.place(request(1), [worker('a'), worker('b'), worker('c')]).workerIds[0]));
    assert.deepEqual([...chosen].sort(), ['a', 'b', 'c']);
  });
});

describe('artifact-locality', () => {
  it('prefers workers with the artifact cached, then the least allocated', () => {
    const workers = [
      worker('empty'),
      worker('cached-busy', { usedCpu: 700, usedMemory: 700, cached: ['sha256:aa'] }),
      worker('cached-idle', { usedCpu: 600, usedMemory: 600, cached: ['sha256:aa'] }),
    ];
    // 'cached-idle' (400m free) first; then the two cached ones tie (ties go to array order) and
    // alternate until both are full (4 + 3 sandboxes); only then 'empty'.
    const { workerIds } = policy('artifact-locality').place(request(9), workers);
    assert.deepEqual(workerIds, ['cached-idle', 'cached-busy', 'cached-idle', 'cached-busy', 'cached-idle', 'cached-busy', 'cached-idle', 'empty', 'empty']);
  });
});

describe('power-of-two', () => {
  it('takes the emptier of two samples', () => {
    const p = policy('power-of-two');
    for (let i = 0; i < 20; i++) {
      assert.deepEqual(p.place(request(1), [worker('busy', { usedCpu: 800 }), worker('idle', { usedCpu: 100 })]).workerIds, ['idle']);
    }
  });

  it('never takes the fullest of several workers', () => {
    const p = policy('power-of-two', 11);
    const workers = [worker('w0'), worker('w1', { usedCpu: 200 }), worker('w2', { usedCpu: 400 }), worker('w3', { usedCpu: 600 })];
    const chosen = new Set(Array.from({ length: 100 }, () => p.place(request(1), workers).workerIds[0]));
    assert.equal(chosen.has('w3'), false);
    assert.ok(chosen.has('w0') && chosen.size >= 2);
  });
});

describe('round-robin', () => {
  it('rotates across calls and skips workers that do not fit', () => {
    const p = policy('round-robin');
    const workers = [worker('a'), worker('b', { usedCpu: 1_000 }), worker('c'), worker('d')];
    assert.deepEqual(p.place(request(4), workers).workerIds, ['a', 'c', 'd', 'a']);
    assert.deepEqual(p.place(request(2), workers).workerIds, ['c', 'd']);
  });
});

describe('random', () => {
  it('uses every worker that fits and no other', () => {
    const p = policy('random', 3);
    const workers = [worker('a'), worker('b'), worker('full', { usedMemory: 1_000 }), worker('c')];
    const { workerIds } = p.place(request(30), workers);
    assert.deepEqual([...new Set(workerIds)].sort(), ['a', 'b', 'c']);
  });
});

describe('parsePlacementPolicy', () => {
  it('accepts every known name and rejects others with ERR_INVALID_CONFIG', () => {
    for (const name of PLACEMENT_POLICIES) assert.equal(parsePlacementPolicy(name), name);
    assert.throws(() => parsePlacementPolicy('spread'), (err: unknown) =>
      err instanceof BatonError && err.code === 'ERR_INVALID_CONFIG' && /"spread"/.test(err.message) && /bin-packing/.test(err.message));
  });
});
