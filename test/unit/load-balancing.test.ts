import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BatonError } from '../../src/core/errors.ts';
import { createRandom } from '../../src/core/random.ts';
import { boundedLoad, ChBlBalancer } from '../../src/policy/load-balancing/ch-bl.ts';
import { createLoadBalancer, LOAD_BALANCING_POLICIES, parseLoadBalancingPolicy } from '../../src/policy/load-balancing/index.ts';
import type { EndpointView, LoadBalancer, LoadBalancingPolicyName } from '../../src/policy/load-balancing/index.ts';

const ep = (sandboxId: string, inflight = 0, capacity = 4, isDraining = false): EndpointView => ({ sandboxId, inflight, capacity, isDraining });
const balancer = (name: LoadBalancingPolicyName, seed = 1): LoadBalancer => createLoadBalancer(name, { random: createRandom(seed) });
const picks = (lb: LoadBalancer, endpoints: readonly EndpointView[], times: number, key?: string): string[] =>
  Array.from({ length: times }, () => lb.pick(endpoints, key)?.sandboxId ?? '-');
const counts = (ids: readonly string[]): Map<string, number> => {
  const result = new Map<string, number>();
  for (const id of ids) result.set(id, (result.get(id) ?? 0) + 1);
  return result;
};
const isConfigError = (err: unknown): boolean => err instanceof BatonError && err.code === 'ERR_INVALID_CONFIG';

describe('every load balancer', () => {
  for (const name of LOAD_BALANCING_POLICIES) {
    it(`${name}: undefined with no endpoints, all draining, or all full; never a draining or full one`, () => {
      const lb = balancer(name);
      assert.equal(lb.name, name);
      assert.equal(lb.pick([]), undefined);
      assert.equal(lb.pick([ep('a', 0, 4, true), ep('b', 4, 4), ep('c', 9, 4)]), undefined);
      const mixed = [ep('drain', 0, 4, true), ep('full', 4, 4), ep('ok', 3, 4)];
      assert.deepEqual(new Set(picks(lb, mixed, 20, 'k')), new Set(['ok']));
    });

    it(`${name}: never an endpoint that refused a connection (its sandbox is gone), however idle`, () => {
      const lb = balancer(name);
      const refused = (id: string): EndpointView => ({ ...ep(id), isRefused: true });
      assert.equal(lb.pick([refused('a'), refused('b')], 'k'), undefined);
      const endpoints = [refused('gone-1'), ep('busy', 3, 4), refused('gone-2'), ep('ok', 2, 4)];
      for (const key of ['k', 'other', undefined]) {
        const picked = picks(lb, endpoints, 20, key);
        assert.ok(picked.every((id) => id === 'busy' || id === 'ok'), `${key}: ${picked.join()}`);
      }
    });
  }
});

describe('random', () => {
  it('is uniform among eligible endpoints', () => {
    const endpoints = [ep('a'), ep('x', 0, 4, true), ep('b'), ep('y', 4, 4), ep('c')];
    const tally = counts(picks(balancer('random', 7), endpoints, 3_000));
    assert.deepEqual([...tally.keys()].sort(), ['a', 'b', 'c']);
    for (const n of tally.values()) assert.ok(n > 850 && n < 1_150, `share ${n} of 3000`);
  });
});

describe('round-robin', () => {
  it('rotates over the array, skipping ineligible endpoints', () => {
    const lb = balancer('round-robin');
    assert.deepEqual(picks(lb, [ep('a'), ep('b'), ep('c')], 4), ['a', 'b', 'c', 'a']);
    assert.deepEqual(picks(lb, [ep('a'), ep('b', 0, 4, true), ep('c', 4, 4), ep('d')], 4), ['d', 'a', 'd', 'a']);
  });

  it('keeps going when the array shrinks under the cursor', () => {
    const lb = balancer('round-robin');
    picks(lb, [ep('a'), ep('b'), ep('c'), ep('d')], 3); // cursor at 3
    assert.deepEqual(picks(lb, [ep('a'), ep('b')], 3), ['b', 'a', 'b']);
  });
});

describe('least-inflight', () => {
  it('takes the fewest in flight among eligible, ties to the first', () => {
    const lb = balancer('least-inflight');
    assert.equal(lb.pick([ep('a', 2), ep('b', 1), ep('c', 1), ep('d', 0, 4, true)])?.sandboxId, 'b');
    assert.equal(lb.pick([ep('a', 0, 0), ep('b', 3), ep('c', 2)])?.sandboxId, 'c');
  });
});

describe('power-of-two', () => {
  it('takes the less loaded of two samples', () => {
    assert.deepEqual(new Set(picks(balancer('power-of-two'), [ep('busy', 3), ep('idle', 1)], 50)), new Set(['idle']));
  });

  it('never takes the most loaded endpoint when there are several', () => {
    const endpoints = [ep('e0', 0, 9), ep('e1', 1, 9), ep('e2', 2, 9), ep('e3', 3, 9), ep('e4', 4, 9)];
    const tally = counts(picks(balancer('power-of-two', 3), endpoints, 2_000));
    assert.equal(tally.get('e4'), undefined);
    // The least loaded wins whenever it is sampled: 2 of 5 draws → 40 %.
    const least = tally.get('e0') ?? 0;
    assert.ok(least > 700 && least < 900, `e0 ${least} of 2000`);
  });
});

describe('knative', () => {
  it('takes the first eligible endpoint when concurrency ≤ 3', () => {
    const endpoints = [ep('a', 3, 3), ep('b', 1, 3), ep('c', 0, 3)];
    assert.deepEqual(picks(balancer('knative'), endpoints, 3), ['b', 'b', 'b']);
  });

  it('rotates when concurrency > 3', () => {
    const endpoints = [ep('a', 0, 10), ep('b', 10, 10), ep('c', 5, 10)];
    assert.deepEqual(picks(balancer('knative'), endpoints, 4), ['a', 'c', 'a', 'c']);
  });
});

describe('ch-bl', () => {
  const five = (): EndpointView[] => ['s0', 's1', 's2', 's3', 's4'].map((id) => ep(id, 0, 100));

  it('sends one key to the same endpoint, whatever the array order', () => {
    const endpoints = five();
    const home = balancer('ch-bl').pick(endpoints, 'user-42')?.sandboxId;
    assert.ok(home !== undefined);
    assert.deepEqual(new Set(picks(balancer('ch-bl'), endpoints, 10, 'user-42')), new Set([home]));
    assert.equal(balancer('ch-bl', 99).pick([...endpoints].reverse(), 'user-42')?.sandboxId, home);
    const lb = balancer('ch-bl');
    lb.pick(endpoints, 'user-42');
    assert.equal(lb.pick([...endpoints].reverse(), 'user-42')?.sandboxId, home); // re-indexed, same ring
  });

  it('spreads keys over the endpoints', () => {
    const lb = balancer('ch-bl');
    const tally = counts(Array.from({ length: 500 }, (_, i) => lb.pick(five(), `key-${i}`)?.sandboxId ?? '-'));
    assert.equal(tally.size, 5);
    for (const n of tally.values()) assert.ok(n > 40, `share ${n} of 500`);
  });

  it('moves only the keys of a removed endpoint', () => {
    const lb = balancer('ch-bl');
    const before = Array.from({ length: 200 }, (_, i) => lb.pick(five(), `key-${i}`)?.sandboxId);
    const without = five().filter((e) => e.sandboxId !== 's2');
    before.forEach((home, i) => {
      const after = lb.pick(without, `key-${i}`)?.sandboxId;
      if (home !== 's2') assert.equal(after, home, `key-${i}`);
      else assert.notEqual(after, 's2');
    });
  });

  it('passes a request on when its endpoint is over the bound', () => {
    const endpoints = five();
    const home = balancer('ch-bl').pick(endpoints, 'hot')?.sandboxId;
    // 8 in flight at home, 0 elsewhere: bound ceil(1.25 × 9 / 5) = 3, and 8 + 1 > 3.
    const loaded = endpoints.map((e) => (e.sandboxId === home ? ep(e.sandboxId, 8, 100) : e));
    const next = balancer('ch-bl').pick(loaded, 'hot');
    assert.notEqual(next?.sandboxId, home);
    assert.equal(next?.inflight, 0);
  });

  it('computes the bound as ceil((1 + ε) × (total + 1) / n)', () => {
    assert.equal(boundedLoad(0.25, 6, 4), 3); //  ceil(2.19)
    assert.equal(boundedLoad(0, 3, 4), 1); //     ceil(1)
    assert.equal(boundedLoad(1, 0, 1), 2);
  });

  it('uses a fixed key when none is given', () => {
    const lb = balancer('ch-bl');
    const first = lb.pick(five());
    assert.deepEqual(new Set(picks(lb, five(), 10)), new Set([first?.sandboxId]));
  });

  it('rejects a negative or non-finite epsilon', () => {
    const random = createRandom(1);
    assert.throws(() => createLoadBalancer('ch-bl', { random, epsilon: -0.1 }), isConfigError);
    assert.throws(() => new ChBlBalancer(random, Number.NaN), isConfigError);
    assert.equal(createLoadBalancer('ch-bl', { random, epsilon: 0 }).name, 'ch-bl');
  });
});

describe('parseLoadBalancingPolicy', () => {
  it('accepts every known name', () => {
    for (const name of LOAD_BALANCING_POLICIES) assert.equal(parseLoadBalancingPolicy(name), name);
  });

  it('rejects an unknown name with ERR_INVALID_CONFIG naming the value and the choices', () => {
    assert.throws(() => parseLoadBalancingPolicy('fastest'), (err: unknown) => {
      assert.ok(isConfigError(err));
      assert.match((err as Error).message, /"fastest"/);
      assert.match((err as Error).message, /random, round-robin, least-inflight, power-of-two, knative, ch-bl/);
      return true;
    });
  });
});
