import { FailureHistory } from './failure-history.ts';
import type { Backoff } from '../core/backoff.ts';
import { FlatRecords } from '../core/flat-records.ts';
import type { Timer } from '../core/clock.ts';
import { SlotSet } from '../core/slot-set.ts';
import type { SandboxPhase, SandboxView } from '../policy/plan/types.ts';
import type { FunctionRecord } from '../api/function-spec.ts';
import type { CreationBreakdown } from '../api/worker.ts';
import type { RoutingEndpoint, RoutingFunction } from '../api/dataplane.ts';
import type { WorkerSnapshot } from '../policy/placement/types.ts';

/**
 * The control plane's in-memory model: functions, sandboxes and workers. Nothing of a sandbox is
 * persisted: sandboxes are reconstructed from what workers report when they (re)register.
 */

export type { SandboxPhase } from '../policy/plan/types.ts';

/** The cold-start breakdown shown for a sandbox: the worker's phases and the control plane's decision → ready. */
export type ColdStartBreakdown = CreationBreakdown & { readonly controlPlaneMs: number };

/**
 * One sandbox. There are tens of thousands of these: a class, so that every instance shares one
 * hidden class (bench/README.md, "What the control plane keeps per sandbox"). Created, changed and
 * removed only by the sandbox table's owner, the plan executor; everything else reads it.
 */
export class Sandbox implements SandboxView {
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
  /** Fails the start if the worker has not reported it ready in time; cleared when it is. */
  createTimer: Timer | undefined = undefined;
  /** The worker's creation phases, as it reported them when the sandbox became ready (none for an adopted sandbox). */
  creation: CreationBreakdown | undefined = undefined;
  /** Its places in its function's and its worker's sandbox sets (SlotSet; -1: not in it). */
  functionSlot = -1;
  workerSlot = -1;

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

  get workerId(): string {
    return this.worker.id;
  }

  /** The cold-start breakdown, once the worker has reported one. */
  get breakdown(): ColdStartBreakdown | undefined {
    if (this.creation === undefined || this.readyAtMs === undefined) return undefined;
    return { ...this.creation, controlPlaneMs: this.readyAtMs - this.requestedAtMs };
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
  /** Its sandboxes (looked up by id in the sandbox table, never here). */
  readonly sandboxes: SlotSet<Sandbox, 'workerSlot'>;
  readonly cachedArtifacts: Set<string>;
  /**
   * The sandboxes withdrawn when it missed its heartbeats (replaced elsewhere since): if it comes
   * back still running them, it is told to delete them rather than have them adopted as duplicates.
   */
  withdrawnSandboxIds: ReadonlySet<string> | undefined;
  /** Sandboxes it was asked to delete and still reported at its last registration (never adopted). */
  readonly deletingSandboxIds: Set<string>;
}

/**
 * A registered function. Its record and deletion mark belong to the function registry; its
 * sandboxes (`sandboxes`) to the sandbox table, the one place that adds and removes them.
 */
export class FunctionEntry {
  #record: FunctionRecord;
  #isDeleting = false;
  readonly sandboxes: FunctionSandboxes = new FunctionSandboxes();
  /**
   * The reconciler's: while a quota holds the function back, the sandboxes it has (and is creating)
   * — the data planes get it as the function's maxScale, so its overload is refused at once there
   * as at a real maxScale (0: it has none, and its waiting invocations are refused as at no
   * capacity). Undefined while no quota holds it.
   */
  quotaScaleCap: number | undefined = undefined;

  constructor(record: FunctionRecord) {
    this.#record = record;
  }

  get record(): FunctionRecord {
    return this.#record;
  }

  get name(): string {
    return this.#record.spec.name;
  }

  get isDeleting(): boolean {
    return this.#isDeleting;
  }

  /** The registry's: a new generation was registered (the record is durable). */
  replaceRecord(record: FunctionRecord): void {
    this.#record = record;
  }

  /** The registry's: the function is being deleted; nothing new is planned for it. */
  markDeleting(): void {
    this.#isDeleting = true;
  }
}

/**
 * A function's sandboxes and what the plan executor keeps about them: the set itself (looked up by
 * id in the sandbox table, never here), whether placement last found no room, the back-off after
 * failed creations, and the recent cold starts and failures shown by describe.
 */
export class FunctionSandboxes {
  readonly items = new SlotSet<Sandbox, 'functionSlot'>('functionSlot');
  /** True while the last placement found no worker with room and the function has no sandbox. */
  hasNoCapacity = false;
  /** Set after a failed creation, while it waits before creating again (see PlanExecutor). */
  backoff: { readonly delays: Backoff; timer: Timer | undefined } | undefined = undefined;
  readonly recentColdStarts = new ColdStartHistory();
  readonly recentFailures = new FailureHistory();

  get size(): number {
    return this.items.size;
  }

  values(): readonly Sandbox[] {
    return this.items.items;
  }

  get isBackingOff(): boolean {
    return this.backoff?.timer !== undefined;
  }
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

const COLD_START_FIELDS = ['readyAtWallMs', 'fetchMs', 'startMs', 'readyMs', 'totalMs', 'controlPlaneMs'] as const;

/**
 * A function's last `capacity` cold starts, as a ring: ids in two arrays, numbers in flat records
 * (`core/flat-records.ts`: these are kept long after their sandboxes are gone, an object each was
 * among the control plane's longest-lived objects).
 */
export class ColdStartHistory {
  readonly #capacity: number;
  readonly #sandboxIds: string[] = [];
  readonly #workerIds: string[] = [];
  #numbers: FlatRecords<(typeof COLD_START_FIELDS)[number]> | undefined;
  /** Slot of the next record; once the ring is full, also the oldest. */
  #next = 0;

  constructor(capacity = RECENT_COLD_STARTS) {
    this.#capacity = capacity;
  }

  get size(): number {
    return this.#numbers?.size ?? 0;
  }

  record(sandboxId: string, workerId: string, readyAtWallMs: number, breakdown: ColdStartBreakdown | undefined): void {
    const numbers = (this.#numbers ??= new FlatRecords(COLD_START_FIELDS));
    const slot = numbers.size < this.#capacity ? numbers.append() : this.#next;
    this.#sandboxIds[slot] = sandboxId;
    this.#workerIds[slot] = workerId;
    numbers.set(slot, 'readyAtWallMs', readyAtWallMs);
    numbers.set(slot, 'fetchMs', breakdown?.fetchMs ?? Number.NaN);
    numbers.set(slot, 'startMs', breakdown?.startMs ?? Number.NaN);
    numbers.set(slot, 'readyMs', breakdown?.readyMs ?? Number.NaN);
    numbers.set(slot, 'totalMs', breakdown?.totalMs ?? Number.NaN);
    numbers.set(slot, 'controlPlaneMs', breakdown?.controlPlaneMs ?? Number.NaN);
    this.#next = (slot + 1) % this.#capacity;
  }

  /** Oldest first. */
  entries(): ColdStartRecord[] {
    const numbers = this.#numbers;
    if (numbers === undefined) return [];
    const out: ColdStartRecord[] = [];
    const size = numbers.size;
    const first = size < this.#capacity ? 0 : this.#next;
    for (let i = 0; i < size; i++) {
      const slot = (first + i) % this.#capacity;
      const totalMs = numbers.get(slot, 'totalMs');
      out.push({
        sandboxId: this.#sandboxIds[slot] as string,
        workerId: this.#workerIds[slot] as string,
        readyAtWallMs: numbers.get(slot, 'readyAtWallMs'),
        breakdown: Number.isNaN(totalMs) ? undefined : {
          fetchMs: numbers.get(slot, 'fetchMs'), startMs: numbers.get(slot, 'startMs'), readyMs: numbers.get(slot, 'readyMs'),
          totalMs, controlPlaneMs: numbers.get(slot, 'controlPlaneMs'),
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
  withdrawnSandboxIds: ReadonlySet<string> | undefined = undefined;
  readonly deletingSandboxIds = new Set<string>();

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
  return new FunctionEntry(record);
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
  const maxScale = fn.quotaScaleCap === undefined || fn.quotaScaleCap === 0 ? spec.scaling.maxScale : Math.min(spec.scaling.maxScale, fn.quotaScaleCap);
  const routing: RoutingFunction = { name: spec.name, generation: fn.record.generation, concurrency: spec.concurrency, timeoutMs: spec.timeoutMs, maxScale };
  const limited = {
    ...routing,
    ...(spec.maxConcurrency === undefined ? {} : { maxConcurrency: spec.maxConcurrency }),
    ...(spec.maxBodyBytes === undefined ? {} : { maxBodyBytes: spec.maxBodyBytes }),
  };
  const withAuth = spec.auth === 'token' ? { ...limited, auth: 'token' as const } : limited;
  const withAffinity = spec.affinityHeader === undefined ? withAuth : { ...withAuth, affinityHeader: spec.affinityHeader };
  const withProtocol = spec.protocol === 'http1' ? withAffinity : { ...withAffinity, protocol: spec.protocol };
  return spec.async === undefined ? withProtocol : { ...withProtocol, async: spec.async };
}

export function toRoutingEndpoint(sandbox: Sandbox): RoutingEndpoint {
  return { sandboxId: sandbox.id, function: sandbox.fn.record.spec.name, address: sandbox.address ?? '', isDraining: sandbox.phase === 'draining' };
}
