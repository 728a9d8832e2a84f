import { Backoff } from '../core/backoff.ts';
import type { Clock, Timer } from '../core/clock.ts';
import { toBatonError, type ErrorCode } from '../core/errors.ts';
import type { Logger } from '../observability/logger.ts';

/** The two calls a daemon makes to stay a member of the cluster (implemented over its client in main.ts). */
export interface MembershipCalls<R> {
  /** Registers; the request is built at each call, with what the daemon runs now. */
  register(signal: AbortSignal): Promise<R>;
  heartbeat(signal: AbortSignal): Promise<void>;
}

/** Calls each subscribed beat once per interval, all on one timer (many logical workers in one process). */
export interface HeartbeatTicker {
  /** Calls `beat` every `intervalMs` (the latest interval given is the ticker's) until the returned function is called. */
  subscribe(beat: () => void, intervalMs: number): () => void;
}

export interface MembershipLinkOptions<R> {
  readonly calls: MembershipCalls<R>;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly heartbeatIntervalMs: number;
  /** The code with which the control plane says it does not know this daemon (it must register again). */
  readonly notFoundCode: ErrorCode;
  /** The heartbeat interval the control plane asks for in its answer to a registration, if any. */
  readonly intervalOf?: (response: R) => number | undefined;
  /** Drives heartbeats instead of a timer of the link's own. */
  readonly ticker?: HeartbeatTicker;
  /** First retry of a failed registration; doubles up to `maxRetryMs`. Defaults 100 and 5,000. */
  readonly firstRetryMs?: number;
  readonly maxRetryMs?: number;
  /** Fields for its log lines (`{ workerId }`, `{ dataplaneId }`). */
  readonly fields?: Record<string, unknown>;
  /** After each successful registration (the first, then one per resync). */
  readonly onRegistered?: () => void;
}

export type LinkState = 'idle' | 'registering' | 'registered' | 'closed';

/**
 * Keeps a worker or a data plane a member of the cluster:
 *   idle → registering ──(answered)──→ registered ──(heartbeat every interval)──┐
 *              ↑  └─(failed: retry 100 ms, ×2, ≤ 5 s)                          │
 *              └──── heartbeat answered `notFoundCode` (the control plane ──────┤
 *              │     forgot us, e.g. it restarted)                              │
 *              └──── heartbeat succeeds after failing (the control plane came ──┘
 *                    back: register again, so that it gets our state afresh)
 * It never gives up and never throws: a daemon started before its control plane just waits. A
 * registration refused with a code that is not retryable (a bad request: versions or configuration
 * that do not match) is logged as an error and retried at the longest interval. Every
 * registration bumps an epoch, so callbacks of a superseded chain of calls do nothing. With a
 * `ticker`, heartbeats follow the ticker (one skipped while the previous is in flight) instead of
 * a timer per link.
 */
export class MembershipLink<R> {
  readonly #o: MembershipLinkOptions<R>;
  readonly #abort = new AbortController();
  readonly #retries: Backoff;
  #state: LinkState = 'idle';
  #timer: Timer | undefined;
  #intervalMs: number;
  #isUnreachable = false;
  #isBeating = false;
  #unsubscribe: (() => void) | undefined;
  #inflight: Promise<void> | undefined;
  #epoch = 0;
  #registrations = 0;
  /** Asked to register again while a registration was in flight: what that one reported may be out of date. */
  #isRegistrationStale = false;
  /** The code of the last refusal logged (a refusal that repeats is logged once, until a registration succeeds). */
  #loggedRefusal: ErrorCode | undefined;

  constructor(options: MembershipLinkOptions<R>) {
    this.#o = options;
    this.#intervalMs = options.heartbeatIntervalMs;
    this.#retries = new Backoff({ firstMs: options.firstRetryMs ?? 100, maxMs: options.maxRetryMs ?? 5_000 });
  }

  get state(): LinkState {
    return this.#state;
  }

  /** How many registrations succeeded (the first, then one per return of the control plane). */
  get registrations(): number {
    return this.#registrations;
  }

  /** Aborted when the link closes: other calls to the control plane may listen on it. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  start(): void {
    if (this.#state === 'idle') this.#register();
  }

  /**
   * Registers again at once (the control plane answered another call with `notFoundCode`, so it
   * has dropped something this daemon sent). While a registration is in flight, another follows
   * it: the one in flight may report a state the dropped call would have changed.
   */
  requestRegistration(): void {
    if (this.#state === 'registering') {
      this.#isRegistrationStale = true;
      return;
    }
    if (this.#state !== 'registered') return;
    this.#timer?.cancel();
    this.#register();
  }

  /** Stops heartbeats and cancels the call in flight. */
  async close(): Promise<void> {
    this.#state = 'closed';
    this.#stopTicks();
    this.#timer?.cancel();
    this.#abort.abort();
    await this.#inflight?.catch(() => undefined);
  }

  #register(): void {
    this.#stopTicks();
    this.#state = 'registering';
    this.#isRegistrationStale = false;
    const epoch = ++this.#epoch;
    const log = this.#o.logger;
    this.#track(this.#o.calls.register(this.#abort.signal).then((response) => {
      if (this.#isStale(epoch)) return;
      this.#state = 'registered';
      this.#registrations++;
      this.#retries.reset();
      this.#isUnreachable = false;
      this.#loggedRefusal = undefined;
      const intervalMs = this.#o.intervalOf?.(response);
      if (intervalMs !== undefined && Number.isInteger(intervalMs) && intervalMs > 0) this.#intervalMs = intervalMs;
      log.info({ ...this.#o.fields, heartbeatIntervalMs: this.#intervalMs }, 'registered with the control plane');
      if (this.#isRegistrationStale) {
        this.#register();
        return;
      }
      this.#nextHeartbeat();
      this.#o.onRegistered?.();
    }, (err: unknown) => {
      if (this.#isStale(epoch)) return;
      const error = toBatonError(err);
      const retryMs = error.isRetryable ? this.#retries.next() : (this.#o.maxRetryMs ?? 5_000);
      if (error.isRetryable) log.warn({ ...this.#o.fields, code: error.code, err: error.message, retryInMs: retryMs }, 'registering with the control plane failed');
      else if (this.#loggedRefusal !== error.code) {
        // Refused (a wrong join secret, mismatched versions) until an operator acts: said once, not every retry.
        this.#loggedRefusal = error.code;
        log.error({ ...this.#o.fields, code: error.code, err: error.message, retryInMs: retryMs }, 'the control plane refused the registration');
      }
      this.#schedule(() => this.#register(), retryMs);
    }));
  }

  #heartbeat(): void {
    if (this.#isBeating) return;
    this.#isBeating = true;
    const epoch = this.#epoch;
    const log = this.#o.logger;
    this.#track(this.#o.calls.heartbeat(this.#abort.signal).finally(() => {
      this.#isBeating = false;
    }).then(() => {
      if (this.#isStale(epoch)) return;
      if (this.#isUnreachable) {
        log.info(this.#o.fields ?? {}, 'control plane reachable again; registering again');
        this.#register();
        return;
      }
      this.#nextHeartbeat();
    }, (err: unknown) => {
      if (this.#isStale(epoch)) return;
      const error = toBatonError(err);
      if (error.code === this.#o.notFoundCode) {
        log.warn(this.#o.fields ?? {}, 'the control plane does not know this daemon; registering again');
        this.#register();
        return;
      }
      if (!this.#isUnreachable) log.warn({ ...this.#o.fields, code: error.code, err: error.message }, 'heartbeat failed');
      this.#isUnreachable = true;
      this.#nextHeartbeat();
    }));
  }

  /** Own timer: one heartbeat after the interval. Ticker: stay subscribed (once). */
  #nextHeartbeat(): void {
    const { ticker } = this.#o;
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
    this.#timer = this.#o.clock.setTimeout(() => {
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
}
