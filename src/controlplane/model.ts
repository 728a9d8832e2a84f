import type { FunctionRecord } from '../api/function-spec.ts';
import type { CreationBreakdown } from '../api/worker.ts';
import type { RoutingEndpoint, RoutingFunction } from '../api/dataplane.ts';
import type { WorkerSnapshot } from '../policy/placement/types.ts';

/**
 * The control plane's in-memory cluster state. Nothing here is persisted: sandboxes are
 * reconstructed from what workers report when they (re)register.
 */

/** starting: asked of a worker, not ready · ready: routed · draining: no new invocations, being removed. */
export type SandboxPhase = 'starting' | 'ready' | 'draining';

export interface Sandbox {
  readonly id: string;
  readonly fn: FunctionEntry;
  readonly generation: number;
  readonly worker: WorkerEntry;
  readonly resources: { readonly cpuMilli: number; readonly memoryMiB: number };
  phase: SandboxPhase;
  address: string | undefined;
  /** Clock ms when the control plane decided to create it. */
  readonly requestedAtMs: number;
  /** Wall-clock ms (for display; formatted when read). */
  readonly createdAtWallMs: number;
  readyAtMs: number | undefined;
  readyAtWallMs: number | undefined;
  breakdown: (CreationBreakdown & { readonly controlPlaneMs: number }) | undefined;
  lastUsedMs: number;
  isRemoved: boolean;
}

export type WorkerState = 'ready' | 'unschedulable' | 'unregistered';

export interface WorkerEntry extends WorkerSnapshot {
  readonly id: string;
  url: string;
  capacity: { cpuMilli: number; memoryMiB: number };
  readonly allocated: { cpuMilli: number; memoryMiB: number };
  runtimes: readonly string[];
  state: WorkerState;
  lastHeartbeatMs: number;
  readonly sandboxes: Map<string, Sandbox>;
  readonly cachedArtifacts: Set<string>;
}

export interface FunctionEntry {
  record: FunctionRecord;
  readonly sandboxes: Map<string, Sandbox>;
  /** The scale the autoscaler last asked for (current generation only). */
  desired: number;
  isDeleting: boolean;
  /** True while the last placement for this function found no worker with room and it has no sandbox. */
  hasNoCapacity: boolean;
  /** Recent cold-start breakdowns, newest last (bounded). */
  readonly recentColdStarts: ColdStartRecord[];
}

/** A recent cold start; the breakdown object is the sandbox's own (shared, not copied). */
export interface ColdStartRecord {
  readonly sandboxId: string;
  readonly workerId: string;
  readonly atWallMs: number;
  readonly breakdown: CreationBreakdown & { readonly controlPlaneMs: number };
}

export function newWorkerEntry(init: { id: string; url: string; capacity: { cpuMilli: number; memoryMiB: number }; runtimes: readonly string[]; state: WorkerState; nowMs: number }): WorkerEntry {
  const entry: WorkerEntry = {
    id: init.id,
    url: init.url,
    capacity: { ...init.capacity },
    allocated: { cpuMilli: 0, memoryMiB: 0 },
    runtimes: init.runtimes,
    state: init.state,
    lastHeartbeatMs: init.nowMs,
    sandboxes: new Map(),
    cachedArtifacts: new Set(),
    get isSchedulable() {
      return entry.state === 'ready';
    },
  };
  return entry;
}

export function newFunctionEntry(record: FunctionRecord): FunctionEntry {
  return { record, sandboxes: new Map(), desired: 0, isDeleting: false, hasNoCapacity: false, recentColdStarts: [] };
}

export interface ScaleCounts {
  /** Current-generation sandboxes starting or ready: what counts towards `desired`. */
  readonly current: number;
  readonly starting: number;
  readonly ready: number;
  readonly draining: number;
  /** Ready sandboxes of older generations, waiting to be replaced. */
  readonly outdatedReady: number;
}

export function countSandboxes(fn: FunctionEntry): ScaleCounts {
  let starting = 0;
  let ready = 0;
  let draining = 0;
  let outdatedReady = 0;
  const generation = fn.record.generation;
  for (const sandbox of fn.sandboxes.values()) {
    if (sandbox.phase === 'draining') draining++;
    else if (sandbox.generation !== generation) {
      if (sandbox.phase === 'ready') outdatedReady++;
    } else if (sandbox.phase === 'ready') ready++;
    else starting++;
  }
  return { current: starting + ready, starting, ready, draining, outdatedReady };
}

export function toRoutingFunction(fn: FunctionEntry): RoutingFunction {
  const { spec } = fn.record;
  const routing = { name: spec.name, generation: fn.record.generation, concurrency: spec.concurrency, timeoutMs: spec.timeoutMs };
  return spec.affinityHeader === undefined ? routing : { ...routing, affinityHeader: spec.affinityHeader };
}

export function toRoutingEndpoint(sandbox: Sandbox): RoutingEndpoint {
  return { sandboxId: sandbox.id, function: sandbox.fn.record.spec.name, address: sandbox.address ?? '', isDraining: sandbox.phase === 'draining' };
}
