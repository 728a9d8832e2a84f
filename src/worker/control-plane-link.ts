import type { RuntimeName } from '../api/function-spec.ts';
import type { Capacity, HeartbeatRequest, RegisterWorkerRequest, RegisterWorkerResponse, SandboxInfo } from '../api/worker.ts';
import type { Clock, Timer } from '../core/clock.ts';
import { BatonError } from '../core/errors.ts';
import type { Logger } from '../observability/logger.ts';

/** The two calls the link makes; implemented over JsonClient in main.ts, faked in tests. */
export interface ControlPlaneCalls {
  register(request: RegisterWorkerRequest, signal: AbortSignal): Promise<RegisterWorkerResponse>;
  heartbeat(request: HeartbeatRequest, signal: AbortSignal): Promise<void>;
}

export interface ControlPlaneLinkOptions {
  readonly calls: ControlPlaneCalls;
  readonly workerId: string;
  readonly url: string;
  /** The process's base URL when several workers share it (see RegisterWorkerRequest.processUrl). */
  readonly processUrl?: string;
  readonly capacity: Capacity;
  readonly runtimes: readonly RuntimeName[];
  /** What the worker runs right now, sent with every registration for reconciliation. */
  readonly listSandboxes: () => SandboxInfo[];
  readonly heartbeatIntervalMs: number;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Drives heartbeats instead of a timer of the link's own (many logical workers in one process). */
  readonly ticker?: HeartbeatTicker;
}

/** Calls each subscribed beat once per interval, all on one timer. */
export interface HeartbeatTicker {
  /** Calls `beat` every `intervalMs` (the latest interval given is the ticker's) until the returned function is called. */
  subscribe(beat: () => void, intervalMs: number): () => void;
}

export type LinkState = 'idle' | 'registering' | 'registered' | 'closed';

const FIRST_RETRY_MS = 100;
/** A control plane that comes back is found within a second. */
const MAX_RETRY_MS = 1000;

/**
 * Keeps the worker known to the control plane:
 *   idle → registering ──(200)──→ registered ──(heartbeat every interval)──┐
 *              ↑  └─(error: retry 100 ms, ×2, ≤ 1 s)                      │
 *              └──── heartbeat answered 404 ERR_WORKER_NOT_FOUND ─────────┤
 *              └──── heartbeat succeeds after failing (the control plane ─┘
 *                    came back, maybe restarted: give it our sandboxes)
 * It never gives up and never throws: a worker started before its control plane just waits.
 * With a `ticker`, the heartbeats follow the ticker (one skipped while the previous is in flight)
 * instead of a timer per link; registration retries keep their own timer.
 */
export class ControlPlaneLink {
  readonly #options: ControlPlaneLinkOptions;
  readonly #abort = new AbortController();
  #state: LinkState = 'idle';
  #timer: Timer | undefined;
  #retryMs = FIRST_RETRY_MS;
  #intervalMs: number;
  #isUnreachable = false;
  #isBeating = false;
  #unsubscribe: (() => void) | undefined;
  #inflight: Promise<void> | undefined;
  /** Bumped on every registration, so callbacks of a superseded chain of calls do nothing. */
  #epoch = 0;

  constructor(options: ControlPlaneLinkOptions) {
    this.#options = options;
    this.#intervalMs = options.heartbeatIntervalMs;
  }

  get state(): LinkState {
    return this.#state;
  }

  start(): void {
    if (this.#state !== 'idle') return;
    this.#register();
  }

  /** Registers again at once (e.g. the control plane refused an event batch for an unknown worker). */
  requestRegistration(): void {
    if (this.#state !== 'registered') return;
    this.#timer?.cancel();
    this.#register();
  }

  #register(): void {
    this.#stopTicks();
    this.#state = 'registering';
    const epoch = ++this.#epoch;
    const { calls, workerId, url, capacity, runtimes, listSandboxes, logger } = this.#options;
    const request: RegisterWorkerRequest = {
      workerId, url, capacity, runtimes: [...runtimes], sandboxes: listSandboxes(),
      ...(this.#options.processUrl === undefined ? {} : { processUrl: this.#options.processUrl }),
    };
    this.#track(calls.register(request, this.#abort.signal).then((response) => {
      if (this.#isStale(epoch)) return;
      this.#state = 'registered';
      this.#retryMs = FIRST_RETRY_MS;
      this.#isUnreachable = false;
      if (Number.isInteger(response?.heartbeatIntervalMs) && response.heartbeatIntervalMs > 0) this.#intervalMs = response.heartbeatIntervalMs;
      logger.info({ workerId, sandboxes: request.sandboxes.length, heartbeatIntervalMs: this.#intervalMs }, 'registered with the control plane');
      this.#nextHeartbeat();
    }, (err: unknown) => {
      if (this.#isStale(epoch)) return;
      logger.warn({ err: describe(err), retryInMs: this.#retryMs }, 'registering with the control plane failed');
      this.#schedule(() => this.#register(), this.#retryMs);
      this.#retryMs = Math.min(MAX_RETRY_MS, this.#retryMs * 2);
    }));
  }

  #heartbeat(): void {
    const { calls, workerId, logger } = this.#options;
    if (this.#isBeating) return;
    this.#isBeating = true;
    const epoch = this.#epoch;
    this.#track(calls.heartbeat({ workerId }, this.#abort.signal).finally(() => {
      this.#isBeating = false;
    }).then(() => {
      if (this.#isStale(epoch)) return;
      if (this.#isUnreachable) {
        logger.info('control plane reachable again; registering again');
        this.#register();
        return;
      }
      this.#nextHeartbeat();
    }, (err: unknown) => {
      if (this.#isStale(epoch)) return;
      if (err instanceof BatonError && err.code === 'ERR_WORKER_NOT_FOUND') {
        logger.warn('the control plane does not know this worker; registering again');
        this.#register();
        return;
      }
      if (!this.#isUnreachable) logger.warn({ err: describe(err) }, 'heartbeat failed');
      this.#isUnreachable = true;
      this.#nextHeartbeat();
    }));
  }

  /** Own timer: one heartbeat after the interval. Ticker: stay subscribed (once). */
  #nextHeartbeat(): void {
    const { ticker } = this.#options;
    if (ticker === undefined) this.#schedule(() => this.#heartbeat(), this.#intervalMs);
    else this.#unsubscribe ??= ticker.subscribe(() => this.#heartbeat(), this.#intervalMs);
  }

  #stopTicks(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
  }

  #isStale(epoch: number): boolean {
    return this.#state === 'closed' || epoch !== this.#epoch;
  }

  #schedule(fn: () => void, ms: number): void {
    this.#timer = this.#options.clock.setTimeout(() => {
      this.#timer = undefined;
      if (this.#state !== 'closed') fn();
    }, ms);
  }

  #track(call: Promise<void>): void {
    const tracked = call.finally(() => {
      if (this.#inflight === tracked) this.#inflight = undefined;
    });
    this.#inflight = tracked;
  }

  /** Stops heartbeats and cancels the call in flight. */
  async close(): Promise<void> {
    this.#state = 'closed';
    this.#stopTicks();
    this.#timer?.cancel();
    this.#abort.abort();
    await this.#inflight?.catch(() => undefined);
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
