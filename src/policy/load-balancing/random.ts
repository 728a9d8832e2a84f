import type { Random } from '../../core/random.ts';
import { countEligible, nthEligible } from './eligible.ts';
import type { EndpointView, LoadBalancer } from './types.ts';

/** Uniform among eligible endpoints: two passes over the array, no copy. */
export function createRandomBalancer(random: Random): LoadBalancer {
  return {
    name: 'random',
    pick(endpoints: readonly EndpointView[]): EndpointView | undefined {
      const count = countEligible(endpoints);
      return count === 0 ? undefined : nthEligible(endpoints, random.int(count));
    },
  };
}
