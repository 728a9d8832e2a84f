import type { Timer } from '../core/clock.ts';
import { SlotSet } from '../core/slot-set.ts';
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

/** The cold-start breakdown shown for a sandbox: the worker's phases and the control plane's decision → ready. */
export type ColdStartBreakdown = CreationBreakdown & { readonly controlPlaneMs: number };

/**
 * One sandbox. There are tens of thousands of these, so the record is kept flat: one object per
 * sandbox with a fixed set of fields (a class, so every instance shares one hidden class), the
 * cold-start breakdown held as numbers and built as an object only when read.
 */
export class Sandbox {
  readonly id: string;
  readonly fn: FunctionEntry;
  readonly generation: number;
  readonly worker: WorkerEntry;
  readonly resources: { readonly cpuMilli: number; readonly memoryMiB: number };
  phase: SandboxPhase = 'starting';
  address: string | undefined = undefined;
  /** Clock ms when the control plane decided to create it. */
  readonly requestedAtMs: number;
  /** Wall-clock ms (for display; formatted when read). */
  readonly createdAtWallMs: number;
  readyAtMs: number | undefined = undefined;
  readyAtWallMs: number | undefined = undefined;
  lastUsedMs: number;
  isRemoved = false;
  /**
   * Fails the start if the worker has not reported it ready in time; cleared when it is. Kept here,
   * not in a Map by id: a Map of the starting sandboxes grows and empties with every batch, and V8
   * gives it a new table each time.
   */
  createTimer: Timer | undefined = undefined;
  /** Its places in its function's and its worker's sandbox sets (SlotSet; -1: not in it). */
  functionSlot = -1;
  workerSlot = -1;
  /** The worker's creation phases, ms; NaN until the worker reports ready (and for an adopted sandbox). */
  #fetchMs = Number.NaN;
  #startMs = Number.NaN;
  #readyMs = Number.NaN;
  #totalMs = Number.NaN;

  constructor(init: { id: string; fn: FunctionEntry; worker: WorkerEntry; generation: number; resources: Sandbox['resources']; requestedAtMs: number; createdAtWallMs: number }) {
    this.id = init.id;
    this.fn = init.fn;
    this.generation = init.generation;
    this.worker = init.worker;
    this.resources = init.resources;
    this.requestedAtMs = init.requestedAtMs;
    this.createdAtWallMs = init.createdAtWallMs;
    this.lastUsedMs = init.requestedAtMs;
  }

  /** Records the worker's breakdown of a creation (the control plane's share is readyAtMs − requestedAtMs). */
  setCreationBreakdown(breakdown: CreationBreakdown): void {
    this.#fetchMs = breakdown.fetchMs;
    this.#startMs = breakdown.startMs;
    this.#readyMs = breakdown.readyMs;
    this.#totalMs = breakdown.totalMs;
  }

  /** The cold-start breakdown, once the worker has reported one (a new object on each read). */
  get breakdown(): ColdStartBreakdown | undefined {
    if (Number.isNaN(this.#totalMs) || this.readyAtMs === undefined) return undefined;
    return { fetchMs: this.#fetchMs, startMs: this.#startMs, readyMs: this.#readyMs, totalMs: this.#totalMs, controlPlaneMs: this.readyAtMs - this.requestedAtMs };
  }
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
  /** Its sandboxes (looked up by id in `ClusterState.sandboxes`, never here). */
  readonly sandboxes: SlotSet<Sandbox, 'workerSlot'>;
  readonly cachedArtifacts: Set<string>;
}

export interface FunctionEntry {
  record: FunctionRecord;
  /** Its sandboxes (looked up by id in `ClusterState.sandboxes`). */
  readonly sandboxes: SlotSet<Sandbox, 'functionSlot'>;
  /** The scale the autoscaler last asked for (current generation only). */
  desired: number;
  isDeleting: boolean;
  /** True while the last placement for this function found no worker with room and it has no sandbox. */
  hasNoCapacity: boolean;
  /** The function's recent cold starts (describe). */
  readonly recentColdStarts: ColdStartHistory;
}

/** Cold starts kept per function for describe. */
export const RECENT_COLD_STARTS = 20;

export interface ColdStartRecord {
  readonly sandboxId: string;
  readonly workerId: string;
  /** Wall-clock ms when it became ready. */
  readonly readyAtWallMs: number;
  readonly breakdown: ColdStartBreakdown | undefined;
}

/** Numbers per cold start: readyAtWallMs, then the breakdown's fetch, start, ready, total, control plane. */
const FIELDS = 6;

/**
 * A function's last `capacity` cold starts, as a ring: ids in two arrays, numbers in a third (a
 * plain array of doubles, which grows as the first `capacity` cold starts arrive; a typed array
 * would add an ArrayBuffer and a view per function). A cold start's figures are kept long after
 * its sandbox is gone: kept as objects — or as the sandboxes themselves — they were up to twenty
 * per function of the control plane's longest-lived objects, for the garbage collector to trace.
 */
export class ColdStartHistory {
  readonly #capacity: number;
  readonly #sandboxIds: string[] = [];
  readonly #workerIds: string[] = [];
  #numbers: number[] | undefined;
  /** Slot of the next record; with `#size` = capacity, also the oldest. */
  #next = 0;
  #size = 0;

  constructor(capacity = RECENT_COLD_STARTS) {
    this.#capacity = capacity;
  }

  get size(): number {
    return this.#size;
  }

  record(sandboxId: string, workerId: string, readyAtWallMs: number, breakdown: ColdStartBreakdown | undefined): void {
    const slot = this.#next;
    // Until the ring wraps around, slot = size: the writes below append.
    const numbers = (this.#numbers ??= []);
    this.#sandboxIds[slot] = sandboxId;
    this.#workerIds[slot] = workerId;
    const at = slot * FIELDS;
    numbers[at] = readyAtWallMs;
    numbers[at + 1] = breakdown?.fetchMs ?? Number.NaN;
    numbers[at + 2] = breakdown?.startMs ?? Number.NaN;
    numbers[at + 3] = breakdown?.readyMs ?? Number.NaN;
    numbers[at + 4] = breakdown?.totalMs ?? Number.NaN;
    numbers[at + 5] = breakdown?.controlPlaneMs ?? Number.NaN;
    this.#next = (slot + 1) % this.#capacity;
    if (this.#size < this.#capacity) this.#size++;
  }

  /** Oldest first. */
  entries(): ColdStartRecord[] {
    const out: ColdStartRecord[] = [];
    const numbers = this.#numbers;
    if (numbers === undefined) return out;
    const first = this.#size < this.#capacity ? 0 : this.#next;
    for (let i = 0; i < this.#size; i++) {
      const slot = (first + i) % this.#capacity;
      const at = slot * FIELDS;
      const totalMs = numbers[at + 4] as number;
      out.push({
        sandboxId: this.#sandboxIds[slot] as string,
        workerId: this.#workerIds[slot] as string,
        readyAtWallMs: numbers[at] as number,
        breakdown: Number.isNaN(totalMs) ? undefined : {
          fetchMs: numbers[at + 1] as number, startMs: numbers[at + 2] as number, readyMs: numbers[at + 3] as number,
          totalMs, controlPlaneMs: numbers[at + 5] as number,
        },
      });
    }
    return out;
  }
}

/**
 * A worker as the control plane holds it. A class, so that `isSchedulable` is one getter on the
 * prototype: as a getter in an object literal it was a closure per worker, which made every read
 * a call through a different accessor — placement reads it for every worker on every cold start,
 * and that read was most of placement's cost (4× slower per worker, measured).
 */
class WorkerRecord implements WorkerEntry {
  readonly id: string;
  url: string;
  capacity: { cpuMilli: number; memoryMiB: number };
  readonly allocated = { cpuMilli: 0, memoryMiB: 0 };
  runtimes: readonly string[];
  state: WorkerState;
  lastHeartbeatMs: number;
  readonly sandboxes = new SlotSet<Sandbox, 'workerSlot'>('workerSlot');
  readonly cachedArtifacts = new Set<string>();

  constructor(init: { id: string; url: string; capacity: { cpuMilli: number; memoryMiB: number }; runtimes: readonly string[]; state: WorkerState; nowMs: number }) {
    this.id = init.id;
    this.url = init.url;
    this.capacity = { ...init.capacity };
    this.runtimes = init.runtimes;
    this.state = init.state;
    this.lastHeartbeatMs = init.nowMs;
  }

  get isSchedulable(): boolean {
    return this.state === 'ready';
  }
}

export function newWorkerEntry(init: { id: string; url: string; capacity: { cpuMilli: number; memoryMiB: number }; runtimes: readonly string[]; state: WorkerState; nowMs: number }): WorkerEntry {
  return new WorkerRecord(init);
}

export function newFunctionEntry(record: FunctionRecord): FunctionEntry {
  return { record, sandboxes: new SlotSet<Sandbox, 'functionSlot'>('functionSlot'), desired: 0, isDeleting: false, hasNoCapacity: false, recentColdStarts: new ColdStartHistory() };
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
  const withAffinity = spec.affinityHeader === undefined ? routing : { ...routing, affinityHeader: spec.affinityHeader };
  return spec.async === undefined ? withAffinity : { ...withAffinity, async: spec.async };
}

export function toRoutingEndpoint(sandbox: Sandbox): RoutingEndpoint {
  return { sandboxId: sandbox.id, function: sandbox.fn.record.spec.name, address: sandbox.address ?? '', isDraining: sandbox.phase === 'draining' };
}
