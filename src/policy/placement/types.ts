import type { Random } from '../../core/random.ts';

/** What placement sees of one worker. `allocated` includes sandboxes being created. */
export interface WorkerSnapshot {
  readonly id: string;
  readonly capacity: { readonly cpuMilli: number; readonly memoryMiB: number };
  readonly allocated: { readonly cpuMilli: number; readonly memoryMiB: number };
  readonly runtimes: readonly string[];
  readonly isSchedulable: boolean;
  /** Artifact digests this worker has cached (for artifact locality). */
  readonly cachedArtifacts: ReadonlySet<string>;
}

export interface PlacementRequest {
  readonly function: string;
  readonly runtime: string;
  /** Undefined for functions without code (runtime emulated). */
  readonly artifact: string | undefined;
  readonly resources: { readonly cpuMilli: number; readonly memoryMiB: number };
  /** How many sandboxes to place. */
  readonly count: number;
}

/** The plan: one worker id per placed sandbox (a worker may repeat); `unplaced` did not fit anywhere. */
export interface PlacementDecision {
  readonly workerIds: readonly string[];
  readonly unplaced: number;
  readonly reason: string;
}

/**
 * Filter → score → pick. Filters out unschedulable workers, workers without the runtime, and
 * workers whose free CPU or memory (capacity − allocated, counting sandboxes placed earlier in
 * the same call) is less than the request: a worker is never overcommitted.
 */
export interface PlacementPolicy {
  readonly name: PlacementPolicyName;
  place(request: PlacementRequest, workers: readonly WorkerSnapshot[]): PlacementDecision;
}

export const PLACEMENT_POLICIES = ['random', 'round-robin', 'least-allocated', 'kubernetes', 'bin-packing', 'artifact-locality', 'power-of-two'] as const;
export type PlacementPolicyName = (typeof PLACEMENT_POLICIES)[number];

export interface PlacementOptions {
  readonly random: Random;
}
