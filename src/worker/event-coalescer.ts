import type { SandboxEventBatchesRequest, SandboxEventBatchesResponse, SandboxEventsRequest } from '../api/worker.ts';
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
  readonly #abort = new AbortController();
  #pending: Pending[] = [];
  #isScheduled = false;

  constructor(post: SendEventBatches) {
    this.#post = post;
  }

  /** A `SendEvents` for one worker's event sink. */
  readonly send: SendEvents = (request) => new Promise<void>((resolve, reject) => {
    this.#pending.push({ request, resolve, reject });
    if (this.#isScheduled) return;
    this.#isScheduled = true;
    setImmediate(() => this.#flush());
  });

  close(): void {
    this.#abort.abort();
  }

  #flush(): void {
    this.#isScheduled = false;
    const batch = this.#pending;
    this.#pending = [];
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
  }
}
