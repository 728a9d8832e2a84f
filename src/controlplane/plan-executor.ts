import { randomBytes } from 'node:crypto';
import type { CreationBreakdown, SandboxEvent, SandboxFunction } from '../api/worker.ts';
import { Backoff } from '../core/backoff.ts';
import { wallTimeMs, type Clock } from '../core/clock.ts';
import { BatonError } from '../core/errors.ts';
import { TurnBatcher } from '../core/turn-batcher.ts';
import type { Logger } from '../observability/logger.ts';
import type { ScalePlan } from '../policy/plan/types.ts';
import type { ControlPlaneMetrics } from './metrics.ts';
import { Sandbox, toRoutingEndpoint, type FunctionEntry, type WorkerEntry } from './model.ts';
import type { RoutingFanout } from './routing-fanout.ts';
import type { SandboxTable } from './sandbox-table.ts';
import type { SandboxBatcher } from './worker-client.ts';

/** How the executor reaches workers (the worker membership's channels). */
export interface WorkerChannels {
  get(workerId: string): WorkerEntry | undefined;
  /** Where this worker's creations and deletions go; undefined while it has none (never registered). */
  batcher(workerId: string): SandboxBatcher | undefined;
}

/** How the executor waits for data planes to finish with draining sandboxes. */
export interface DrainTargets {
  readyChannels(): Iterable<{ drainWait(sandboxIds: readonly string[]): Promise<void> }>;
}

export interface PlanExecutorOptions {
  readonly sandboxes: SandboxTable;
  readonly workers: WorkerChannels;
  readonly routing: RoutingFanout;
  readonly drains: DrainTargets;
  readonly clock: Clock;
  readonly log: Logger;
  readonly metrics: ControlPlaneMetrics;
  readonly createTimeoutMs: number;
  /**
   * Told when a function's sandboxes changed in a way that may call for a new plan (one became
   * ready, failed, exited, was withdrawn or deleted, or a back-off ended). main.ts points it at
   * the reconciler.
   */
  readonly onChanged: (fn: FunctionEntry) => void;
}

/** After a failed creation: wait 100 ms, doubling to 5 s, before creating again (a broken function does not spin). */
const BACKOFF = { firstMs: 100, maxMs: 5_000 } as const;

/**
 * Applies plans, and is the one owner of the sandboxes: it creates them (ids, indexes, the worker
 * batchers, a create timeout each), cancels starting ones, drains ready ones (out of routing on
 * every data plane, wait for in-flight invocations, then delete), and applies what workers report
 * (ready, failed, exited) and what membership learns (a worker lost, a worker back with sandboxes
 * to adopt). Every change that may call for a new plan goes to `onChanged`.
 */
export class PlanExecutor {
  readonly #o: PlanExecutorOptions;
  readonly #idPrefix = randomBytes(3).toString('hex');
  #idCounter = 0;
  /** The scale-downs of one turn (a slice of the autoscaler's sweep decides hundreds) drain together. */
  readonly #toDrain: TurnBatcher<Sandbox>;
  /** Functions backing off because no worker had room: tried again at once when capacity is added. */
  readonly #waitingForRoom = new Set<FunctionEntry>();

  constructor(options: PlanExecutorOptions) {
    this.#o = options;
    this.#toDrain = new TurnBatcher(options.clock, (batch) => {
      this.#finishDrain(batch).catch((err: unknown) => this.#o.log.error({ err }, 'draining sandboxes failed'));
    });
  }

  get(sandboxId: string): Sandbox | undefined {
    return this.#o.sandboxes.get(sandboxId);
  }

  apply(fn: FunctionEntry, plan: ScalePlan): void {
    if (plan.reason === 'scale-up' || plan.reason === 'scale-up-partly-placed' || plan.reason === 'no-worker-has-room') {
      fn.sandboxes.hasNoCapacity = plan.hasNoCapacity;
    }
    if (plan.unplaced > 0) {
      this.#waitingForRoom.add(fn);
      this.#o.metrics.unplaced.inc({ function: plan.function }, plan.unplaced);
      if (plan.hasNoCapacity) this.#o.log.warn({ fn: plan.function, reason: plan.placementReason }, 'no worker has room for a sandbox of this function');
      else this.#o.log.debug({ fn: plan.function, unplaced: plan.unplaced, reason: plan.placementReason }, 'not every sandbox found a worker');
      this.#startBackoff(fn);
    }
    for (const id of plan.cancel) {
      const sandbox = this.#o.sandboxes.get(id);
      if (sandbox !== undefined && sandbox.fn === fn) this.#remove(sandbox, { isDeleteOnWorker: true });
    }
    if (plan.drain.length > 0) this.#drainInBackground(this.#own(fn, plan.drain));
    if (plan.create.length > 0) this.#create(fn, plan.create);
  }

  onEvent(worker: WorkerEntry, event: SandboxEvent): void {
    const sandbox = this.#o.sandboxes.get(event.sandboxId);
    if (sandbox === undefined || sandbox.worker !== worker) {
      // Not ours (any more): the worker should not keep running it.
      if (event.type === 'ready') this.#deleteOnWorker(worker, event.sandboxId);
      return;
    }
    switch (event.type) {
      case 'ready':
        this.#onReady(sandbox, event.address, event.breakdown);
        return;
      case 'failed':
        sandbox.fn.sandboxes.recentFailures.record(sandbox.worker.id, event, wallTimeMs());
        this.#onFailure(sandbox, event.code, `creation failed: ${event.message}`);
        return;
      case 'exited':
        sandbox.fn.sandboxes.recentFailures.record(sandbox.worker.id, event, wallTimeMs());
        this.#onFailure(sandbox, 'ERR_SANDBOX_FAILED', `exited (code ${event.exitCode}, signal ${event.signal}${event.reason === undefined ? '' : `, reason ${event.reason}`})`);
        return;
      default: {
        const never: never = event;
        throw new Error(`unknown event ${JSON.stringify(never)}`);
      }
    }
  }

  /** Called by a worker batcher when a create request did not reach the worker. */
  onCreateUnreachable(sandboxIds: readonly string[], err: unknown): void {
    for (const id of sandboxIds) {
      const sandbox = this.#o.sandboxes.get(id);
      if (sandbox !== undefined && sandbox.phase === 'starting') {
        const message = err instanceof Error ? err.message : String(err);
        this.#onFailure(sandbox, err instanceof BatonError ? err.code : 'ERR_UNAVAILABLE', `worker unreachable: ${message}`);
      }
    }
  }

  /** Adopts a ready sandbox a worker reports on registration (a control-plane restart, or a worker back from a partition). */
  adopt(worker: WorkerEntry, fn: FunctionEntry, info: { sandboxId: string; generation: number; address: string }): void {
    const now = this.#o.clock.now();
    const sandbox = this.#newSandbox(info.sandboxId, fn, worker, info.generation, now);
    sandbox.phase = 'ready';
    sandbox.address = info.address;
    sandbox.readyAtMs = now;
    sandbox.readyAtWallMs = wallTimeMs();
    this.#o.sandboxes.add(sandbox);
    if (fn.record.spec.artifact !== undefined) worker.cachedArtifacts.add(fn.record.spec.artifact);
    this.#o.routing.publish({ type: 'endpoint.put', endpoint: toRoutingEndpoint(sandbox) });
  }

  /** Forgets sandboxes a worker no longer runs (it crashed or cleaned up), without asking it to delete them. */
  forget(sandboxes: readonly Sandbox[]): void {
    this.#removeAndNotify(sandboxes, { isDeleteOnWorker: false });
  }

  /** Asks a worker to delete sandboxes the control plane does not (or no longer) know. */
  deleteUnknown(worker: WorkerEntry, sandboxIds: readonly string[]): void {
    for (const id of sandboxIds) this.#deleteOnWorker(worker, id);
  }

  /** Withdraws every sandbox of a worker that stopped heartbeating; new plans place them elsewhere. */
  withdrawWorker(worker: WorkerEntry): void {
    this.#removeAndNotify([...worker.sandboxes.items], { isDeleteOnWorker: false });
  }

  /**
   * Drains every sandbox of a worker that is leaving: starting ones are cancelled, ready ones
   * marked draining on every data plane, their functions planned again at once (the replacements
   * go to other workers), and once no data plane has anything in flight on them they are deleted.
   * Resolves when they are (each data plane's wait is bounded by its drain timeout).
   */
  async drainWorker(worker: WorkerEntry): Promise<void> {
    const items = [...worker.sandboxes.items];
    for (const sandbox of items) if (sandbox.phase === 'starting') this.#remove(sandbox, { isDeleteOnWorker: true });
    this.#markDraining(items.filter((s) => s.phase === 'ready'));
    for (const fn of new Set(items.map((s) => s.fn))) this.#o.onChanged(fn);
    // Those a scale-down was draining already are waited for too (deleting them again is a no-op).
    const draining = items.filter((s) => s.phase === 'draining');
    if (draining.length > 0) await this.#finishDrain(draining);
  }

  /**
   * A worker joined or came back: functions that found no room are planned again now instead of
   * at the end of their back-off (which may have grown to seconds while the cluster was full).
   */
  onCapacityAdded(): void {
    const waiting = [...this.#waitingForRoom];
    this.#waitingForRoom.clear();
    for (const fn of waiting) {
      this.#clearBackoff(fn);
      if (!fn.isDeleting) this.#o.onChanged(fn);
    }
  }

  /** Records that data planes used these sandboxes (eviction by least-recent use). */
  markUsed(fn: FunctionEntry, sandboxIds: readonly string[], nowMs: number): void {
    for (const id of sandboxIds) {
      const sandbox = this.#o.sandboxes.get(id);
      if (sandbox !== undefined && sandbox.fn === fn) sandbox.lastUsedMs = nowMs;
    }
  }

  /** Drains and deletes every sandbox of a function that is being deleted; resolves when all are gone. */
  async removeAll(fn: FunctionEntry): Promise<void> {
    this.#clearBackoff(fn);
    for (const sandbox of [...fn.sandboxes.values()]) {
      if (sandbox.phase === 'starting') this.#remove(sandbox, { isDeleteOnWorker: true });
    }
    const rest = fn.sandboxes.values().filter((s) => s.phase !== 'draining');
    if (rest.length === 0) return;
    this.#markDraining(rest);
    await this.#finishDrain(rest);
  }

  close(): void {
    this.#toDrain.clear();
    for (const sandbox of this.#o.sandboxes.values()) {
      sandbox.createTimer?.cancel();
      sandbox.createTimer = undefined;
      const { backoff } = sandbox.fn.sandboxes;
      backoff?.timer?.cancel();
    }
  }

  #own(fn: FunctionEntry, ids: readonly string[]): Sandbox[] {
    const out: Sandbox[] = [];
    for (const id of ids) {
      const sandbox = this.#o.sandboxes.get(id);
      if (sandbox !== undefined && sandbox.fn === fn && sandbox.phase === 'ready') out.push(sandbox);
    }
    return out;
  }

  #create(fn: FunctionEntry, workerIds: readonly string[]): void {
    const { spec } = fn.record;
    const now = this.#o.clock.now();
    const request = toSandboxFunction(fn);
    for (const workerId of workerIds) {
      const worker = this.#o.workers.get(workerId);
      const batcher = this.#o.workers.batcher(workerId);
      if (worker === undefined || batcher === undefined) continue;
      // join builds the id as one flat string; a template literal would leave a tree of
      // concatenations (three or four heap objects per id, kept as long as the sandbox).
      const id = [spec.name, '-', this.#idPrefix, (this.#idCounter++).toString(36)].join('');
      const sandbox = this.#newSandbox(id, fn, worker, fn.record.generation, now);
      this.#o.sandboxes.add(sandbox);
      sandbox.createTimer = this.#o.clock.setTimeout(() => {
        this.#onFailure(sandbox, 'ERR_SANDBOX_START_FAILED', `not ready within ${this.#o.createTimeoutMs} ms`);
      }, this.#o.createTimeoutMs);
      batcher.create(sandbox.id, request);
    }
  }

  #newSandbox(id: string, fn: FunctionEntry, worker: WorkerEntry, generation: number, now: number): Sandbox {
    // The spec's resources object is never mutated (an update replaces the whole record): share it.
    return new Sandbox({ id, fn, worker, generation, resources: fn.record.spec.resources, requestedAtMs: now, createdAtWallMs: wallTimeMs() });
  }

  /** Forgets a sandbox: releases its resources, withdraws its endpoint, optionally deletes it on its worker. */
  #remove(sandbox: Sandbox, options: { isDeleteOnWorker: boolean }): void {
    if (!this.#o.sandboxes.remove(sandbox)) return;
    if (sandbox.address !== undefined) this.#o.routing.publish({ type: 'endpoint.delete', sandboxId: sandbox.id });
    if (options.isDeleteOnWorker) this.#deleteOnWorker(sandbox.worker, sandbox.id);
  }

  /**
   * Asks the worker to delete a sandbox, and remembers it until the worker stops reporting it: a
   * registration that crosses the deletion still lists it, and it must not be adopted then.
   */
  #deleteOnWorker(worker: WorkerEntry, sandboxId: string): void {
    worker.deletingSandboxIds.add(sandboxId);
    this.#o.workers.batcher(worker.id)?.delete(sandboxId);
  }

  #removeAndNotify(sandboxes: readonly Sandbox[], options: { isDeleteOnWorker: boolean }): void {
    const affected = new Set<FunctionEntry>();
    for (const sandbox of sandboxes) {
      affected.add(sandbox.fn);
      this.#remove(sandbox, options);
    }
    for (const fn of affected) this.#o.onChanged(fn);
  }

  #onReady(sandbox: Sandbox, address: string, breakdown: CreationBreakdown): void {
    if (sandbox.phase !== 'starting') return;
    const now = this.#o.clock.now();
    sandbox.createTimer?.cancel();
    sandbox.createTimer = undefined;
    this.#clearBackoff(sandbox.fn);
    sandbox.phase = 'ready';
    sandbox.address = address;
    sandbox.readyAtMs = now;
    sandbox.lastUsedMs = now;
    sandbox.readyAtWallMs = wallTimeMs();
    sandbox.creation = breakdown;
    if (sandbox.fn.record.spec.artifact !== undefined) sandbox.worker.cachedArtifacts.add(sandbox.fn.record.spec.artifact);
    this.#o.routing.publish({ type: 'endpoint.put', endpoint: toRoutingEndpoint(sandbox) });
    this.#recordColdStart(sandbox);
    this.#o.onChanged(sandbox.fn);
  }

  #recordColdStart(sandbox: Sandbox): void {
    const { breakdown } = sandbox;
    this.#o.metrics.coldStart(sandbox.fn.name, breakdown);
    sandbox.fn.sandboxes.recentColdStarts.record(sandbox.id, sandbox.worker.id, sandbox.readyAtWallMs ?? wallTimeMs(), breakdown);
    // Guarded: the fields object would be built for every cold start even with debug off.
    if (this.#o.log.isLevelEnabled('debug')) this.#o.log.debug({ fn: sandbox.fn.name, sandboxId: sandbox.id, breakdown }, 'sandbox ready');
  }

  #onFailure(sandbox: Sandbox, code: string, message: string): void {
    if (sandbox.isRemoved) return;
    const { fn } = sandbox;
    const wasStarting = sandbox.phase === 'starting';
    this.#o.metrics.creationFailures.inc({ function: fn.name, code });
    this.#o.log.warn({ fn: fn.name, sandboxId: sandbox.id, worker: sandbox.worker.id, code }, `sandbox ${message}`);
    this.#remove(sandbox, { isDeleteOnWorker: true });
    if (wasStarting) this.#startBackoff(fn);
    this.#o.onChanged(fn);
  }

  #startBackoff(fn: FunctionEntry): void {
    const state = fn.sandboxes;
    if (state.backoff?.timer !== undefined) return;
    const backoff = state.backoff ?? { delays: new Backoff(BACKOFF), timer: undefined };
    state.backoff = backoff;
    backoff.timer = this.#o.clock.setTimeout(() => {
      backoff.timer = undefined;
      this.#o.onChanged(fn);
    }, backoff.delays.next());
  }

  #clearBackoff(fn: FunctionEntry): void {
    fn.sandboxes.backoff?.timer?.cancel();
    fn.sandboxes.backoff = undefined;
    this.#waitingForRoom.delete(fn);
  }

  /** No new invocation for these: draining here at once, and on every data plane with the next routing delta. */
  #markDraining(sandboxes: readonly Sandbox[]): void {
    for (const sandbox of sandboxes) {
      sandbox.phase = 'draining';
      if (sandbox.address !== undefined) this.#o.routing.publish({ type: 'endpoint.put', endpoint: toRoutingEndpoint(sandbox) });
    }
  }

  /**
   * Marked draining at once (so that no later plan counts or picks them again); the wait and the
   * deletion are done for all those of one turn together: one wait for the routing flush and one
   * drain wait per data plane, instead of an async chain each.
   */
  #drainInBackground(sandboxes: readonly Sandbox[]): void {
    if (sandboxes.length === 0) return;
    this.#markDraining(sandboxes);
    for (const sandbox of sandboxes) this.#toDrain.add(sandbox);
  }

  /** Waits until every data plane has them as draining and has nothing in flight on them, then deletes them. */
  async #finishDrain(sandboxes: readonly Sandbox[]): Promise<void> {
    await this.#o.routing.flushed();
    const ids = sandboxes.map((s) => s.id);
    const waits: Promise<void>[] = [];
    for (const channel of this.#o.drains.readyChannels()) waits.push(channel.drainWait(ids));
    await Promise.all(waits);
    this.#removeAndNotify(sandboxes, { isDeleteOnWorker: true });
  }
}

/** The part of a function's spec a worker needs, at its current generation. */
export function toSandboxFunction(fn: FunctionEntry): SandboxFunction {
  const { spec, generation } = fn.record;
  return {
    name: spec.name, generation, runtime: spec.runtime,
    ...(spec.artifact === undefined ? {} : { artifact: spec.artifact }),
    ...(spec.handler === undefined ? {} : { handler: spec.handler }),
    ...(spec.command === undefined ? {} : { command: spec.command }),
    ...(spec.lambdaRuntimeApi === true ? { lambdaRuntimeApi: true } : {}),
    // The sandbox gets secretEnv with env (the worker treats them alike: it never logs either).
    concurrency: spec.concurrency, timeoutMs: spec.timeoutMs, env: withSecrets(spec.env, spec.secretEnv), resources: spec.resources,
    ...(spec.runtime === 'container' ? { network: spec.network } : {}),
  };
}

function withSecrets(env: Readonly<Record<string, string>>, secretEnv: Readonly<Record<string, string>>): Record<string, string> {
  return Object.keys(secretEnv).length === 0 ? env : { ...env, ...secretEnv };
}
