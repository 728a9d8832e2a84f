import type { SandboxEvent, SandboxEventsRequest } from '../api/worker.ts';
import type { Clock, Timer } from '../core/clock.ts';
import { Backoff } from '../core/backoff.ts';
import { toBatonError } from '../core/errors.ts';
import type { Logger } from '../observability/logger.ts';

/** Where the worker core sends sandbox events. */
export interface EventSink {
  push(event: SandboxEvent): void;
}

/** Sends one batch; implemented over the control plane's `POST /internal/v1/workers/events`. */
export type SendEvents = (request: SandboxEventsRequest, signal: AbortSignal) => Promise<void>;

const MAX_BATCH = 10_000;
const MAX_QUEUED = 100_000;

/**
 * Batches events: everything pushed during one event-loop turn leaves in one request (flushed by
 * the clock's `defer`, or inside the turn of the coalescer that workers sharing a process use), one
 * request in flight at a time so order is kept. When the control plane is
 * unreachable the batch is retried with backoff (100 ms doubling to 2 s) — a refusal that is not
 * retryable (`ERR_INVALID_REQUEST`: versions that do not match) drops it instead; beyond MAX_QUEUED the
 * oldest events are dropped — the control plane reconciles from the sandbox list it gets when the
 * worker registers again. When the control plane does not know the worker (ERR_WORKER_NOT_FOUND),
 * the batch is dropped for the same reason and `onUnknownWorker` asks for a new registration.
 */
export class BatchingEventSink implements EventSink {
  readonly #workerId: string;
  readonly #send: SendEvents;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #onUnknownWorker: () => void;
  readonly #abort = new AbortController();
  #queue: SandboxEvent[] = [];
  #isScheduled = false;
  #inflight: Promise<void> | undefined;
  #retryTimer: Timer | undefined;
  readonly #retries = new Backoff({ firstMs: 100, maxMs: 2_000 });
  #dropped = 0;
  #isClosed = false;

  /** Runs the flush at the next turn: the clock's `defer`, or the coalescer's scheduler when several sinks share one. */
  readonly #defer: (fn: () => void) => void;

  constructor(options: { workerId: string; send: SendEvents; clock: Clock; logger: Logger; onUnknownWorker?: () => void; defer?: (fn: () => void) => void }) {
    this.#defer = options.defer ?? ((fn) => options.clock.defer(fn));
    this.#workerId = options.workerId;
    this.#send = options.send;
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#onUnknownWorker = options.onUnknownWorker ?? (() => undefined);
  }

  /** Events dropped because the queue was full. */
  get dropped(): number {
    return this.#dropped;
  }

  get pending(): number {
    return this.#queue.length;
  }

  push(event: SandboxEvent): void {
    if (this.#isClosed) return;
    this.#queue.push(event);
    if (this.#queue.length > MAX_QUEUED) {
      const excess = this.#queue.length - MAX_QUEUED;
      this.#queue.splice(0, excess);
      this.#dropped += excess;
    }
    this.#schedule();
  }

  #schedule(): void {
    if (this.#isScheduled || this.#inflight !== undefined || this.#retryTimer !== undefined) return;
    this.#isScheduled = true;
    this.#defer(() => {
      this.#isScheduled = false;
      this.#flush();
    });
  }

  #flush(): void {
    if (this.#queue.length === 0 || this.#isClosed) return;
    const batch = this.#queue.slice(0, MAX_BATCH);
    this.#inflight = this.#send({ workerId: this.#workerId, events: batch }, this.#abort.signal).then(
      () => {
        this.#queue.splice(0, batch.length);
        this.#retries.reset();
      },
      (err: unknown) => this.#onSendFailed(err, batch.length),
    ).finally(() => {
      this.#inflight = undefined;
      if (this.#queue.length > 0 && this.#retryTimer === undefined) this.#schedule();
    });
  }

  #onSendFailed(err: unknown, batchSize: number): void {
    if (this.#isClosed) return;
    const error = toBatonError(err);
    if (error.code === 'ERR_WORKER_NOT_FOUND') {
      this.#queue.splice(0, batchSize);
      this.#onUnknownWorker();
      return;
    }
    if (!error.isRetryable) {
      // Sending it again would be refused again: dropped, as when the queue overflows.
      this.#queue.splice(0, batchSize);
      this.#dropped += batchSize;
      this.#logger.error({ code: error.code, err: error.message, events: batchSize }, 'the control plane refused a batch of sandbox events; dropped');
      return;
    }
    const retryInMs = this.#retries.next();
    this.#logger.warn({ code: error.code, err: error.message, events: this.#queue.length, retryInMs }, 'sending sandbox events failed');
    this.#retryTimer = this.#clock.setTimeout(() => {
      this.#retryTimer = undefined;
      this.#flush();
    }, retryInMs);
  }

  /** Tries to send what is queued (bounded by `timeoutMs`), then stops. */
  async close(timeoutMs = 1000): Promise<void> {
    this.#retryTimer?.cancel();
    this.#retryTimer = undefined;
    if (this.#inflight !== undefined) await this.#inflight;
    if (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, MAX_BATCH);
      await this.#send({ workerId: this.#workerId, events: batch }, AbortSignal.timeout(timeoutMs)).catch(() => undefined);
    }
    this.#isClosed = true;
    this.#abort.abort();
  }
}
