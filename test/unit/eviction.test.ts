import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BatonError } from '../../src/core/errors.ts';
import { createRandom } from '../../src/core/random.ts';
import { createEvictionPolicy, EVICTION_POLICIES, parseEvictionPolicy } from '../../src/policy/eviction/index.ts';
import type { EvictionCandidate, EvictionPolicyName } from '../../src/policy/eviction/index.ts';

const candidate = (sandboxId: string, readyAtMs: number, lastUsedMs: number): EvictionCandidate => ({ sandboxId, workerId: 'w', readyAtMs, lastUsedMs });
const CANDIDATES = [
  candidate('s-mid', 2_000, 9_000),
  candidate('s-old', 1_000, 5_000),
  candidate('s-new', 3_000, 3_500),
  candidate('s-newer', 4_000, 8_000),
];
const pick = (name: EvictionPolicyName, count: number, seed = 1): readonly string[] =>
  createEvictionPolicy(name, { random: createRandom(seed) }).pickVictims(CANDIDATES, count);

describe('eviction policies', () => {
  const table: ReadonlyArray<readonly [EvictionPolicyName, number, readonly string[]]> = [
    ['newest', 2, ['s-newer', 's-new']],
    ['oldest', 2, ['s-old', 's-mid']],
    ['least-recently-used', 3, ['s-new', 's-old', 's-newer']],
    ['oldest', 10, ['s-old', 's-mid', 's-new', 's-newer']],
    ['newest', 0, []],
    ['least-recently-used', -1, []],
  ];
  for (const [name, count, expected] of table) {
    it(`${name} × ${count} → ${expected.join(', ') || 'none'}`, () => {
      assert.deepEqual(pick(name, count), expected);
    });
  }

  it('keeps input order among equals', () => {
    const policy = createEvictionPolicy('oldest', { random: createRandom(1) });
    assert.deepEqual(policy.pickVictims([candidate('b', 1, 1), candidate('a', 1, 1), candidate('c', 0, 0)], 2), ['c', 'b']);
  });

  it('random: distinct victims drawn from the candidates, fewer when there are fewer', () => {
    for (let seed = 0; seed < 20; seed++) {
      const victims = pick('random', 2, seed);
      assert.equal(victims.length, 2);
      assert.equal(new Set(victims).size, 2);
      for (const v of victims) assert.ok(CANDIDATES.some((c) => c.sandboxId === v));
    }
    assert.equal(pick('random', 9).length, 4);
    assert.deepEqual(pick('random', 0), []);
  });

  it('random: every candidate can be chosen', () => {
    const seen = new Set(Array.from({ length: 50 }, (_, seed) => pick('random', 1, seed)[0]));
    assert.equal(seen.size, 4);
  });

  it('does not reorder the input', () => {
    const before = CANDIDATES.map((c) => c.sandboxId);
    for (const name of EVICTION_POLICIES) pick(name, 3);
    assert.deepEqual(CANDIDATES.map((c) => c.sandboxId), before);
  });
});

describe('parseEvictionPolicy', () => {
  it('accepts every known name and rejects others with ERR_INVALID_CONFIG', () => {
    for (const name of EVICTION_POLICIES) {
      assert.equal(parseEvictionPolicy(name), name);
      assert.equal(createEvictionPolicy(name, { random: createRandom(1) }).name, name);
    }
    assert.throws(() => parseEvictionPolicy('lru'), (err: unknown) =>
      err instanceof BatonError && err.code === 'ERR_INVALID_CONFIG' && /"lru"/.test(err.message) && /least-recently-used/.test(err.message));
  });
});
