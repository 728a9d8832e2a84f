import { placeByScore } from './candidates.ts';
import { freeFraction } from './scores.ts';
import type { PlacementPolicy } from './types.ts';

/** Spread: each sandbox goes to the worker with the largest free fraction after it (ties: first). */
export function createLeastAllocatedPlacement(): PlacementPolicy {
  return {
    name: 'least-allocated',
    place: (request, workers) => placeByScore('least-allocated', request, workers, freeFraction),
  };
}
