import { placeByScore, type Candidate } from './candidates.ts';
import { freeFraction } from './scores.ts';
import type { PlacementPolicy, PlacementRequest } from './types.ts';

/**
 * Workers that already cache the artifact first (no fetch on the cold start), the least allocated
 * among them; when none fits, the least allocated of the rest. A cached worker scores 1 + its free
 * fraction (0–1), so it always beats an uncached one. A function without code is cached nowhere.
 */
export function localityScore(candidate: Candidate, request: PlacementRequest): number {
  const isCached = request.artifact !== undefined && candidate.worker.cachedArtifacts.has(request.artifact);
  return (isCached ? 1 : 0) + freeFraction(candidate, request);
}

export function createArtifactLocalityPlacement(): PlacementPolicy {
  return {
    name: 'artifact-locality',
    place: (request, workers) => placeByScore('artifact-locality', request, workers, localityScore),
  };
}
