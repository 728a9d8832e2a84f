/**
 * The open-loop runner: sends each invocation of a Plan at its scheduled time, whether or not
 * earlier ones have answered, and records per invocation when it was scheduled, sent and answered.
 *
 * Timing: one scheduler loop. Each turn sends every invocation that is due (at most
 * SEND_BATCH per turn, so responses are still read during a burst), then sleeps with `setTimeout`
 * until the next one is due. It never waits by spinning (`setImmediate` turns): on the shared cores
 * the benchmarks run on, a spinning sender takes a whole core from the system it measures. Node's
 * timers have millisecond resolution, so a send may be up to ~1–2 ms late; how late each was
 * (sentMs − scheduledMs) is recorded, and `sendLagP99Ms` in the result says whether the run is valid.
 *
 * Timeouts: every invocation has a deadline `timeoutMs` after its send. Sends are in order and the
 * timeout is one constant, so deadlines are in order too: one FIFO and one sweep every
 * SWEEP_INTERVAL_MS abort the expired ones (±10 ms), instead of a timer per invocation.
 *
 * Bounded: plans above `maxInvocations` or lasting past `maxDurationMs` are refused up front; the run
 * ends at the latest `timeoutMs` after the last send; `signal` stops it at once (in-flight
 * invocations are aborted and recorded as `ABORTED`).
 */
import { Pool } from 'undici';
import type { Dispatcher } from 'undici';
import { wallTimeMs } from '../core/clock.ts';
import { BatonError } from '../core/errors.ts';
import { percentiles } from './analysis.ts';
import type { InvocationRecords } from './records.ts';
import type { Plan } from './schedule.ts';

export type Routing = 'path' | 'host';

export interface RunOptions {
  /** The data plane, e.g. `http://127.0.0.1:8080` (a path prefix is kept). */
  readonly baseUrl: string;
  /** 'path' sends to `/fn/<name>/`; 'host' sends to `/` with `Host: <name>`. Default 'path'. */
  readonly routing?: Routing;
  /**
   * Connections in the pool (keep-alive, no pipelining). Default 4,096: an open loop must not wait
   * in the client, so the pool should hold every invocation in flight at the trace's busiest
   * moment (see `RunResult.connectionWaits`).
   */
  readonly connections?: number;
  /** Per-invocation deadline from its send, ms. Default 15,000. */
  readonly timeoutMs?: number;
  /** Refuse larger plans. Default 1,000,000. */
  readonly maxInvocations?: number;
  /** Refuse plans whose last send is later than this, ms. Default 1 hour. */
  readonly maxDurationMs?: number;
  /** Default 'GET'. */
  readonly method?: 'GET' | 'POST';
  /** Extra headers sent with every invocation. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Response bodies are read up to this size for ExecutionTime and error codes. Default 64 KiB. */
  readonly maxBodyBytes?: number;
  /** Stops the run: nothing more is sent and in-flight invocations are aborted. */
  readonly signal?: AbortSignal;
  /** Monotonic ms clock. Default `performance.now`. */
  readonly now?: () => number;
  /** Use this dispatcher instead of a pool of our own (it is not closed at the end). */
  readonly dispatcher?: Dispatcher;
  /** Also send INVITRO_HEADERS with every invocation (what Invitro's and Dirigent's trace functions read). Default false. */
  readonly invitroHeaders?: boolean;
  /** Called every `progressIntervalMs` while the run lasts, and once at its end. */
  readonly onProgress?: (progress: RunProgress) => void;
  /** Default 1,000 ms. */
  readonly progressIntervalMs?: number;
}

/** A run's state at one moment, for progress displays. */
export interface RunProgress {
  readonly elapsedMs: number;
  /** When the last invocation is due, ms from the start. */
  readonly totalMs: number;
  readonly planned: number;
  readonly sent: number;
  readonly inFlight: number;
  /** Invocations finished without a 2xx answer (or with an error code) so far. */
  readonly errors: number;
  /** Sends per second since the previous report. */
  readonly rate: number;
}

export type StopReason = 'completed' | 'aborted';

export interface RunResult extends InvocationRecords {
  /** Invocations in the plan (`length` is how many were sent). */
  readonly planned: number;
  readonly stopReason: StopReason;
  /** Wall-clock time of the run's start, ms since the epoch (for CSV timestamps). */
  readonly startWallMs: number;
  /** From the start to the last answer, ms. */
  readonly durationMs: number;
  /** p99 of sentMs − scheduledMs, ms: a run whose sender lagged is not valid. */
  readonly sendLagP99Ms: number;
  /** Most invocations outstanding at once. */
  readonly maxInFlight: number;
  /**
   * Invocations sent while every connection of the runner's own pool was busy: they waited in the
   * client for one to free up, and their latency includes that wait (0 with a dispatcher given).
   */
  readonly connectionWaits: number;
}

/** The pool's size unless told otherwise. */
export const DEFAULT_CONNECTIONS = 4096;

export const EXEC_MS_HEADER = 'x-baton-exec-ms';
/**
 * Invitro's HTTP headers, sent too so that Invitro's and Dirigent's trace functions read the
 * same request: `requested_cpu` carries the execution time in ms (the name is Invitro's),
 * `requested_memory` the MiB to touch, `function` the name, `workload` `trace`.
 */
export const INVITRO_HEADERS = { execMs: 'requested_cpu', memoryMiB: 'requested_memory', function: 'function', workload: 'workload' } as const;
/** Error codes the runner itself records. */
export const RUNNER_ERRORS = { timeout: 'TIMEOUT', aborted: 'ABORTED' } as const;

const SEND_BATCH = 1_000;
const SWEEP_INTERVAL_MS = 10;

/** Runs a plan to completion (or until `signal` aborts). Throws ERR_INVALID_REQUEST for refused plans. */
export async function runPlan(plan: Plan, options: RunOptions): Promise<RunResult> {
  const config = compileOptions(plan, options);
  const run = new Run(plan, config);
  return run.start();
}

interface RunConfig {
  readonly origin: string;
  readonly paths: readonly string[];
  readonly hosts: readonly (string | undefined)[];
  readonly method: 'GET' | 'POST';
  readonly headers: readonly string[];
  readonly timeoutMs: number;
  readonly maxBodyBytes: number;
  readonly connections: number;
  readonly signal: AbortSignal | undefined;
  readonly now: () => number;
  readonly dispatcher: Dispatcher | undefined;
  readonly onProgress: ((progress: RunProgress) => void) | undefined;
  readonly progressIntervalMs: number;
  readonly invitroHeaders: boolean;
}

function compileOptions(plan: Plan, options: RunOptions): RunConfig {
  const maxInvocations = options.maxInvocations ?? 1_000_000;
  const maxDurationMs = options.maxDurationMs ?? 3_600_000;
  const lastMs = plan.length === 0 ? 0 : plan.atMs[plan.length - 1] ?? 0;
  const refuse = (message: string, details: unknown): never => { throw new BatonError('ERR_INVALID_REQUEST', message, { details }); };
  if (plan.length > maxInvocations) refuse(`the plan has ${plan.length} invocations, more than maxInvocations ${maxInvocations}`, { length: plan.length, maxInvocations });
  if (lastMs > maxDurationMs) refuse(`the plan lasts ${lastMs} ms, more than maxDurationMs ${maxDurationMs}`, { lastMs, maxDurationMs });
  const connections = options.connections ?? DEFAULT_CONNECTIONS;
  if (!Number.isInteger(connections) || connections < 1 || connections > 65_536) refuse(`connections must be an integer in [1, 65536], got ${connections}`, { connections });
  const timeoutMs = options.timeoutMs ?? 15_000;
  if (!(timeoutMs > 0)) refuse(`timeoutMs must be positive, got ${timeoutMs}`, { timeoutMs });
  let url: URL;
  try {
    url = new URL(options.baseUrl);
  } catch {
    return refuse(`baseUrl "${options.baseUrl}" is not a URL`, { baseUrl: options.baseUrl });
  }
  const prefix = url.pathname.replace(/\/+$/, '');
  const isHost = (options.routing ?? 'path') === 'host';
  return {
    origin: url.origin,
    paths: plan.functions.map((fn) => (isHost ? `${prefix}/` : `${prefix}/fn/${encodeURIComponent(fn)}/`)),
    hosts: plan.functions.map((fn) => (isHost ? fn : undefined)),
    method: options.method ?? 'GET',
    headers: Object.entries(options.headers ?? {}).flat(),
    timeoutMs, connections,
    maxBodyBytes: options.maxBodyBytes ?? 65_536,
    signal: options.signal,
    now: options.now ?? (() => performance.now()),
    dispatcher: options.dispatcher,
    onProgress: options.onProgress,
    progressIntervalMs: options.progressIntervalMs ?? 1_000,
    invitroHeaders: options.invitroHeaders ?? false,
  };
}

/** One run's mutable state; used once. */
class Run {
  readonly #plan: Plan;
  readonly #config: RunConfig;
  readonly #dispatcher: Dispatcher;
  readonly #sentMs: Float64Array;
  readonly #endMs: Float64Array;
  readonly #status: Uint16Array;
  readonly #errorIndex: Uint16Array;
  readonly #execUs: Float64Array;
  readonly #errorCodes: string[] = [''];
  readonly #inFlight = new Map<number, Exchange>();
  /** Indexes in send order, for the deadline sweep; [#head, #next) may still be in flight. */
  #head = 0;
  #next = 0;
  #startMs = 0;
  #maxInFlight = 0;
  #connectionWaits = 0;
  #stopReason: StopReason = 'completed';
  #isStopped = false;
  #timer: NodeJS.Timeout | undefined;
  #immediate: NodeJS.Immediate | undefined;
  #sweeper: NodeJS.Timeout | undefined;
  #finish: (() => void) | undefined;
  #errors = 0;
  #lastProgressMs = 0;
  #lastProgressSent = 0;

  constructor(plan: Plan, config: RunConfig) {
    this.#plan = plan;
    this.#config = config;
    this.#dispatcher = config.dispatcher ?? new Pool(config.origin, {
      connections: config.connections, pipelining: 1, keepAliveTimeout: 30_000,
      headersTimeout: config.timeoutMs + 1_000, bodyTimeout: config.timeoutMs + 1_000, // backstops; our deadline comes first
    });
    const n = plan.length;
    this.#sentMs = new Float64Array(n).fill(Number.NaN);
    this.#endMs = new Float64Array(n).fill(Number.NaN);
    this.#status = new Uint16Array(n);
    this.#errorIndex = new Uint16Array(n);
    this.#execUs = new Float64Array(n).fill(Number.NaN);
  }

  async start(): Promise<RunResult> {
    const startWallMs = wallTimeMs();
    this.#startMs = this.#config.now();
    const onAbort = (): void => this.#stop();
    const signal = this.#config.signal;
    const done = new Promise<void>((resolve) => { this.#finish = resolve; });
    if (signal?.aborted === true) this.#stop();
    else {
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#sweeper = setInterval(() => this.#sweep(), SWEEP_INTERVAL_MS);
      this.#tick();
    }
    this.#maybeFinish();
    await done;
    signal?.removeEventListener('abort', onAbort);
    clearInterval(this.#sweeper);
    this.#reportProgress();
    const durationMs = this.#config.now() - this.#startMs;
    if (this.#config.dispatcher === undefined) await this.#dispatcher.close();
    return this.#result(startWallMs, durationMs);
  }

  #tick = (): void => {
    this.#timer = undefined;
    this.#immediate = undefined;
    if (this.#isStopped) return;
    const { atMs, length } = this.#plan;
    const elapsed = this.#config.now() - this.#startMs;
    let sent = 0;
    while (this.#next < length && (atMs[this.#next] ?? 0) <= elapsed && sent < SEND_BATCH) {
      this.#send(this.#next++);
      sent++;
    }
    if (this.#next >= length) return this.#maybeFinish();
    const waitMs = (atMs[this.#next] ?? 0) - (this.#config.now() - this.#startMs);
    // Due already (the batch limit stopped this turn): go on next turn; otherwise sleep.
    if (waitMs <= 0) this.#immediate = setImmediate(this.#tick);
    else this.#timer = setTimeout(this.#tick, Math.max(1, Math.floor(waitMs)));
  };

  #send(i: number): void {
    const fn = this.#plan.functionIndex[i] ?? 0;
    const host = this.#config.hosts[fn];
    const execMs = String(this.#plan.execMs[i] ?? 0);
    const headers = [...this.#config.headers, EXEC_MS_HEADER, execMs];
    if (this.#config.invitroHeaders) {
      headers.push(INVITRO_HEADERS.execMs, execMs, INVITRO_HEADERS.memoryMiB, String(this.#plan.memoryMiB[i] ?? 0),
        INVITRO_HEADERS.function, this.#plan.functions[fn] ?? '', INVITRO_HEADERS.workload, 'trace');
    }
    if (host !== undefined) headers.push('host', host);
    const exchange = new Exchange(this, i, this.#config.maxBodyBytes);
    this.#inFlight.set(i, exchange);
    this.#maxInFlight = Math.max(this.#maxInFlight, this.#inFlight.size);
    if (this.#config.dispatcher === undefined && this.#inFlight.size > this.#config.connections) this.#connectionWaits++;
    this.#sentMs[i] = this.#config.now() - this.#startMs;
    this.#dispatcher.dispatch({ origin: this.#config.origin, path: this.#config.paths[fn] ?? '/', method: this.#config.method, headers }, exchange);
  }

  /** An answer came in full (`text` undefined when its body was over maxBodyBytes). */
  complete(i: number, statusCode: number, text: string | undefined): void {
    if (!this.#inFlight.has(i)) return;
    this.#endMs[i] = this.#config.now() - this.#startMs;
    this.#status[i] = statusCode;
    const body = text !== undefined && text.length > 0 ? parseJson(text) : undefined;
    if (statusCode >= 400) {
      const code = (body as { error?: { code?: unknown } } | undefined)?.error?.code;
      this.#errorIndex[i] = this.#intern(typeof code === 'string' ? code : `HTTP_${statusCode}`);
      this.#errors++;
    } else {
      const executionUs = (body as { ExecutionTime?: unknown } | undefined)?.ExecutionTime;
      if (typeof executionUs === 'number' && Number.isFinite(executionUs)) this.#execUs[i] = executionUs;
    }
    this.#done(i);
  }

  /** The invocation failed: a transport error's code, or the runner's own TIMEOUT / ABORTED. */
  fail(i: number, code: string): void {
    if (!this.#inFlight.has(i)) return;
    this.#endMs[i] = this.#config.now() - this.#startMs;
    this.#status[i] = 0;
    this.#errorIndex[i] = this.#intern(code);
    this.#errors++;
    this.#done(i);
  }

  #done(i: number): void {
    this.#inFlight.delete(i);
    this.#maybeFinish();
  }

  #reportProgress(): void {
    const onProgress = this.#config.onProgress;
    if (onProgress === undefined) return;
    const elapsedMs = this.#config.now() - this.#startMs;
    const span = elapsedMs - this.#lastProgressMs;
    const rate = span > 0 ? ((this.#next - this.#lastProgressSent) * 1000) / span : 0;
    this.#lastProgressMs = elapsedMs;
    this.#lastProgressSent = this.#next;
    const { atMs, length } = this.#plan;
    onProgress({
      elapsedMs, totalMs: length === 0 ? 0 : atMs[length - 1] ?? 0, planned: length, sent: this.#next,
      inFlight: this.#inFlight.size, errors: this.#errors, rate,
    });
  }

  /** Aborts in-flight invocations past their deadline (the oldest come first), and reports progress when due. */
  #sweep(): void {
    if (this.#config.onProgress !== undefined && this.#config.now() - this.#startMs - this.#lastProgressMs >= this.#config.progressIntervalMs) this.#reportProgress();
    const deadline = this.#config.now() - this.#startMs - this.#config.timeoutMs;
    while (this.#head < this.#next) {
      const exchange = this.#inFlight.get(this.#head);
      if (exchange !== undefined) {
        if ((this.#sentMs[this.#head] ?? 0) > deadline) return;
        exchange.cancel(RUNNER_ERRORS.timeout);
      }
      this.#head++;
    }
  }

  #stop(): void {
    if (this.#isStopped) return;
    this.#isStopped = true;
    this.#stopReason = 'aborted';
    clearTimeout(this.#timer);
    if (this.#immediate !== undefined) clearImmediate(this.#immediate);
    for (const exchange of [...this.#inFlight.values()]) exchange.cancel(RUNNER_ERRORS.aborted);
  }

  #maybeFinish(): void {
    const isSendingOver = this.#isStopped || this.#next >= this.#plan.length;
    if (isSendingOver && this.#inFlight.size === 0) this.#finish?.();
  }

  #intern(code: string): number {
    const index = this.#errorCodes.indexOf(code);
    if (index >= 0) return index;
    return Math.min(this.#errorCodes.push(code) - 1, 0xffff);
  }

  #result(startWallMs: number, durationMs: number): RunResult {
    const sent = this.#next;
    const plan = this.#plan;
    const scheduledMs = plan.atMs.subarray(0, sent);
    const sentMs = this.#sentMs.subarray(0, sent);
    const lags = new Float64Array(sent);
    for (let i = 0; i < sent; i++) lags[i] = (sentMs[i] ?? 0) - (scheduledMs[i] ?? 0);
    return {
      length: sent, planned: plan.length, stopReason: this.#stopReason, startWallMs, durationMs,
      sendLagP99Ms: percentiles(lags, [99])[0] ?? Number.NaN, maxInFlight: this.#maxInFlight, connectionWaits: this.#connectionWaits,
      functions: plan.functions, functionIndex: plan.functionIndex.subarray(0, sent),
      requestedExecMs: plan.execMs.subarray(0, sent), minute: plan.minute.subarray(0, sent),
      scheduledMs, sentMs, endMs: this.#endMs.subarray(0, sent), status: this.#status.subarray(0, sent),
      errorIndex: this.#errorIndex.subarray(0, sent), errorCodes: this.#errorCodes, execUs: this.#execUs.subarray(0, sent),
    };
  }
}

/** Where an Exchange reports how its invocation ended (the Run; each index is reported once). */
interface ExchangeOwner {
  complete(i: number, statusCode: number, text: string | undefined): void;
  fail(i: number, code: string): void;
}

/**
 * One invocation on the wire, as an undici dispatch handler: the body is collected as it comes (up
 * to maxBodyBytes), with no stream and no AbortSignal per invocation. With `request()` those cost
 * the load generator about a third more CPU at 1,000–2,500 invocations/s (bench/README.md), on the
 * cores it shares with what it measures.
 */
class Exchange implements Dispatcher.DispatchHandler {
  readonly #run: ExchangeOwner;
  readonly #index: number;
  readonly #maxBodyBytes: number;
  #abort: ((err?: Error) => void) | undefined;
  #cancelled: string | undefined;
  #statusCode = 0;
  #chunks: Buffer[] = [];
  #size = 0;

  constructor(run: ExchangeOwner, index: number, maxBodyBytes: number) {
    this.#run = run;
    this.#index = index;
    this.#maxBodyBytes = maxBodyBytes;
  }

  /** Records `code` now and stops the request (at once if it is on a connection, else when it reaches one). */
  cancel(code: string): void {
    if (this.#cancelled !== undefined) return;
    this.#cancelled = code;
    this.#run.fail(this.#index, code);
    this.#abort?.(new Error(code));
  }

  onConnect(abort: (err?: Error) => void): void {
    if (this.#cancelled !== undefined) abort(new Error(this.#cancelled));
    else this.#abort = abort;
  }

  onHeaders(statusCode: number): boolean {
    if (statusCode >= 200) this.#statusCode = statusCode;
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.#size + chunk.length <= this.#maxBodyBytes) this.#chunks.push(chunk);
    this.#size += chunk.length;
    return true;
  }

  onComplete(): void {
    if (this.#cancelled !== undefined) return;
    const chunks = this.#chunks;
    let text: string | undefined;
    if (this.#size <= this.#maxBodyBytes) text = chunks.length === 1 ? (chunks[0] as Buffer).toString('utf8') : Buffer.concat(chunks).toString('utf8');
    this.#run.complete(this.#index, this.#statusCode, text);
  }

  onError(err: Error): void {
    if (this.#cancelled !== undefined) return;
    this.#run.fail(this.#index, transportErrorName(err));
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** `ECONNREFUSED`, `UND_ERR_SOCKET`, …: the error's code if it has one, else its name. */
function transportErrorName(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code !== '') return code;
  return err instanceof Error ? err.name : 'Error';
}
