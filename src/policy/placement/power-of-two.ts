import type { Random } from '../../core/random.ts';
import { countFitting, nthFitting, placeEach } from './candidates.ts';
import { freeFraction } from './scores.ts';
import type { PlacementPolicy } from './types.ts';

/**
 * Power of two choices: sample two distinct workers the sandbox fits on and take the one with the
 * larger free fraction (a tie goes to the first sample). Near least-allocated quality without
 * scoring every worker's fit.
 */
export function createPowerOfTwoPlacement(random: Random): PlacementPolicy {
  return {
    name: 'power-of-two',
    place: (request, workers) => placeEach('power-of-two', request, workers, (candidates) => {
      const count = countFitting(candidates, request);
      if (count <= 1) return count === 0 ? undefined : nthFitting(candidates, request, 0);
      const first = random.int(count);
      let second = random.int(count - 1);
      if (second >= first) second++;
      const a = nthFitting(candidates, request, first);
      const b = nthFitting(candidates, request, second);
      if (a === undefined || b === undefined) return a ?? b;
      return freeFraction(b, request) > freeFraction(a, request) ? b : a;
    }),
  };
}
