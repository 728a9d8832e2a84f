import type { Random } from '../../core/random.ts';
import { countEligible, isEligible } from './eligible.ts';
import type { EndpointView, LoadBalancer } from './types.ts';

/**
 * Power of two choices: sample two distinct eligible endpoints and take the less loaded (fewer in
 * flight; a tie goes to the first sample). Dirigent's version keeps the more loaded one, which
 * defeats the point; this one does not. Two passes over the array, no allocation.
 */
export function createPowerOfTwoBalancer(random: Random): LoadBalancer {
  return {
    name: 'power-of-two',
    pick(endpoints: readonly EndpointView[]): EndpointView | undefined {
      const count = countEligible(endpoints);
      if (count <= 1) return count === 0 ? undefined : endpoints.find(isEligible);
      // Distinct ranks: the first in [0, count), the second in [0, count − 1) shifted past the first.
      const first = random.int(count);
      let second = random.int(count - 1);
      if (second >= first) second++;
      let a: EndpointView | undefined;
      let b: EndpointView | undefined;
      let rank = 0;
      for (const endpoint of endpoints) {
        if (!isEligible(endpoint)) continue;
        if (rank === first) a = endpoint;
        if (rank === second) b = endpoint;
        rank++;
      }
      if (a === undefined || b === undefined) return a ?? b;
      return b.inflight < a.inflight ? b : a;
    },
  };
}
