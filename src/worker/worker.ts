import type { RuntimeName } from '../api/function-spec.ts';
import type {
  CreateSandboxesRequest, DeleteSandboxesResponse, SandboxFunction, SandboxInfo, SandboxLogsResponse, SandboxState,
} from '../api/worker.ts';
import { Cancellation } from '../core/cancellation.ts';
import { wallTimeMs, type Clock } from '../core/clock.ts';
import { BatonError, toBatonError } from '../core/errors.ts';
import { Semaphore } from '../core/semaphore.ts';
import type { Logger } from '../observability/logger.ts';
import type { CachedArtifact } from './artifact-cache.ts';
import type { EventSink } from './event-sink.ts';
import { noopWorkerMetrics, type WorkerMetrics } from './metrics.ts';
import type { SandboxExit, SandboxRuntime } from './runtime.ts';

export interface WorkerDeps {
  readonly runtimes: readonly SandboxRuntime[];
  readonly artifacts: { ensure(digest: string, signal?: AbortSignal): Promise<CachedArtifact> };
  readonly events: EventSink;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics?: WorkerMetrics;
  /** Sandboxes in their fetch/spawn/readiness phase at once; the rest wait in order. */
  readonly maxConcurrentStarts: number;
}

interface SandboxEntry {
  readonly sandboxId: string;
  readonly fn: SandboxFunction;
  readonly runtime: SandboxRuntime;
  /** Cancels the start (a delete while starting, or closing). */
  readonly abort: Cancellation;
  /** Wall-clock ms; formatted when listed. */
  readonly startedAtMs: number;
  state: SandboxState;
  address?: string;
  pid?: number;
}

type Lifecycle = 'running' | 'closing' | 'closed';

/**
 * The worker's core, without sockets: the sandbox table and its transitions.
 *
 *   create → starting ──(artifact, spawn, ready)──→ ready ──(delete)──→ stopping → gone
 *               │                                     └──(dies on its own)──→ gone + `exited`
 *               ├──(fails)──→ gone + `failed`
 *               └──(delete)──→ stopping (cancelled, no event) → gone
 *
 * Creation is asynchronous: `create` accepts a batch at once and every outcome leaves as an
 * event through the EventSink, with the per-phase breakdown on `ready`:
 *   fetchMs  artifact fetch + verify + unpack (0 when cached),
 *   startMs  spawn requested → process alive,
 *   readyMs  process alive → ready signal,
 *   totalMs  accepted → ready (includes waiting for a start slot).
 */
export class Worker {
  readonly #deps: WorkerDeps;
  readonly #runtimes: ReadonlyMap<RuntimeName, SandboxRuntime>;
  readonly #table = new Map<string, SandboxEntry>();
  readonly #starts: Semaphore;
  readonly #metrics: WorkerMetrics;
  #lifecycle: Lifecycle = 'running';

  constructor(deps: WorkerDeps) {
    this.#deps = deps;
    this.#runtimes = new Map(deps.runtimes.map((runtime) => [runtime.name, runtime]));
    this.#starts = new Semaphore(deps.maxConcurrentStarts);
    this.#metrics = deps.metrics ?? noopWorkerMetrics;
    for (const runtime of deps.runtimes) runtime.onExit((exit) => this.#onExit(exit));
  }

  get runtimeNames(): RuntimeName[] {
    return [...this.#runtimes.keys()];
  }

  /**
   * Accepts a batch; returns how many were new (an id already on this worker is ignored).
   * @throws BatonError ERR_SHUTTING_DOWN once closing
   */
  create(sandboxes: CreateSandboxesRequest['sandboxes']): number {
    this.#assertRunning();
    let accepted = 0;
    for (const { sandboxId, function: fn } of sandboxes) {
      if (this.#table.has(sandboxId)) continue;
      accepted += 1;
      const runtime = this.#runtimes.get(fn.runtime);
      if (runtime === undefined) {
        this.#fail(sandboxId, fn, new BatonError('ERR_RUNTIME_UNAVAILABLE', `this worker has no ${fn.runtime} runtime`));
        continue;
      }
      const entry: SandboxEntry = {
        sandboxId, fn, runtime, abort: new Cancellation(), startedAtMs: wallTimeMs(), state: 'starting',
      };
      this.#table.set(sandboxId, entry);
      void this.#start(entry);
    }
    return accepted;
  }

  async #start(entry: SandboxEntry): Promise<void> {
    const { clock, events, logger } = this.#deps;
    const { sandboxId, fn, abort } = entry;
    const acceptedAt = clock.now();
    let release: (() => void) | undefined;
    try {
      release = await this.#starts.acquire(abort);
      const artifact = await this.#ensureArtifact(entry);
      const started = await entry.runtime.create(sandboxId, fn, artifact.dir, abort);
      if (abort.aborted) {
        // Deleted while its last step was finishing.
        await entry.runtime.delete(sandboxId);
        throw abort.reason;
      }
      const breakdown = { fetchMs: artifact.fetchMs, startMs: started.startMs, readyMs: started.readyMs, totalMs: clock.now() - acceptedAt };
      entry.state = 'ready';
      entry.address = started.address;
      if (started.pid !== undefined) entry.pid = started.pid;
      events.push({ type: 'ready', sandboxId, address: started.address, breakdown });
      this.#metrics.creation(fn.name, 'ready');
      this.#metrics.coldStart('fetch', breakdown.fetchMs);
      this.#metrics.coldStart('start', breakdown.startMs);
      this.#metrics.coldStart('ready', breakdown.readyMs);
      this.#metrics.coldStart('total', breakdown.totalMs);
      // Guarded: the fields object would be built for every cold start even with debug off.
      if (logger.isLevelEnabled('debug')) logger.debug({ sandboxId, fn: fn.name, ...breakdown }, 'sandbox ready');
    } catch (err) {
      this.#table.delete(sandboxId);
      if (abort.aborted) {
        this.#metrics.creation(fn.name, 'cancelled');
      } else {
        this.#fail(sandboxId, fn, toBatonError(err));
      }
    } finally {
      release?.();
    }
  }

  /** The unpacked artifact, or nothing to fetch for a runtime that runs no code. */
  async #ensureArtifact(entry: SandboxEntry): Promise<{ dir: string; fetchMs: number }> {
    if (!entry.runtime.needsArtifact) return { dir: '', fetchMs: 0 };
    if (entry.fn.artifact === undefined) {
      throw new BatonError('ERR_SANDBOX_START_FAILED', `function ${entry.fn.name} has no artifact and runtime ${entry.runtime.name} needs one`);
    }
    return this.#deps.artifacts.ensure(entry.fn.artifact, entry.abort.toAbortSignal());
  }

  #fail(sandboxId: string, fn: SandboxFunction, err: BatonError): void {
    this.#deps.events.push({ type: 'failed', sandboxId, code: err.code, message: err.message });
    this.#metrics.creation(fn.name, 'failed');
    this.#deps.logger.warn({ sandboxId, fn: fn.name, code: err.code, err: err.message }, 'sandbox creation failed');
  }

  #onExit(exit: SandboxExit): void {
    const entry = this.#table.get(exit.sandboxId);
    if (entry === undefined || entry.state === 'stopping') return;
    this.#table.delete(exit.sandboxId);
    this.#deps.events.push({ type: 'exited', sandboxId: exit.sandboxId, exitCode: exit.exitCode, signal: exit.signal });
    this.#metrics.exit(entry.fn.name);
  }

  /**
   * Starts deleting each known sandbox and answers at once: a starting one is cancelled, a ready
   * one is stopped (it shows as `stopping` until its process is gone). Deletions send no event.
   */
  delete(sandboxIds: readonly string[]): DeleteSandboxesResponse {
    const deleted: string[] = [];
    const unknown: string[] = [];
    for (const sandboxId of sandboxIds) {
      const entry = this.#table.get(sandboxId);
      if (entry === undefined) {
        unknown.push(sandboxId);
        continue;
      }
      deleted.push(sandboxId);
      if (entry.state === 'stopping') continue;
      const wasReady = entry.state === 'ready';
      entry.state = 'stopping';
      // Only a start in progress has anything to cancel (and an error is costly to build).
      if (wasReady) void this.#stop(entry);
      else entry.abort.abort(new BatonError('ERR_SANDBOX_START_FAILED', `sandbox ${sandboxId} was deleted while starting`));
    }
    return { deleted, unknown };
  }

  async #stop(entry: SandboxEntry): Promise<void> {
    try {
      await entry.runtime.delete(entry.sandboxId);
    } catch (err) {
      this.#deps.logger.error({ sandboxId: entry.sandboxId, err }, 'stopping a sandbox failed');
    } finally {
      if (this.#table.get(entry.sandboxId) === entry) this.#table.delete(entry.sandboxId);
    }
  }

  list(): SandboxInfo[] {
    return [...this.#table.values()].map((entry) => ({
      sandboxId: entry.sandboxId,
      function: entry.fn.name,
      generation: entry.fn.generation,
      state: entry.state,
      startedAt: new Date(entry.startedAtMs).toISOString(),
      ...(entry.address === undefined ? {} : { address: entry.address }),
      ...(entry.pid === undefined ? {} : { pid: entry.pid }),
    }));
  }

  countByState(): Record<SandboxState, number> {
    const counts: Record<SandboxState, number> = { starting: 0, ready: 0, stopping: 0 };
    for (const entry of this.#table.values()) counts[entry.state] += 1;
    return counts;
  }

  /** @throws BatonError ERR_SANDBOX_NOT_FOUND */
  logs(sandboxId: string, tail: number): SandboxLogsResponse {
    const entry = this.#table.get(sandboxId);
    const logs = entry?.runtime.logs(sandboxId, tail);
    if (logs === undefined) throw new BatonError('ERR_SANDBOX_NOT_FOUND', `no sandbox ${sandboxId} on this worker`);
    return logs;
  }

  /**
   * Cancels starting sandboxes and stops all others; with `keepSandboxes` (tests only: a crash
   * stand-in) the processes are left running for the next run's leftover cleanup.
   */
  async close(options: { keepSandboxes?: boolean } = {}): Promise<void> {
    if (this.#lifecycle !== 'running') return;
    this.#lifecycle = 'closing';
    for (const entry of this.#table.values()) {
      if (entry.state === 'starting') entry.abort.abort(new BatonError('ERR_SHUTTING_DOWN', 'the worker is closing'));
    }
    await Promise.all(this.#deps.runtimes.map((runtime) => runtime.close(options)));
    this.#table.clear();
    this.#lifecycle = 'closed';
  }

  #assertRunning(): void {
    if (this.#lifecycle !== 'running') throw new BatonError('ERR_SHUTTING_DOWN', 'the worker is closing');
  }
}
