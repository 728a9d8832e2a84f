import { placeByScore } from './candidates.ts';
import { usedFraction } from './scores.ts';
import type { PlacementPolicy } from './types.ts';

/** Pack: each sandbox goes to the fullest worker it still fits on (ties: first), leaving others empty. */
export function createBinPackingPlacement(): PlacementPolicy {
  return {
    name: 'bin-packing',
    place: (request, workers) => placeByScore('bin-packing', request, workers, usedFraction),
  };
}
