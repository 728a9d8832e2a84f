import type { Random } from '../../core/random.ts';
import { placeByScore, type Candidate } from './candidates.ts';
import { balancedAllocationScore, leastAllocatedScore } from './scores.ts';
import type { PlacementPolicy, PlacementRequest } from './types.ts';

/** The default Kubernetes scheduler's resource scoring: LeastAllocated + BalancedAllocation, 0–200. */
export function kubernetesScore(candidate: Candidate, request: PlacementRequest): number {
  return leastAllocatedScore(candidate, request) + balancedAllocationScore(candidate, request);
}

/** Highest kubernetesScore; equal scores are broken at random, as kube-scheduler does. */
export function createKubernetesPlacement(random: Random): PlacementPolicy {
  return {
    name: 'kubernetes',
    place: (request, workers) => placeByScore('kubernetes', request, workers, kubernetesScore, random),
  };
}
