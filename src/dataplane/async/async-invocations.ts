import type { Clock, Timer } from '../../core/clock.ts';
import { BatonError } from '../../core/errors.ts';
import type { Random } from '../../core/random.ts';
import type { Logger } from '../../observability/logger.ts';
import type { AsyncAcceptor } from './async-acceptor.ts';
import type { AsyncConfig, AsyncEvent, AsyncRequest, AsyncResponse, AsyncState, DeadLetterReason } from './async-event.ts';
import type { AsyncStore } from './async-store.ts';

/** What one delivery came to. `throttled`: the data plane refused it (queue full, no capacity, closing); retried, not counted. */
export interface DeliveryResult {
  readonly outcome: 'succeeded' | 'function-error' | 'throttled';
  readonly status: number;
  /** The data plane's error code, when it answered itself. */
  readonly code?: string;
  readonly response?: AsyncResponse;
}

/** Sends one attempt of an event down the ordinary invocation path. Never rejects. */
export type Deliver = (event: AsyncEvent) => Promise<DeliveryResult>;

export interface AsyncInvocationsOptions {
  readonly store: AsyncStore;
  readonly clock: Clock;
  /** Wall-clock ms since the epoch: events outlive the process. */
  readonly wallNow: () => number;
  readonly random: Random;
  readonly logger: Logger;
  readonly deliver: Deliver;
  /** The function's async settings; undefined while the data plane does not know the function. */
  readonly configOf: (fn: string) => AsyncConfig | undefined;
  /** Events not yet finished (queued, running, waiting to retry), over all functions. */
  readonly capacity: number;
  /** Bytes of their requests, over all functions. */
  readonly maxBytes: number;
  /** Attempts in flight, over all functions. */
  readonly deliveryConcurrency: number;
  /** How long a finished event's state and response are kept. */
  readonly resultRetentionMs: number;
  /** At most this many finished events are kept (the oldest go first). */
  readonly resultRetentionMax: number;
  /** How long a dead letter is kept (until redriven). */
  readonly deadLetterRetentionMs: number;
  /** First back-off after a throttled attempt; doubles up to 30 s. */
  readonly throttleBackoffMs: number;
  readonly onOutcome?: (fn: string, outcome: string) => void;
}

interface FunctionQueue {
  readonly name: string;
  readonly ready: string[];
  head: number;
  running: number;
}

/** Per-event bookkeeping beyond the stored state. */
const EVENT_OVERHEAD_BYTES = 512;
const MAX_THROTTLE_BACKOFF_MS = 30_000;

export type AsyncInvocationsState = 'new' | 'open' | 'closing' | 'closed';

/**
 * Asynchronous invocations: accepted once durable, delivered at least once through the ordinary
 * invocation path (so the cold-start queue, concurrency limits and the autoscaler see them),
 * retried with jittered exponential back-off, dead-lettered (or sent to another function) when
 * they keep failing or grow too old, and kept for a while so that their result can be fetched.
 *
 * Bounded: `capacity` unfinished events and `maxBytes` of their requests (ERR_ASYNC_QUEUE_FULL
 * beyond), `deliveryConcurrency` attempts in flight and each function's `maxConcurrency`;
 * `resultRetentionMax` finished events.
 */
export class AsyncInvocations implements AsyncAcceptor {
  readonly #o: AsyncInvocationsOptions;
  readonly #log: Logger;
  readonly #events = new Map<string, AsyncEvent>();
  readonly #queues = new Map<string, FunctionQueue>();
  /** Functions with ready events that waited for a global delivery slot. */
  readonly #starved = new Set<FunctionQueue>();
  readonly #timers = new Map<string, Timer>();
  /** Finished events in order of finishing (Map order), and dead letters. */
  readonly #finished = new Map<string, number>();
  readonly #deadLetters = new Map<string, number>();
  #sweepTimer: Timer | undefined;
  #unfinished = 0;
  #bytes = 0;
  /** Bytes of the responses kept with finished events (bounded by `maxBytes` too: the oldest go first). */
  #resultBytes = 0;
  #running = 0;
  #state: AsyncInvocationsState = 'new';
  #idle: (() => void) | undefined;

  constructor(options: AsyncInvocationsOptions) {
    this.#o = options;
    this.#log = options.logger;
  }

  get state(): AsyncInvocationsState {
    return this.#state;
  }

  /** Unfinished events (queued, running or waiting to retry). */
  get depth(): number {
    return this.#unfinished;
  }

  /** Loads the kept events: unfinished ones are queued again (a running one was interrupted: it may have run). */
  async start(): Promise<{ recovered: number; corrupt: number }> {
    const report = await this.#o.store.load();
    for (const corrupt of report.corrupt) this.#log.warn({ ...corrupt }, 'the async log had a torn or corrupt tail; it was cut off');
    let recovered = 0;
    for (const event of report.events) {
      this.#events.set(event.id, event);
      if (event.state === 'succeeded' || event.state === 'failed') {
        this.#finished.set(event.id, event.finishedAt ?? event.acceptedAt);
        this.#resultBytes += event.response?.body.length ?? 0;
        event.request = withoutBody(event.request);
        continue;
      }
      if (event.state === 'dead-lettered') {
        this.#deadLetters.set(event.id, event.finishedAt ?? event.acceptedAt);
        this.#bytes += sizeOf(event.request);
        continue;
      }
      const last = event.attempts.at(-1);
      if (event.state === 'running' && last !== undefined && last.outcome === undefined) {
        last.outcome = 'interrupted';
        last.finishedAt = this.#o.wallNow();
      }
      event.state = 'queued';
      this.#unfinished += 1;
      this.#bytes += sizeOf(event.request);
      this.#enqueue(event);
      recovered += 1;
    }
    this.#state = 'open';
    for (const queue of this.#queues.values()) this.#pump(queue);
    this.#armSweep();
    return { recovered, corrupt: report.corrupt.length };
  }

  async accept(id: string, fn: string, request: AsyncRequest): Promise<void> {
    if (this.#state !== 'open') throw new BatonError('ERR_SHUTTING_DOWN', 'the data plane is shutting down');
    const size = sizeOf(request);
    if (this.#unfinished >= this.#o.capacity || this.#bytes + size > this.#o.maxBytes) {
      throw new BatonError('ERR_ASYNC_QUEUE_FULL', `the async queue is full (${this.#unfinished} events, ${this.#bytes} bytes with the dead letters; limits ${this.#o.capacity} and ${this.#o.maxBytes})`);
    }
    if (this.#events.has(id)) throw new BatonError('ERR_INVALID_REQUEST', `an invocation with id '${id}' exists`);
    const now = this.#o.wallNow();
    const event: AsyncEvent = { id, fn, acceptedAt: now, queuedAt: now, request, state: 'queued', attempts: [], notBefore: now, throttles: 0, redrives: 0 };
    this.#events.set(id, event);
    this.#unfinished += 1;
    this.#bytes += size;
    // An event its function can take at once starts its first attempt in its acceptance record: one
    // durable write instead of two before it runs (after a crash, that attempt shows as interrupted).
    const queue = this.#queueOf(fn);
    const config = this.#o.configOf(fn);
    const startsNow = config !== undefined && queue.head >= queue.ready.length && queue.running < config.maxConcurrency && this.#running < this.#o.deliveryConcurrency;
    if (startsNow) this.#begin(queue, event, now);
    try {
      await this.#o.store.save(event, true);
    } catch (err) {
      this.#events.delete(id);
      this.#unfinished -= 1;
      this.#bytes -= size;
      if (startsNow) {
        queue.running -= 1;
        this.#running -= 1;
        this.#pumpAll(queue);
      }
      throw new BatonError('ERR_INTERNAL', `the event could not be made durable: ${(err as Error).message}`, { cause: err });
    }
    if (startsNow) void this.#o.deliver(event).then((result) => this.#finish(queue, event, result));
    else this.#enqueue(event);
  }

  get(id: string): AsyncEvent | undefined {
    return this.#events.get(id);
  }

  /** Events of `fn` (all functions when undefined), newest first, optionally in one state. */
  list(fn: string | undefined, state: AsyncState | undefined, limit: number): AsyncEvent[] {
    const out: AsyncEvent[] = [];
    for (const event of this.#events.values()) {
      if ((fn === undefined || event.fn === fn) && (state === undefined || event.state === state)) out.push(event);
    }
    out.sort((a, b) => b.acceptedAt - a.acceptedAt);
    return out.slice(0, limit);
  }

  /** Queues dead letters again, as new (attempts reset, age counted from now); returns the ids redriven. */
  redrive(fn: string, ids: readonly string[] | undefined): string[] {
    if (this.#state !== 'open') throw new BatonError('ERR_SHUTTING_DOWN', 'the data plane is shutting down');
    const chosen = ids ?? this.list(fn, 'dead-lettered', Number.MAX_SAFE_INTEGER).map((e) => e.id);
    const done: string[] = [];
    for (const id of chosen) {
      const event = this.#events.get(id);
      if (event === undefined || event.fn !== fn || event.state !== 'dead-lettered') continue;
      if (this.#unfinished >= this.#o.capacity) break;
      this.#deadLetters.delete(id);
      const now = this.#o.wallNow();
      event.state = 'queued';
      event.queuedAt = now;
      event.notBefore = now;
      event.attempts = [];
      event.throttles = 0;
      event.redrives += 1;
      delete event.finishedAt;
      delete event.deadLetterReason;
      delete event.response;
      // Its bytes are still counted: a dead letter keeps its request in memory.
      this.#unfinished += 1;
      void this.#save(event, true);
      this.#enqueue(event);
      done.push(id);
    }
    return done;
  }

  /** Per-function depth and the age of the oldest unfinished event, for the gauges. */
  *queueRows(): Iterable<{ fn: string; depth: number; oldestAgeMs: number }> {
    const now = this.#o.wallNow();
    const rows = new Map<string, { depth: number; oldest: number }>();
    for (const event of this.#events.values()) {
      if (event.state !== 'queued' && event.state !== 'running') continue;
      const row = rows.get(event.fn);
      if (row === undefined) rows.set(event.fn, { depth: 1, oldest: event.queuedAt });
      else {
        row.depth += 1;
        row.oldest = Math.min(row.oldest, event.queuedAt);
      }
    }
    for (const [fn, row] of rows) yield { fn, depth: row.depth, oldestAgeMs: Math.max(0, now - row.oldest) };
  }

  /** A function became known: its events waiting after a refusal are tried now. */
  poke(fn: string): void {
    if (this.#state !== 'open') return;
    for (const [id, timer] of this.#timers) {
      const event = this.#events.get(id);
      if (event === undefined || event.fn !== fn || event.throttles === 0) continue;
      timer.cancel();
      this.#timers.delete(id);
      event.notBefore = this.#o.wallNow();
      this.#enqueue(event);
    }
  }

  /**
   * Stops starting attempts and accepting events, waits for the attempts in flight (at most
   * `graceMs`; an unfinished one stays queued in the store and is delivered after the restart),
   * then closes the store.
   */
  async close(graceMs: number): Promise<void> {
    if (this.#state === 'closed' || this.#state === 'closing') return;
    this.#state = 'closing';
    for (const timer of this.#timers.values()) timer.cancel();
    this.#timers.clear();
    this.#sweepTimer?.cancel();
    if (this.#running > 0 && graceMs > 0) {
      await new Promise<void>((resolve) => {
        const timer = this.#o.clock.setTimeout(resolve, graceMs);
        this.#idle = () => {
          timer.cancel();
          resolve();
        };
      });
    }
    this.#state = 'closed';
    await this.#o.store.close();
  }

  #queueOf(fn: string): FunctionQueue {
    let queue = this.#queues.get(fn);
    if (queue === undefined) {
      queue = { name: fn, ready: [], head: 0, running: 0 };
      this.#queues.set(fn, queue);
    }
    return queue;
  }

  /** Into its function's ready FIFO now, or after its back-off. */
  #enqueue(event: AsyncEvent): void {
    const delay = event.notBefore - this.#o.wallNow();
    if (delay > 0) {
      this.#timers.set(event.id, this.#o.clock.setTimeout(() => {
        this.#timers.delete(event.id);
        this.#enqueue(event);
      }, delay));
      return;
    }
    const queue = this.#queueOf(event.fn);
    queue.ready.push(event.id);
    this.#pump(queue);
  }

  #pump(queue: FunctionQueue): void {
    if (this.#state !== 'open') return;
    while (queue.head < queue.ready.length) {
      const config = this.#o.configOf(queue.name);
      if (config !== undefined && queue.running >= config.maxConcurrency) return;
      if (this.#running >= this.#o.deliveryConcurrency) {
        this.#starved.add(queue);
        return;
      }
      const id = queue.ready[queue.head] as string;
      queue.head += 1;
      if (queue.head > 1024 && queue.head * 2 > queue.ready.length) {
        queue.ready.splice(0, queue.head);
        queue.head = 0;
      }
      const event = this.#events.get(id);
      if (event !== undefined && event.state === 'queued') this.#attempt(queue, event, config);
    }
  }

  #attempt(queue: FunctionQueue, event: AsyncEvent, config: AsyncConfig | undefined): void {
    const now = this.#o.wallNow();
    if (config === undefined) {
      // Not (yet) in the routing table — just started, or the function is being deleted: wait, as when throttled.
      if (now - event.queuedAt > 6 * 3_600_000) this.#fail(event, 'max-event-age', undefined);
      else this.#throttled(event);
      return;
    }
    if (now - event.queuedAt > config.maxEventAgeMs) {
      this.#fail(event, 'max-event-age', config);
      return;
    }
    this.#begin(queue, event, now);
    // The attempt is durable before it starts: after a crash, an attempt that may have run is always
    // visible (as `interrupted`), so every duplicate delivery is explained by the record.
    void this.#save(event, false).then(() => this.#o.deliver(event)).then((result) => this.#finish(queue, event, result));
  }

  /** The event's next attempt starts (in memory; the caller makes it durable before sending it). */
  #begin(queue: FunctionQueue, event: AsyncEvent, now: number): void {
    event.state = 'running';
    event.attempts.push({ startedAt: now });
    queue.running += 1;
    this.#running += 1;
  }

  #finish(queue: FunctionQueue, event: AsyncEvent, result: DeliveryResult): void {
    queue.running -= 1;
    this.#running -= 1;
    const attempt = event.attempts.at(-1);
    const now = this.#o.wallNow();
    this.#o.onOutcome?.(event.fn, result.outcome);
    if (result.outcome === 'throttled') {
      event.attempts.pop();
      this.#throttled(event);
    } else if (attempt !== undefined) {
      attempt.finishedAt = now;
      attempt.outcome = result.outcome;
      attempt.status = result.status;
      if (result.code !== undefined) attempt.code = result.code;
      if (result.response !== undefined) event.response = result.response;
      if (result.outcome === 'succeeded') this.#succeed(event);
      else this.#retryOrFail(event);
    }
    if (this.#running === 0) this.#idle?.();
    this.#pumpAll(queue);
  }

  /** A delivery slot was freed: `queue` first, then the functions that waited for a global slot. */
  #pumpAll(queue: FunctionQueue): void {
    this.#pump(queue);
    for (const starved of this.#starved) {
      if (this.#running >= this.#o.deliveryConcurrency) break;
      this.#starved.delete(starved);
      this.#pump(starved);
    }
  }

  #throttled(event: AsyncEvent): void {
    event.state = 'queued';
    event.throttles += 1;
    const backoff = Math.min(MAX_THROTTLE_BACKOFF_MS, this.#o.throttleBackoffMs * 2 ** Math.min(event.throttles - 1, 16));
    event.notBefore = this.#o.wallNow() + jitter(backoff, this.#o.random);
    if (this.#state === 'open') this.#enqueue(event);
  }

  #succeed(event: AsyncEvent): void {
    event.state = 'succeeded';
    event.finishedAt = this.#o.wallNow();
    this.#settle(event, false);
    this.#finished.set(event.id, event.finishedAt);
    this.#resultBytes += event.response?.body.length ?? 0;
    void this.#save(event, false);
    event.request = withoutBody(event.request);
    this.#trimFinished();
  }

  #retryOrFail(event: AsyncEvent): void {
    const config = this.#o.configOf(event.fn);
    if (config === undefined || event.attempts.length > config.maxRetryAttempts) {
      this.#fail(event, 'retries-exhausted', config);
      return;
    }
    event.state = 'queued';
    // Attempt n waits base × 2^(n−1) × [0.5, 1.5): with the 60 s default, ~1 min then ~2 min, as Lambda.
    const backoff = config.retryBackoffMs * 2 ** (event.attempts.length - 1);
    event.notBefore = this.#o.wallNow() + jitter(backoff, this.#o.random);
    void this.#save(event, false);
    if (this.#state === 'open') this.#enqueue(event);
  }

  /** Out of attempts or too old: to the dead-letter queue, or to the on-failure function. */
  #fail(event: AsyncEvent, reason: DeadLetterReason, config: AsyncConfig | undefined): void {
    event.finishedAt = this.#o.wallNow();
    event.deadLetterReason = reason;
    const destination = config?.onFailure;
    if (destination?.type === 'function') {
      this.#settle(event, false);
      event.state = 'failed';
      this.#finished.set(event.id, event.finishedAt);
      this.#resultBytes += event.response?.body.length ?? 0;
      void this.#save(event, false);
      this.#sendToDestination(event, destination.name, reason);
      event.request = withoutBody(event.request);
      this.#trimFinished();
      return;
    }
    // A dead letter keeps its request (for a redrive), so its bytes stay counted until it is forgotten.
    this.#settle(event, true);
    event.state = 'dead-lettered';
    this.#deadLetters.set(event.id, event.finishedAt);
    this.#o.onOutcome?.(event.fn, 'dead-lettered');
    void this.#save(event, true);
    this.#armSweep();
  }

  /** Lambda's on-failure destination record, as a Lambda invocation of `target`. */
  #sendToDestination(event: AsyncEvent, target: string, reason: DeadLetterReason): void {
    const payload = {
      version: '1.0',
      timestamp: new Date(event.finishedAt ?? this.#o.wallNow()).toISOString(),
      requestContext: {
        requestId: event.id,
        functionArn: `arn:aws:lambda:local:000000000000:function:${event.fn}:$LATEST`,
        condition: reason === 'max-event-age' ? 'EventAgeExceeded' : 'RetriesExhausted',
        approximateInvokeCount: event.attempts.length,
      },
      requestPayload: event.request.kind === 'lambda' ? safeJson(event.request.body) : { method: event.request.method, path: event.request.path, body: event.request.body.toString('base64') },
      responseContext: { statusCode: event.response?.status ?? 0, executedVersion: '$LATEST', functionError: 'Unhandled' },
      responsePayload: event.response === undefined ? null : safeJson(event.response.body),
    };
    const body = Buffer.from(JSON.stringify(payload));
    this.accept(`${event.id}-failure`, target, { kind: 'lambda', method: 'POST', path: '/', headers: [], body }).catch((err: unknown) => {
      this.#log.warn({ fn: event.fn, id: event.id, target, err: (err as Error).message }, 'the on-failure destination did not accept the event');
    });
  }

  /** The event is no longer unfinished; unless `keepsBytes`, its request's bytes are released. */
  #settle(event: AsyncEvent, keepsBytes: boolean): void {
    this.#unfinished -= 1;
    if (!keepsBytes) this.#bytes -= sizeOf(event.request);
    const timer = this.#timers.get(event.id);
    timer?.cancel();
    this.#timers.delete(event.id);
  }

  #save(event: AsyncEvent, withRequest: boolean): Promise<void> {
    return this.#o.store.save(event, withRequest).catch((err: unknown) => {
      this.#log.error({ id: event.id, fn: event.fn, err: (err as Error).message }, 'saving an async invocation failed');
    });
  }

  #trimFinished(): void {
    while (this.#finished.size > this.#o.resultRetentionMax || (this.#resultBytes > this.#o.maxBytes && this.#finished.size > 0)) {
      const oldest = this.#finished.keys().next().value as string;
      this.#forget(oldest, this.#finished);
    }
    this.#armSweep();
  }

  #forget(id: string, from: Map<string, number>): void {
    from.delete(id);
    const event = this.#events.get(id);
    if (event !== undefined && event.state === 'dead-lettered') this.#bytes -= sizeOf(event.request);
    else if (event !== undefined) this.#resultBytes -= event.response?.body.length ?? 0;
    this.#events.delete(id);
    this.#o.store.forget(id);
  }

  /** One timer for both retentions, armed only while something is kept. */
  #armSweep(): void {
    if (this.#sweepTimer !== undefined || this.#state !== 'open') return;
    if (this.#finished.size === 0 && this.#deadLetters.size === 0) return;
    this.#sweepTimer = this.#o.clock.setTimeout(this.#sweep, 1000);
  }

  readonly #sweep = (): void => {
    this.#sweepTimer = undefined;
    const now = this.#o.wallNow();
    for (const [id, at] of this.#finished) {
      if (now - at < this.#o.resultRetentionMs) break;
      this.#forget(id, this.#finished);
    }
    for (const [id, at] of this.#deadLetters) {
      if (now - at < this.#o.deadLetterRetentionMs) break;
      this.#forget(id, this.#deadLetters);
    }
    this.#armSweep();
  };
}

const EMPTY = Buffer.alloc(0);

/** A finished event needs its request's head only (shown, never sent again). */
function withoutBody(request: AsyncRequest): AsyncRequest {
  return { ...request, body: EMPTY };
}

function sizeOf(request: AsyncRequest): number {
  return request.body.length + EVENT_OVERHEAD_BYTES;
}

/** `ms` × [0.5, 1.5): retries of many events failing together spread out instead of arriving in step. */
function jitter(ms: number, random: Random): number {
  return Math.round(ms * (0.5 + random.next()));
}

function safeJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return body.toString('utf8');
  }
}
