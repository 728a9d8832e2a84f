import type { SandboxEventBatchesRequest, SandboxEventBatchesResponse, SandboxEventsRequest } from '../api/worker.ts';
import type { Clock } from '../core/clock.ts';
import { BatonError } from '../core/errors.ts';
import type { SendEvents } from './event-sink.ts';

/** Sends the batches of several workers in one request (the control plane's events/batch call). */
export type SendEventBatches = (request: SandboxEventBatchesRequest, signal: AbortSignal) => Promise<SandboxEventBatchesResponse>;

interface Pending {
  readonly request: SandboxEventsRequest;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

/**
 * Coalesces the event batches of the workers that share this process: every batch handed to
 * `send` in one event-loop turn travels in one request. Each caller still sees its own outcome —
 * success, ERR_WORKER_NOT_FOUND when the control plane does not know that worker, or the transport
 * error — so each worker's event sink keeps its own ordering, retries and re-registration.
 */
export class EventCoalescer {
  readonly #post: SendEventBatches;
  readonly #clock: Clock;
  readonly #abort = new AbortController();
  #pending: Pending[] = [];
  /** Work to run at the start of the next flush (the event sinks' own flushes), see `defer`. */
  #deferred: (() => void)[] = [];
  #isScheduled = false;
  #isFlushing = false;

  constructor(post: SendEventBatches, clock: Clock) {
    this.#post = post;
    this.#clock = clock;
  }

  /** A `SendEvents` for one worker's event sink. */
  readonly send: SendEvents = (request) => new Promise<void>((resolve, reject) => {
    this.#pending.push({ request, resolve, reject });
    this.#schedule();
  });

  /**
   * The event sinks' scheduler: their flushes run at the start of this coalescer's next flush and
   * what they send leaves in that same request — one event-loop turn after the events, not two.
   */
  readonly defer = (fn: () => void): void => {
    this.#deferred.push(fn);
    this.#schedule();
  };

  close(): void {
    this.#abort.abort();
  }

  #schedule(): void {
    if (this.#isScheduled || this.#isFlushing) return;
    this.#isScheduled = true;
    this.#clock.defer(this.#flush);
  }

  readonly #flush = (): void => {
    this.#isScheduled = false;
    this.#isFlushing = true;
    try {
      const deferred = this.#deferred;
      this.#deferred = [];
      for (const fn of deferred) fn();
    } finally {
      this.#isFlushing = false;
    }
    const batch = this.#pending;
    this.#pending = [];
    if (this.#deferred.length > 0) this.#schedule();
    if (batch.length === 0) return;
    this.#post({ batches: batch.map((p) => p.request) }, this.#abort.signal).then(
      (response) => {
        const unknown = new Set(response.unknownWorkers);
        for (const p of batch) {
          if (unknown.has(p.request.workerId)) p.reject(new BatonError('ERR_WORKER_NOT_FOUND', `worker '${p.request.workerId}' must register`));
          else p.resolve();
        }
      },
      (err: unknown) => {
        for (const p of batch) p.reject(err);
      },
    );
  };
}
