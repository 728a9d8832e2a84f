import type { Random } from '../../core/random.ts';
import { countFitting, nthFitting, placeEach } from './candidates.ts';
import type { PlacementPolicy } from './types.ts';

/** Each sandbox goes to a worker drawn uniformly among those it fits on. */
export function createRandomPlacement(random: Random): PlacementPolicy {
  return {
    name: 'random',
    place: (request, workers) => placeEach('random', request, workers, (candidates) => {
      const count = countFitting(candidates, request);
      return count === 0 ? undefined : nthFitting(candidates, request, random.int(count));
    }),
  };
}
