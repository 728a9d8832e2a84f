import { parsePolicyName } from '../parse-policy-name.ts';
import { createArtifactLocalityPlacement } from './artifact-locality.ts';
import { createBinPackingPlacement } from './bin-packing.ts';
import { createKubernetesPlacement } from './kubernetes.ts';
import { createLeastAllocatedPlacement } from './least-allocated.ts';
import { createPowerOfTwoPlacement } from './power-of-two.ts';
import { createRandomPlacement } from './random.ts';
import { RoundRobinPlacement } from './round-robin.ts';
import { PLACEMENT_POLICIES } from './types.ts';
import type { PlacementOptions, PlacementPolicy, PlacementPolicyName } from './types.ts';

export type { PlacementDecision, PlacementOptions, PlacementPolicy, PlacementPolicyName, PlacementRequest, WorkerSnapshot } from './types.ts';
export { PLACEMENT_POLICIES } from './types.ts';

/** A new placement policy of the named kind (round-robin keeps a cursor across calls). */
export function createPlacementPolicy(name: PlacementPolicyName, options: PlacementOptions): PlacementPolicy {
  switch (name) {
    case 'random': return createRandomPlacement(options.random);
    case 'round-robin': return new RoundRobinPlacement();
    case 'least-allocated': return createLeastAllocatedPlacement();
    case 'kubernetes': return createKubernetesPlacement(options.random);
    case 'bin-packing': return createBinPackingPlacement();
    case 'artifact-locality': return createArtifactLocalityPlacement();
    case 'power-of-two': return createPowerOfTwoPlacement(options.random);
  }
}

/** @throws BatonError ERR_INVALID_CONFIG naming the bad value and the allowed names. */
export function parsePlacementPolicy(name: string): PlacementPolicyName {
  return parsePolicyName('placement', PLACEMENT_POLICIES, name);
}
