import { randomBytes } from 'node:crypto';
import { recordSandboxFailure } from './failure-history.ts';
import type { CreationBreakdown, SandboxEvent, SandboxFunction } from '../api/worker.ts';
import { wallTimeMs, type Clock, type Timer } from '../core/clock.ts';
import { BatonError } from '../core/errors.ts';
import type { Logger } from '../observability/logger.ts';
import type { EvictionPolicy } from '../policy/eviction/types.ts';
import type { PlacementPolicy } from '../policy/placement/types.ts';
import type { ClusterState } from './cluster-state.ts';
import type { ControlPlaneMetrics } from './metrics.ts';
import { countSandboxes, Sandbox, toRoutingEndpoint, type FunctionEntry, type WorkerEntry } from './model.ts';

export interface SandboxManagerOptions {
  readonly state: ClusterState;
  readonly clock: Clock;
  readonly log: Logger;
  readonly placement: PlacementPolicy;
  readonly eviction: EvictionPolicy;
  readonly metrics: ControlPlaneMetrics;
  readonly createTimeoutMs: number;
}

const FIRST_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 5_000;

/**
 * Moves each function's sandboxes towards `fn.desired`: places and creates (batched per worker),
 * retires outdated generations as new ones become ready, and scales down by drain → delete. It
 * also applies what workers report (ready, failed, exited) and withdraws a lost worker's sandboxes.
 */
export class SandboxManager {
  readonly #o: SandboxManagerOptions;
  readonly #idPrefix = randomBytes(3).toString('hex');
  #idCounter = 0;
  readonly #backoff = new Map<FunctionEntry, { delayMs: number; timer: Timer | undefined }>();
  /** Sandboxes to drain at the next turn: the scale-downs of one autoscaler slice drain together. */
  #toDrain: Sandbox[] = [];

  constructor(options: SandboxManagerOptions) {
    this.#o = options;
  }

  reconcile(fn: FunctionEntry): void {
    if (fn.isDeleting || !this.#o.state.functions.has(fn.record.spec.name)) return;
    const counts = countSandboxes(fn);
    if (counts.outdatedReady > 0) this.#retireOutdated(fn, counts.outdatedReady - Math.max(0, fn.desired - counts.ready));
    if (fn.desired > counts.current) {
      const backoff = this.#backoff.get(fn);
      if (backoff?.timer === undefined) this.#create(fn, fn.desired - counts.current);
    } else if (fn.desired < counts.current) {
      this.#scaleDown(fn, counts.current - fn.desired);
    }
  }

  /** Drains and deletes every sandbox of a function (deletion); resolves when all are gone. */
  async removeAll(fn: FunctionEntry): Promise<void> {
    this.#clearBackoff(fn);
    const starting = [...fn.sandboxes.values()].filter((s) => s.phase === 'starting');
    for (const sandbox of starting) this.remove(sandbox, { isDeleteOnWorker: true });
    await this.drain([...fn.sandboxes.values()].filter((s) => s.phase !== 'draining'));
  }

  onEvent(worker: WorkerEntry, event: SandboxEvent): void {
    const sandbox = this.#o.state.sandboxes.get(event.sandboxId);
    if (sandbox === undefined || sandbox.worker !== worker) {
      // Not ours (any more): the worker should not keep running it.
      if (event.type === 'ready') this.#o.state.batchers.get(worker.id)?.delete(event.sandboxId);
      return;
    }
    switch (event.type) {
      case 'ready':
        this.#onReady(sandbox, event.address, event.breakdown);
        return;
      case 'failed':
        recordSandboxFailure(sandbox.fn, worker.id, event, wallTimeMs());
        this.#onFailure(sandbox, event.code, `creation failed: ${event.message}`);
        return;
      case 'exited':
        recordSandboxFailure(sandbox.fn, worker.id, event, wallTimeMs());
        this.#onFailure(sandbox, 'ERR_SANDBOX_FAILED', `exited (code ${event.exitCode}, signal ${event.signal}${event.reason === undefined ? '' : `, reason ${event.reason}`})`);
        return;
      default: {
        const never: never = event;
        throw new Error(`unknown event ${JSON.stringify(never)}`);
      }
    }
  }

  /** Adopts a sandbox a worker reports on registration (control-plane restart, or a worker back from a partition). */
  adopt(worker: WorkerEntry, fn: FunctionEntry, info: { sandboxId: string; generation: number; address: string }): void {
    const now = this.#o.clock.now();
    const sandbox = this.#newSandbox(info.sandboxId, fn, worker, info.generation, now);
    sandbox.phase = 'ready';
    sandbox.address = info.address;
    sandbox.readyAtMs = now;
    sandbox.readyAtWallMs = wallTimeMs();
    this.#index(sandbox);
    if (fn.record.spec.artifact !== undefined) worker.cachedArtifacts.add(fn.record.spec.artifact);
    this.#o.state.publish({ type: 'endpoint.put', endpoint: toRoutingEndpoint(sandbox) });
  }

  /** Withdraws every sandbox of a worker that stopped heartbeating; the autoscaler replaces them elsewhere. */
  withdrawWorker(worker: WorkerEntry): void {
    const affected = new Set<FunctionEntry>();
    for (const sandbox of [...worker.sandboxes.values()]) {
      affected.add(sandbox.fn);
      this.remove(sandbox, { isDeleteOnWorker: false });
    }
    for (const fn of affected) this.reconcile(fn);
  }

  /** Forgets a sandbox: releases its resources, withdraws its endpoint, optionally deletes it on its worker. */
  remove(sandbox: Sandbox, options: { isDeleteOnWorker: boolean }): void {
    if (sandbox.isRemoved) return;
    sandbox.isRemoved = true;
    sandbox.createTimer?.cancel();
    sandbox.createTimer = undefined;
    const { worker } = sandbox;
    worker.allocated.cpuMilli -= sandbox.resources.cpuMilli;
    worker.allocated.memoryMiB -= sandbox.resources.memoryMiB;
    worker.sandboxes.delete(sandbox);
    sandbox.fn.sandboxes.delete(sandbox);
    this.#o.state.sandboxes.delete(sandbox.id);
    if (sandbox.address !== undefined) this.#o.state.publish({ type: 'endpoint.delete', sandboxId: sandbox.id });
    if (options.isDeleteOnWorker) this.#o.state.batchers.get(worker.id)?.delete(sandbox.id);
  }

  /**
   * Scale-down without cutting a request: mark draining on every data plane, wait until each has
   * acknowledged, wait for in-flight invocations to finish there (bounded), then delete.
   */
  async drain(sandboxes: readonly Sandbox[]): Promise<void> {
    if (sandboxes.length === 0) return;
    this.#markDraining(sandboxes);
    await this.#finishDrain(sandboxes);
  }

  /** No new invocation for these: draining here at once, and on every data plane with the next routing delta. */
  #markDraining(sandboxes: readonly Sandbox[]): void {
    for (const sandbox of sandboxes) {
      sandbox.phase = 'draining';
      if (sandbox.address !== undefined) this.#o.state.publish({ type: 'endpoint.put', endpoint: toRoutingEndpoint(sandbox) });
    }
  }

  /** Waits until every data plane has them as draining and has nothing in flight on them, then deletes them. */
  async #finishDrain(sandboxes: readonly Sandbox[]): Promise<void> {
    await this.#o.state.flushed();
    const ids = sandboxes.map((s) => s.id);
    const waits: Promise<unknown>[] = [];
    for (const dataplane of this.#o.state.dataplanes.values()) {
      if (dataplane.state !== 'ready' || dataplane.drainWait === undefined) continue;
      waits.push(dataplane.drainWait(ids));
    }
    await Promise.all(waits);
    const affected = new Set<FunctionEntry>();
    for (const sandbox of sandboxes) {
      affected.add(sandbox.fn);
      this.remove(sandbox, { isDeleteOnWorker: true });
    }
    for (const fn of affected) this.reconcile(fn);
  }

  close(): void {
    for (const sandbox of this.#o.state.sandboxes.values()) {
      sandbox.createTimer?.cancel();
      sandbox.createTimer = undefined;
    }
    for (const fn of this.#backoff.keys()) this.#clearBackoff(fn);
  }

  #create(fn: FunctionEntry, count: number): void {
    const { spec } = fn.record;
    const decision = this.#o.placement.place(
      { function: spec.name, runtime: spec.runtime, artifact: spec.artifact, resources: spec.resources, count },
      this.#o.state.workerList,
    );
    fn.hasNoCapacity = decision.unplaced > 0 && decision.workerIds.length === 0 && countSandboxes(fn).current === 0;
    if (decision.unplaced > 0) {
      this.#o.metrics.unplaced.inc({ function: spec.name }, decision.unplaced);
      if (!fn.hasNoCapacity) this.#o.log.debug({ fn: spec.name, unplaced: decision.unplaced, reason: decision.reason }, 'not every sandbox found a worker');
      else this.#o.log.warn({ fn: spec.name, reason: decision.reason }, 'no worker has room for a sandbox of this function');
      this.#startBackoff(fn);
    }
    const now = this.#o.clock.now();
    const request = toSandboxFunction(fn);
    for (const workerId of decision.workerIds) {
      const worker = this.#o.state.workers.get(workerId);
      const batcher = this.#o.state.batchers.get(workerId);
      if (worker === undefined || batcher === undefined) continue;
      // join builds the id as one flat string; a template literal would leave a tree of
      // concatenations (three or four heap objects per id, kept as long as the sandbox).
      const id = [spec.name, '-', this.#idPrefix, (this.#idCounter++).toString(36)].join('');
      const sandbox = this.#newSandbox(id, fn, worker, fn.record.generation, now);
      this.#index(sandbox);
      sandbox.createTimer = this.#o.clock.setTimeout(() => {
        this.#onFailure(sandbox, 'ERR_SANDBOX_START_FAILED', `not ready within ${this.#o.createTimeoutMs} ms`);
      }, this.#o.createTimeoutMs);
      batcher.create(sandbox.id, request);
    }
  }

  /** Called by a worker batcher when a create request did not reach the worker. */
  onCreateUnreachable(sandboxIds: readonly string[], err: unknown): void {
    for (const id of sandboxIds) {
      const sandbox = this.#o.state.sandboxes.get(id);
      if (sandbox !== undefined && sandbox.phase === 'starting') {
        const message = err instanceof Error ? err.message : String(err);
        this.#onFailure(sandbox, err instanceof BatonError ? err.code : 'ERR_UNAVAILABLE', `worker unreachable: ${message}`);
      }
    }
  }

  #newSandbox(id: string, fn: FunctionEntry, worker: WorkerEntry, generation: number, now: number): Sandbox {
    // The spec's resources object is never mutated (an update replaces the whole record): share it.
    return new Sandbox({ id, fn, worker, generation, resources: fn.record.spec.resources, requestedAtMs: now, createdAtWallMs: wallTimeMs() });
  }

  /** Adds a sandbox to the indexes and its resources to its worker's allocation (undone by `remove`). */
  #index(sandbox: Sandbox): void {
    sandbox.worker.allocated.cpuMilli += sandbox.resources.cpuMilli;
    sandbox.worker.allocated.memoryMiB += sandbox.resources.memoryMiB;
    sandbox.worker.sandboxes.add(sandbox);
    sandbox.fn.sandboxes.add(sandbox);
    this.#o.state.sandboxes.set(sandbox.id, sandbox);
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
    sandbox.setCreationBreakdown(breakdown);
    if (sandbox.fn.record.spec.artifact !== undefined) sandbox.worker.cachedArtifacts.add(sandbox.fn.record.spec.artifact);
    this.#o.state.publish({ type: 'endpoint.put', endpoint: toRoutingEndpoint(sandbox) });
    this.#recordColdStart(sandbox);
    this.reconcile(sandbox.fn);
  }

  #recordColdStart(sandbox: Sandbox): void {
    const breakdown = sandbox.breakdown;
    this.#o.metrics.coldStart(sandbox.fn.record.spec.name, breakdown);
    sandbox.fn.recentColdStarts.record(sandbox.id, sandbox.worker.id, sandbox.readyAtWallMs ?? wallTimeMs(), breakdown);
    // Guarded: the fields object would be built for every cold start even with debug off.
    if (this.#o.log.isLevelEnabled('debug')) this.#o.log.debug({ fn: sandbox.fn.record.spec.name, sandboxId: sandbox.id, breakdown }, 'sandbox ready');
  }

  #onFailure(sandbox: Sandbox, code: string, message: string): void {
    if (sandbox.isRemoved) return;
    const { fn } = sandbox;
    const wasStarting = sandbox.phase === 'starting';
    this.#o.metrics.creationFailures.inc({ function: fn.record.spec.name, code });
    this.#o.log.warn({ fn: fn.record.spec.name, sandboxId: sandbox.id, worker: sandbox.worker.id, code }, `sandbox ${message}`);
    this.remove(sandbox, { isDeleteOnWorker: true });
    if (wasStarting) this.#startBackoff(fn);
    this.reconcile(fn);
  }

  /** After a failed creation, wait (100 ms doubling to 5 s) before creating again: a broken function does not spin. */
  #startBackoff(fn: FunctionEntry): void {
    const previous = this.#backoff.get(fn);
    if (previous?.timer !== undefined) return;
    const delayMs = previous === undefined ? FIRST_BACKOFF_MS : Math.min(MAX_BACKOFF_MS, previous.delayMs * 2);
    const entry = { delayMs, timer: undefined as Timer | undefined };
    entry.timer = this.#o.clock.setTimeout(() => {
      entry.timer = undefined;
      this.reconcile(fn);
    }, delayMs);
    this.#backoff.set(fn, entry);
  }

  #clearBackoff(fn: FunctionEntry): void {
    this.#backoff.get(fn)?.timer?.cancel();
    this.#backoff.delete(fn);
  }

  #scaleDown(fn: FunctionEntry, count: number): void {
    const generation = fn.record.generation;
    const starting: Sandbox[] = [];
    const ready: Sandbox[] = [];
    for (const s of fn.sandboxes.values()) {
      if (s.generation !== generation) continue;
      if (s.phase === 'starting') starting.push(s);
      else if (s.phase === 'ready') ready.push(s);
    }
    // Sandboxes still starting serve nothing yet: cancel those first, newest first.
    const cancelled = starting.slice(-count);
    for (const sandbox of cancelled) this.remove(sandbox, { isDeleteOnWorker: true });
    const rest = count - cancelled.length;
    if (rest <= 0 || ready.length === 0) return;
    // All of them go (scale to zero, the common case): there is nothing for the policy to choose.
    if (rest >= ready.length) {
      this.#drainInBackground(ready);
      return;
    }
    const candidates = ready.map((s) => ({ sandboxId: s.id, workerId: s.worker.id, readyAtMs: s.readyAtMs ?? s.requestedAtMs, lastUsedMs: s.lastUsedMs }));
    const victims = this.#o.eviction.pickVictims(candidates, rest);
    const { sandboxes } = this.#o.state;
    this.#drainInBackground(victims.map((id) => sandboxes.get(id)).filter((s): s is Sandbox => s !== undefined && s.fn === fn));
  }

  /**
   * Drains sandboxes without waiting for it. They are marked draining at once (so that no other
   * decision counts or picks them again); the rest is done for all those of one event-loop turn
   * together (a slice of the autoscaler's sweep decides hundreds of functions): one wait for the
   * routing flush and one for the drain, instead of an async chain each. (The drain-wait calls
   * themselves were already sent together per turn, by each data plane's DrainBatcher.)
   */
  #drainInBackground(sandboxes: readonly Sandbox[]): void {
    if (sandboxes.length === 0) return;
    this.#markDraining(sandboxes);
    const isScheduled = this.#toDrain.length > 0;
    for (const sandbox of sandboxes) this.#toDrain.push(sandbox);
    if (isScheduled) return;
    setImmediate(() => {
      const batch = this.#toDrain;
      this.#toDrain = [];
      this.#finishDrain(batch).catch((err: unknown) => this.#o.log.error({ err }, 'draining sandboxes failed'));
    });
  }

  #retireOutdated(fn: FunctionEntry, count: number): void {
    if (count <= 0) return;
    const outdated = [...fn.sandboxes.values()]
      .filter((s) => s.phase === 'ready' && s.generation !== fn.record.generation)
      .sort((a, b) => (a.readyAtMs ?? 0) - (b.readyAtMs ?? 0))
      .slice(0, count);
    this.#drainInBackground(outdated);
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
    concurrency: spec.concurrency, timeoutMs: spec.timeoutMs, env: spec.env, resources: spec.resources,
    ...(spec.runtime === 'container' ? { network: spec.network } : {}),
  };
}
