import type { EvictionPolicy } from '../eviction/types.ts';
import type { PlacementPolicy, WorkerSnapshot } from '../placement/types.ts';

/** starting: asked of a worker, not ready · ready: routed · draining: no new invocations, being removed. */
export type SandboxPhase = 'starting' | 'ready' | 'draining';

/** What planning sees of one sandbox of the function. */
export interface SandboxView {
  readonly id: string;
  readonly generation: number;
  readonly phase: SandboxPhase;
  readonly workerId: string;
  /** Clock ms when the control plane decided to create it. */
  readonly requestedAtMs: number;
  /** Clock ms when it became ready; undefined while starting. */
  readonly readyAtMs: number | undefined;
  /** Clock ms of the last invocation a data plane reported on it (requestedAtMs if none). */
  readonly lastUsedMs: number;
}

/** A snapshot of one function, as planning needs it. */
export interface ScaleInput {
  readonly function: string;
  readonly runtime: string;
  readonly artifact: string | undefined;
  readonly resources: { readonly cpuMilli: number; readonly memoryMiB: number };
  /** The function's current generation: sandboxes of older ones are replaced. */
  readonly generation: number;
  /** The scale the autoscaler asks for (current generation). */
  readonly desired: number;
  readonly sandboxes: Iterable<SandboxView>;
  /** A creation failed recently and the back-off has not passed: create nothing now. */
  readonly isBackingOff: boolean;
  readonly workers: readonly WorkerSnapshot[];
  /** The most sandboxes a quota lets this plan create (absent: no quota binds the function). */
  readonly maxCreate?: number;
}

export interface PlanPolicies {
  readonly placement: PlacementPolicy;
  readonly eviction: EvictionPolicy;
}

/** Why a plan does what it does (the numbers are in the plan and its input). */
export type PlanReason =
  | 'converged'
  | 'scale-up'
  | 'scale-up-partly-placed'
  | 'no-worker-has-room'
  | 'backing-off'
  | 'scale-down'
  | 'rollout'
  | 'at-quota';

/**
 * What to do for one function, as data: applied by the plan executor, which alone changes
 * sandboxes. `create` holds one worker id per new sandbox (a worker may repeat).
 */
export interface ScalePlan {
  readonly function: string;
  readonly create: readonly string[];
  /** Starting sandboxes to stop (they serve nothing yet): deleted on their workers at once. */
  readonly cancel: readonly string[];
  /** Ready sandboxes to take out of routing, wait for, then delete: scale-down and retired generations. */
  readonly drain: readonly string[];
  /** Sandboxes wanted that no worker had room for. */
  readonly unplaced: number;
  /** Placement's own reason, when it left sandboxes unplaced. */
  readonly placementReason: string | undefined;
  readonly reason: PlanReason;
  /** The function has no sandbox and none could be placed: its waiting invocations should be refused. */
  readonly hasNoCapacity: boolean;
  /** A quota (`maxCreate`) let it create fewer sandboxes than its desired scale asked for. */
  readonly isCappedByQuota: boolean;
}
