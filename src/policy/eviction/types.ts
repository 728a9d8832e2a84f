import type { Random } from '../../core/random.ts';

export interface EvictionCandidate {
  readonly sandboxId: string;
  readonly workerId: string;
  /** When the sandbox became ready (clock ms). */
  readonly readyAtMs: number;
  /** When an invocation last used it (clock ms; readyAtMs if never). */
  readonly lastUsedMs: number;
}

/** Chooses `count` victims (fewer if there are fewer candidates), most evictable first. */
export interface EvictionPolicy {
  readonly name: EvictionPolicyName;
  pickVictims(candidates: readonly EvictionCandidate[], count: number): readonly string[];
}

export const EVICTION_POLICIES = ['random', 'newest', 'oldest', 'least-recently-used'] as const;
export type EvictionPolicyName = (typeof EVICTION_POLICIES)[number];

export interface EvictionOptions {
  readonly random: Random;
}
