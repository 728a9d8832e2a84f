import type { RegisterWorkerRequest, RegisterWorkerResponse } from '../api/worker.ts';
import type { Clock, Timer } from '../core/clock.ts';
import { BatonError } from '../core/errors.ts';
import type { Logger } from '../observability/logger.ts';
import type { Store } from '../store/store.ts';
import { newWorkerEntry, type FunctionEntry, type Sandbox, type WorkerEntry } from './model.ts';
import type { SandboxBatcher } from './worker-client.ts';

/** What membership asks of the plan executor, the owner of the sandboxes. */
export interface WorkerSandboxes {
  get(sandboxId: string): Sandbox | undefined;
  adopt(worker: WorkerEntry, fn: FunctionEntry, info: { sandboxId: string; generation: number; address: string }): void;
  forget(sandboxes: readonly Sandbox[]): void;
  deleteUnknown(worker: WorkerEntry, sandboxIds: readonly string[]): void;
  withdrawWorker(worker: WorkerEntry): void;
  /** Drains the worker's sandboxes on every data plane (their functions planned again at once), then deletes them on it. */
  drainWorker(worker: WorkerEntry): Promise<void>;
  /** Capacity was added (a worker registered): plan again what found no room. */
  onCapacityAdded(): void;
}

export interface WorkerMembershipOptions {
  readonly store: Store;
  readonly clock: Clock;
  readonly log: Logger;
  readonly heartbeatIntervalMs: number;
  readonly heartbeatMissLimit: number;
  readonly functions: { get(name: string): FunctionEntry | undefined };
  readonly sandboxes: WorkerSandboxes;
  /** A function whose sandboxes were adopted after a restart: the autoscaler holds its size until its windows refill. */
  readonly onRecovered: (fn: FunctionEntry) => void;
  /** How many more sandboxes of its current generation the function wants now (desired − starting − ready, ≥ 0). */
  readonly shortfall: (fn: FunctionEntry) => number;
  /**
   * Opens the batcher for a worker's creations and deletions (main.ts: an HTTP or RPC client,
   * shared per process when several workers register one `processUrl`). `key` changes when the
   * worker's addresses do.
   */
  readonly connect: (registration: RegisterWorkerRequest) => SandboxBatcher;
  /** The leader epoch of this control plane's term, told to each worker that registers (it refuses lower ones from then on). */
  readonly leaderEpoch?: number;
}

interface StoredWorker { id: string; url: string; capacity: { cpuMilli: number; memoryMiB: number }; runtimes: string[] }

/**
 * The workers: registration (persisted), heartbeats, failure detection, and the reconciliation of
 * what a registering worker runs against what the control plane believes. The one owner of the
 * worker table and of each worker's channel (its batcher).
 *
 * A worker that misses `heartbeatMissLimit` heartbeats is unschedulable and its sandboxes are
 * withdrawn (new plans place them elsewhere); one that registers again reports what it runs, and
 * whatever the control plane already replaced is deleted on it.
 *
 * Failure detection runs on one timer armed for the earliest deadline (last heartbeat + limit) of
 * a ready worker, so a silent worker is declared dead just past its own deadline rather than at
 * the next turn of a fixed-period check (which added up to one interval). Heartbeats only move
 * deadlines later and arm nothing; a sweep over the workers runs about once per limit − interval
 * while all are healthy.
 */
export class WorkerMembership {
  readonly #o: WorkerMembershipOptions;
  readonly #workers = new Map<string, WorkerEntry>();
  /** The workers as an array for placement, rebuilt only when a worker joins. */
  #list: WorkerEntry[] = [];
  readonly #batchers = new Map<string, { key: string; batcher: SandboxBatcher }>();
  #monitor: Timer | undefined;
  #isStarted = false;

  constructor(options: WorkerMembershipOptions) {
    this.#o = options;
  }

  get size(): number {
    return this.#workers.size;
  }

  get(workerId: string): WorkerEntry | undefined {
    return this.#workers.get(workerId);
  }

  values(): IterableIterator<WorkerEntry> {
    return this.#workers.values();
  }

  list(): readonly WorkerEntry[] {
    return this.#list;
  }

  batcher(workerId: string): SandboxBatcher | undefined {
    return this.#batchers.get(workerId)?.batcher;
  }

  /** Loads persisted workers as `unregistered`: each must register again, reporting what it runs. */
  async load(): Promise<void> {
    const now = this.#o.clock.now();
    for (const w of await this.#o.store.list<StoredWorker>('workers')) {
      this.#add(newWorkerEntry({ ...w, state: 'unregistered', nowMs: now }));
    }
  }

  start(): void {
    this.#isStarted = true;
    this.checkHeartbeats();
  }

  close(): void {
    this.#isStarted = false;
    this.#monitor?.cancel();
    this.#monitor = undefined;
    for (const { batcher } of this.#batchers.values()) batcher.client.close();
  }

  async register(req: RegisterWorkerRequest): Promise<RegisterWorkerResponse> {
    const { store, clock } = this.#o;
    const now = clock.now();
    let worker = this.#workers.get(req.workerId);
    const isChanged = worker === undefined || worker.url !== req.url
      || worker.capacity.cpuMilli !== req.capacity.cpuMilli || worker.capacity.memoryMiB !== req.capacity.memoryMiB
      || worker.runtimes.join() !== req.runtimes.join();
    if (isChanged) {
      await store.put('workers', req.workerId, { id: req.workerId, url: req.url, capacity: req.capacity, runtimes: req.runtimes } satisfies StoredWorker);
    }
    if (worker === undefined) {
      worker = newWorkerEntry({ id: req.workerId, url: req.url, capacity: req.capacity, runtimes: req.runtimes, state: 'ready', nowMs: now });
      this.#add(worker);
    }
    const key = `${req.url} ${req.processUrl ?? ''} ${req.commandToken ?? ''}`;
    const current = this.#batchers.get(worker.id);
    if (current?.key !== key) {
      current?.batcher.client.close();
      this.#batchers.set(worker.id, { key, batcher: this.#o.connect(req) });
    }
    worker.url = req.url;
    worker.capacity = { ...req.capacity };
    worker.runtimes = req.runtimes;
    worker.state = 'ready';
    worker.lastHeartbeatMs = now;
    // Every other ready worker's deadline is no later than this one's: an armed monitor comes first.
    if (this.#isStarted && this.#monitor === undefined) this.#arm(now + this.#limitMs(), now);
    this.#reconcile(worker, req.sandboxes);
    this.#o.sandboxes.onCapacityAdded();
    this.#o.log.info({ worker: worker.id, url: worker.url, sandboxes: req.sandboxes.length }, 'worker registered');
    return { heartbeatIntervalMs: this.#o.heartbeatIntervalMs, ...(this.#o.leaderEpoch === undefined ? {} : { leaderEpoch: this.#o.leaderEpoch }) };
  }

  heartbeat(workerId: string): void {
    const worker = this.#workers.get(workerId);
    if (worker === undefined || worker.state !== 'ready') {
      throw new BatonError('ERR_WORKER_NOT_FOUND', `worker '${workerId}' must register`);
    }
    worker.lastHeartbeatMs = this.#o.clock.now();
  }

  /**
   * A worker shutting down: unschedulable at once (no new sandbox goes there, its heartbeats are
   * refused until it registers again), its sandboxes drained on every data plane while their
   * functions get new ones elsewhere, then deleted on it. Resolves when that is done, so that the
   * worker stops only what no invocation uses any more.
   *
   * @throws BatonError ERR_WORKER_NOT_FOUND when it never registered in this term
   */
  async leave(workerId: string): Promise<void> {
    const worker = this.require(workerId);
    if (worker.state === 'ready') {
      worker.state = 'unschedulable';
      this.#o.log.info({ worker: worker.id, sandboxes: worker.sandboxes.size }, 'worker leaving; draining its sandboxes');
    }
    await this.#o.sandboxes.drainWorker(worker);
  }

  /** The worker, unless it has never registered since this control plane started (ERR_WORKER_NOT_FOUND). */
  require(workerId: string): WorkerEntry {
    const worker = this.#workers.get(workerId);
    if (worker === undefined || worker.state === 'unregistered') throw new BatonError('ERR_WORKER_NOT_FOUND', `worker '${workerId}' must register`);
    return worker;
  }

  /** The worker if registered, else undefined (event batches of many workers answer unknown ones in a list). */
  find(workerId: string): WorkerEntry | undefined {
    const worker = this.#workers.get(workerId);
    return worker === undefined || worker.state === 'unregistered' ? undefined : worker;
  }

  /**
   * Withdraws the sandboxes of workers silent for longer than the miss limit, then arms the
   * monitor for the next deadline (run by the monitor; tests call it).
   */
  checkHeartbeats(): void {
    const now = this.#o.clock.now();
    const limitMs = this.#limitMs();
    let next = Infinity;
    for (const worker of this.#workers.values()) {
      if (worker.state !== 'ready') continue;
      const deadline = worker.lastHeartbeatMs + limitMs;
      if (now <= deadline) {
        next = Math.min(next, deadline);
        continue;
      }
      worker.state = 'unschedulable';
      this.#o.log.warn({ worker: worker.id, silentMs: Math.round(now - worker.lastHeartbeatMs) }, 'worker missed heartbeats; withdrawing its sandboxes');
      if (worker.sandboxes.size > 0) worker.withdrawnSandboxIds = new Set(worker.sandboxes.items.map((s) => s.id));
      this.#o.sandboxes.withdrawWorker(worker);
    }
    if (this.#isStarted) this.#arm(next, now);
  }

  #limitMs(): number {
    return this.#o.heartbeatIntervalMs * this.#o.heartbeatMissLimit;
  }

  /**
   * Arms the monitor to run just past `deadline` (a worker is dead once silent for more than the
   * limit); none for Infinity. The sweep runs in the next turn, after the I/O already waiting: when
   * the event loop was held up past a deadline, a heartbeat that arrived meanwhile is read first,
   * and its worker is not declared dead.
   */
  #arm(deadline: number, now: number): void {
    this.#monitor?.cancel();
    this.#monitor = deadline === Infinity ? undefined : this.#o.clock.setTimeout(() => {
      this.#monitor = undefined;
      this.#o.clock.defer(() => {
        if (this.#isStarted) this.checkHeartbeats();
      });
    }, deadline - now + 1);
  }

  #add(worker: WorkerEntry): void {
    this.#workers.set(worker.id, worker);
    this.#list = [...this.#workers.values()];
  }

  /**
   * Brings the control plane's view of a worker in line with what it reports: sandboxes the
   * control plane had there but the worker does not run are gone (crashed or cleaned up); ready
   * sandboxes it runs that the control plane does not know are adopted when their function still
   * exists at that generation (after a control-plane restart), and deleted otherwise. Those
   * withdrawn when the worker missed its heartbeats are taken back as far as their function is
   * still short of its desired scale, and deleted when they were replaced elsewhere meanwhile.
   */
  #reconcile(worker: WorkerEntry, reported: RegisterWorkerRequest['sandboxes']): void {
    const { functions, sandboxes } = this.#o;
    const reportedIds = new Set(reported.map((s) => s.sandboxId));
    sandboxes.forget(worker.sandboxes.items.filter((s) => !reportedIds.has(s.id)));
    const toDelete: string[] = [];
    const withdrawn = worker.withdrawnSandboxIds;
    worker.withdrawnSandboxIds = undefined;
    // Deletions asked before are done once the worker stops reporting them.
    for (const id of [...worker.deletingSandboxIds]) if (!reportedIds.has(id)) worker.deletingSandboxIds.delete(id);
    for (const info of reported) {
      if (sandboxes.get(info.sandboxId) !== undefined) continue;
      const fn = functions.get(info.function);
      if (fn === undefined || fn.isDeleting || info.state !== 'ready' || info.address === undefined || info.generation !== fn.record.generation
        || worker.deletingSandboxIds.has(info.sandboxId) || (withdrawn?.has(info.sandboxId) === true && this.#o.shortfall(fn) === 0)) {
        toDelete.push(info.sandboxId);
        continue;
      }
      sandboxes.adopt(worker, fn, { sandboxId: info.sandboxId, generation: info.generation, address: info.address });
      this.#o.onRecovered(fn);
    }
    sandboxes.deleteUnknown(worker, toDelete);
  }
}
