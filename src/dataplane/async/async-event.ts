/**
 * An asynchronous invocation as the durable queue keeps it. The request is stored as it must be
 * replayed: `kind: 'http'` is an ordinary invocation (method, path after the function prefix,
 * end-to-end headers, body), delivered as the same HTTP request; `kind: 'lambda'` came through the
 * Lambda Invoke API with `X-Amz-Invocation-Type: Event` and is delivered as a `RequestResponse`
 * invocation with the same payload.
 */
export interface AsyncRequest {
  readonly kind: 'http' | 'lambda';
  readonly method: string;
  readonly path: string;
  /** Flat `[name, value, …]`, without hop-by-hop headers and the invocation-type ones. */
  readonly headers: readonly string[];
  readonly body: Buffer;
}

/** `queued` → `running` → `succeeded` | `failed` (will retry: back to `queued`) | `dead-lettered`. */
export type AsyncState = 'queued' | 'running' | 'succeeded' | 'failed' | 'dead-lettered';

/** One delivery attempt and what came of it. */
export interface AsyncAttempt {
  readonly startedAt: number;
  finishedAt?: number;
  /** `succeeded`, `function-error` (non-2xx, or Lambda's function error), `interrupted` (the data plane stopped during it: the function may have run). */
  outcome?: 'succeeded' | 'function-error' | 'interrupted';
  status?: number;
  code?: string;
}

/** What the function answered on the last attempt, the body cut at the configured size. */
export interface AsyncResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
  readonly isTruncated: boolean;
}

/** Why an event ended in the dead-letter queue. */
export type DeadLetterReason = 'retries-exhausted' | 'max-event-age';

/** Wall-clock milliseconds (epoch): events outlive the process, so monotonic time would not do. */
export interface AsyncEvent {
  readonly id: string;
  readonly fn: string;
  readonly acceptedAt: number;
  /** When the event last entered the queue (acceptance or redrive): `maxEventAgeMs` counts from here. */
  queuedAt: number;
  request: AsyncRequest;
  state: AsyncState;
  /** Counted attempts (throttled ones are not counted, as on Lambda). */
  attempts: AsyncAttempt[];
  /** When the next attempt may start (back-off), wall ms. */
  notBefore: number;
  /** Attempts refused by the data plane itself (queue full, no capacity): retried, not counted. */
  throttles: number;
  finishedAt?: number;
  response?: AsyncResponse;
  deadLetterReason?: DeadLetterReason;
  /** Times the event was redriven from the dead-letter queue. */
  redrives: number;
}

/** The per-function `async` settings the data plane applies (the function spec's, defaulted). */
export interface AsyncConfig {
  readonly maxRetryAttempts: number;
  readonly maxEventAgeMs: number;
  readonly retryBackoffMs: number;
  readonly maxConcurrency: number;
  /** `dlq` (the function's dead-letter queue) or the name of another function to send the event to. */
  readonly onFailure: { readonly type: 'dlq' } | { readonly type: 'function'; readonly name: string };
}

export const ASYNC_DEFAULTS: AsyncConfig = Object.freeze({
  maxRetryAttempts: 2,
  maxEventAgeMs: 6 * 3_600_000,
  retryBackoffMs: 60_000,
  maxConcurrency: 100,
  onFailure: Object.freeze({ type: 'dlq' as const }),
});
