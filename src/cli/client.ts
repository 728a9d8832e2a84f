import type { IncomingHttpHeaders } from 'node:http';
import { Agent, request } from 'undici';
import type { FunctionRecord, FunctionSpecInput } from '../api/function-spec.ts';
import type { QuotaRequest, QuotaUsage } from '../api/quotas.ts';
import type { CreateTokenRequest, TokenRecord } from '../api/tokens.ts';
import type { AuditEntry } from '../api/audit.ts';
import { BatonError } from '../core/errors.ts';
import { JsonClient, type CallOptions } from '../transport/json-client.ts';
import { readClientConfig, type ClientConfig } from './client-config.ts';
import { readFileSync } from 'node:fs';
import { clientTlsOptions } from '../transport/tls.ts';

/**
 * A typed client of the control plane's management REST API (`/v1/...`) and of the data plane's
 * invocation port. Every error is a BatonError: the one the daemon sent, or ERR_UNAVAILABLE /
 * ERR_TIMEOUT when it could not be reached in time.
 *
 * The response shapes below are what the CLI reads; they mirror the control plane's answers.
 */

export const DEFAULT_URL = 'http://127.0.0.1:9090';
export const DEFAULT_DATAPLANE_URL = 'http://127.0.0.1:8080';

export interface FunctionStatus {
  readonly desired: number;
  readonly ready: number;
  readonly starting: number;
  readonly draining: number;
  /** The scope of the quota that keeps the function below its desired scale, if one does. */
  readonly heldByQuota?: string;
}

export interface FunctionDetail extends FunctionRecord {
  readonly status: FunctionStatus;
  /** The quotas that bind the function, with their scope's usage. */
  readonly quotas?: readonly QuotaUsage[];
  /** The function's latest cold starts, oldest first (also of sandboxes that are gone). */
  readonly recentColdStarts?: readonly ColdStartRecord[];
  /** The function's latest sandbox failures, oldest first. */
  readonly recentFailures?: readonly SandboxFailureRecord[];
}

/** A sandbox that failed to start or stopped on its own. */
export interface SandboxFailureRecord {
  readonly sandboxId: string;
  readonly workerId: string;
  readonly at: string;
  /** `exit`, `signal`, `oom`, `start-timeout`, `start-error` or `unknown`. */
  readonly reason: string;
  readonly code?: string;
  readonly message?: string;
  readonly exitCode?: number | null;
  readonly signal?: string | null;
}

/**
 * Per-phase latency of one cold start, in milliseconds: on the worker, fetch (artifact), start
 * (spawn → process alive), ready (→ ready signal), total; and controlPlaneMs, from the control
 * plane's decision to create the sandbox until it learned the sandbox was ready.
 */
export interface ColdStartBreakdown {
  readonly fetchMs: number;
  readonly startMs: number;
  readonly readyMs: number;
  readonly totalMs: number;
  readonly controlPlaneMs?: number;
}

export interface ColdStartRecord {
  readonly sandboxId: string;
  readonly workerId: string;
  readonly at: string;
  readonly breakdown: ColdStartBreakdown;
}

export type SandboxState = 'starting' | 'ready' | 'draining';

export interface SandboxInfo {
  readonly sandboxId: string;
  readonly workerId: string;
  readonly generation: number;
  readonly state: SandboxState;
  readonly address?: string;
  readonly createdAt: string;
  readonly readyAt?: string;
  readonly breakdown?: ColdStartBreakdown;
}

export interface LogLine {
  /** An ISO-8601 string or epoch milliseconds. */
  readonly ts: string | number;
  readonly sandboxId: string;
  readonly stream: 'stdout' | 'stderr';
  readonly line: string;
}

export interface WorkerInfo {
  readonly workerId: string;
  readonly url: string;
  readonly state: 'ready' | 'unschedulable';
  readonly capacity: unknown;
  readonly allocated: unknown;
  readonly sandboxes: unknown;
  readonly lastHeartbeatAgoMs: number;
}

export interface DataplaneInfo {
  readonly dataplaneId: string;
  readonly url: string;
  readonly proxyUrl: string;
  readonly state: string;
  readonly routingVersion: number;
}

export interface InvokeRequest {
  /** Default GET, or POST when `data` is given. */
  readonly method?: string;
  /** Path (and query) after the function's prefix; default `/`. */
  readonly path?: string;
  readonly data?: Buffer | string | undefined;
  readonly headers?: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal;
}

export interface InvokeResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** An asynchronous invocation as the data plane shows it (see docs/async.md). */
export interface InvocationView {
  readonly id: string;
  readonly function: string;
  readonly state: 'queued' | 'running' | 'succeeded' | 'failed' | 'dead-lettered';
  readonly acceptedAt: string;
  readonly finishedAt?: string;
  readonly attempts: readonly { startedAt: string; finishedAt?: string; outcome?: string; status?: number; code?: string }[];
  readonly throttles: number;
  readonly redrives: number;
  readonly deadLetterReason?: string;
  readonly response?: { status: number; headers?: Record<string, string>; body?: string; bodyEncoding?: 'base64'; isTruncated?: boolean };
}

/** A token as the API lists it: its public id and settings, never the token or its hash. */
export type TokenView = Omit<TokenRecord, 'hash'>;

export interface BatonClientOptions {
  /** Control plane base URL; default {@link DEFAULT_URL}. */
  readonly url?: string;
  /** Data plane invocation base URL; default {@link DEFAULT_DATAPLANE_URL}. */
  readonly dataplaneUrl?: string;
  /** Deadline of each management call; default 10 000 ms. Uploads get 120 000 ms. */
  readonly timeoutMs?: number;
  /** API token sent as `Authorization: Bearer …` to the control plane and with invocations. */
  readonly token?: string | undefined;
  /** The CA (a PEM file) that `https` control planes and data planes must be signed by; default the system's CAs. */
  readonly ca?: string | undefined;
}

/**
 * Picks the URLs and the token the way every command does: flag, then environment (`BATON_URL`,
 * `BATON_DATAPLANE_URL`, `BATON_TOKEN`), then the client config `baton up` writes
 * (client-config.ts), then the defaults. The config's token is used only for the control plane
 * the config names: a token is never sent to a cluster it was not made by.
 */
export function resolveClientOptions(
  flags: { url?: string | undefined; dataplaneUrl?: string | undefined; token?: string | undefined; ca?: string | undefined },
  env: NodeJS.ProcessEnv,
  config: ClientConfig = readClientConfig(env),
): { url: string; dataplaneUrl: string; token: string | undefined; ca?: string } {
  const url = flags.url ?? nonEmpty(env['BATON_URL']) ?? config.url ?? DEFAULT_URL;
  const isConfigured = sameUrl(url, config.url ?? DEFAULT_URL);
  const ca = flags.ca ?? nonEmpty(env['BATON_CA']) ?? (isConfigured ? config.ca : undefined);
  return {
    url,
    dataplaneUrl: flags.dataplaneUrl ?? nonEmpty(env['BATON_DATAPLANE_URL']) ?? (isConfigured ? config.dataplaneUrl : undefined) ?? DEFAULT_DATAPLANE_URL,
    token: flags.token ?? nonEmpty(env['BATON_TOKEN']) ?? (isConfigured ? config.token : undefined),
    ...(ca === undefined ? {} : { ca }),
  };
}

function sameUrl(a: string, b: string): boolean {
  return a.replace(/\/+$/, '') === b.replace(/\/+$/, '');
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

const UPLOAD_TIMEOUT_MS = 120_000;

export class BatonClient {
  readonly url: string;
  readonly dataplaneUrl: string;
  readonly #json: JsonClient;
  readonly #agent: Agent;
  /** `{ authorization }` with a token, else empty. */
  readonly #auth: Readonly<Record<string, string>>;

  constructor(options: BatonClientOptions = {}) {
    this.url = checkUrl(options.url ?? DEFAULT_URL, 'control plane');
    this.dataplaneUrl = checkUrl(options.dataplaneUrl ?? DEFAULT_DATAPLANE_URL, 'data plane');
    this.#auth = options.token === undefined ? {} : { authorization: `Bearer ${options.token}` };
    const tls = options.ca === undefined ? undefined : { ca: readCa(options.ca) };
    this.#agent = new Agent({ keepAliveTimeout: 10_000, ...(tls === undefined ? {} : { connect: clientTlsOptions(tls) }) });
    this.#json = new JsonClient(this.url, {
      connections: 4, headers: this.#auth, tls, ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
    });
  }

  /** PUT /v1/artifacts: uploads a .tar.gz, answers its content digest. */
  async uploadArtifact(data: Buffer, options: CallOptions = {}): Promise<{ digest: string }> {
    const timeoutMs = options.timeoutMs ?? UPLOAD_TIMEOUT_MS;
    const upload = { body: data, headers: { ...this.#auth, 'content-type': 'application/gzip' }, timeoutMs, signal: options.signal };
    let res = await this.#raw('PUT', `${this.url}/v1/artifacts`, upload);
    // A follower control plane redirects to its leader: the same upload, once, there.
    const location = res.headers['location'];
    if (res.status === 307 && typeof location === 'string') res = await this.#raw('PUT', new URL(location, this.url).href, upload);
    const parsed = parseJson(res.body);
    if (res.status >= 400) throw BatonError.fromBody(parsed, `PUT ${this.url}/v1/artifacts answered ${res.status}`);
    return parsed as { digest: string };
  }

  /** POST /v1/functions; ERR_FUNCTION_EXISTS when the name is taken. */
  createFunction(spec: FunctionSpecInput, options?: CallOptions): Promise<FunctionRecord> {
    return this.#json.post<FunctionRecord>('/v1/functions', spec, options);
  }

  /** PUT /v1/functions/{name}: a new generation; ERR_FUNCTION_NOT_FOUND when absent. */
  updateFunction(name: string, spec: FunctionSpecInput, options?: CallOptions): Promise<FunctionRecord> {
    return this.#json.call<FunctionRecord>('PUT', fnPath(name), spec, options);
  }

  async listFunctions(options?: CallOptions): Promise<FunctionRecord[]> {
    return (await this.#json.get<{ functions: FunctionRecord[] }>('/v1/functions', options)).functions;
  }

  getFunction(name: string, options?: CallOptions): Promise<FunctionDetail> {
    return this.#json.get<FunctionDetail>(fnPath(name), options);
  }

  deleteFunction(name: string, options?: CallOptions): Promise<{ deleted: string }> {
    return this.#json.call<{ deleted: string }>('DELETE', fnPath(name), undefined, options);
  }

  async listSandboxes(name: string, options?: CallOptions): Promise<SandboxInfo[]> {
    return (await this.#json.get<{ sandboxes: SandboxInfo[] }>(`${fnPath(name)}/sandboxes`, options)).sandboxes;
  }

  /** The last `tail` log lines of the function's sandboxes (the control plane's default when omitted). */
  async getLogs(name: string, query: { tail?: number } = {}, options?: CallOptions): Promise<LogLine[]> {
    const qs = query.tail === undefined ? '' : `?tail=${query.tail}`;
    return (await this.#json.get<{ lines: LogLine[] }>(`${fnPath(name)}/logs${qs}`, options)).lines;
  }

  async listWorkers(options?: CallOptions): Promise<WorkerInfo[]> {
    return (await this.#json.get<{ workers: WorkerInfo[] }>('/v1/workers', options)).workers;
  }

  async listDataplanes(options?: CallOptions): Promise<DataplaneInfo[]> {
    return (await this.#json.get<{ dataplanes: DataplaneInfo[] }>('/v1/dataplanes', options)).dataplanes;
  }

  /** POST /v1/tokens (admin): the answer holds the token itself, the one time it is shown. */
  createToken(request: CreateTokenRequest, options?: CallOptions): Promise<TokenView & { token: string }> {
    return this.#json.post<TokenView & { token: string }>('/v1/tokens', request, options);
  }

  /** GET /v1/tokens (admin): every token, revoked ones included, never a secret or a hash. */
  async listTokens(options?: CallOptions): Promise<TokenView[]> {
    return (await this.#json.get<{ tokens: TokenView[] }>('/v1/tokens', options)).tokens;
  }

  /** DELETE /v1/tokens/{id} (admin); ERR_TOKEN_NOT_FOUND when no token has that id. */
  revokeToken(id: string, options?: CallOptions): Promise<TokenView> {
    return this.#json.call<TokenView>('DELETE', `/v1/tokens/${encodeURIComponent(id)}`, undefined, options);
  }

  /** GET /v1/audit (admin): entries after `after` (a `seq`), oldest first; the newest `limit` when `after` is 0. */
  /** PUT /v1/quotas/{scope}: sets (creates or replaces) a quota; admin. */
  setQuota(scope: string, request: QuotaRequest, options?: CallOptions): Promise<QuotaUsage> {
    return this.#json.call<QuotaUsage>('PUT', `/v1/quotas/${encodeURIComponent(scope)}`, request, options);
  }

  async listQuotas(options?: CallOptions): Promise<QuotaUsage[]> {
    return (await this.#json.get<{ quotas: QuotaUsage[] }>('/v1/quotas', options)).quotas;
  }

  deleteQuota(scope: string, options?: CallOptions): Promise<{ deleted: string }> {
    return this.#json.call<{ deleted: string }>('DELETE', `/v1/quotas/${encodeURIComponent(scope)}`, undefined, options);
  }

  async readAudit(query: { after?: number; limit?: number } = {}, options?: CallOptions): Promise<AuditEntry[]> {
    const qs = new URLSearchParams({ after: String(query.after ?? 0), limit: String(query.limit ?? 100) });
    return (await this.#json.get<{ entries: AuditEntry[] }>(`/v1/audit?${qs.toString()}`, options)).entries;
  }

  /**
   * Sends one invocation to `/fn/{name}{path}` on the data plane and returns the function's answer
   * whatever its status (a non-2xx status is not thrown). No deadline unless `signal` sets one:
   * a cold start may take long, and the data plane enforces the function's `timeoutMs`.
   */
  invoke(name: string, req: InvokeRequest = {}): Promise<InvokeResponse> {
    const path = req.path ?? '/';
    if (!path.startsWith('/')) throw new BatonError('ERR_INVALID_REQUEST', `invocation path must start with '/', got '${path}'`);
    const method = (req.method ?? (req.data === undefined ? 'GET' : 'POST')).toUpperCase();
    return this.#raw(method, `${this.dataplaneUrl}/fn/${encodeURIComponent(name)}${path}`, {
      body: req.data, headers: { ...this.#auth, ...req.headers }, signal: req.signal,
    });
  }

  /** GET /v1/invocations/{id} on the data plane (which owns the async queue); ERR_INVOCATION_NOT_FOUND when unknown. */
  async getInvocation(id: string, options: CallOptions = {}): Promise<InvocationView> {
    return this.#dataplaneJson<InvocationView>('GET', `/v1/invocations/${encodeURIComponent(id)}`, undefined, options);
  }

  /** GET /v1/invocations?function=…&state=…&limit=… on the data plane, newest first. */
  async listInvocations(query: { function?: string; state?: string; limit?: number }, options: CallOptions = {}): Promise<InvocationView[]> {
    const qs = new URLSearchParams();
    if (query.function !== undefined) qs.set('function', query.function);
    if (query.state !== undefined) qs.set('state', query.state);
    if (query.limit !== undefined) qs.set('limit', String(query.limit));
    return (await this.#dataplaneJson<{ invocations: InvocationView[] }>('GET', `/v1/invocations?${qs.toString()}`, undefined, options)).invocations;
  }

  /** POST /v1/invocations/redrive: queues the function's dead letters (all, or `ids`) again. */
  async redrive(fn: string, ids: readonly string[] | undefined, options: CallOptions = {}): Promise<string[]> {
    const body = ids === undefined ? { function: fn } : { function: fn, ids };
    return (await this.#dataplaneJson<{ redriven: string[] }>('POST', '/v1/invocations/redrive', body, options)).redriven;
  }

  async #dataplaneJson<T>(method: string, path: string, body: unknown, options: CallOptions): Promise<T> {
    const res = await this.#raw(method, `${this.dataplaneUrl}${path}`, {
      body: body === undefined ? undefined : JSON.stringify(body),
      headers: body === undefined ? this.#auth : { ...this.#auth, 'content-type': 'application/json' },
      timeoutMs: options.timeoutMs ?? 10_000,
      signal: options.signal,
    });
    const parsed = parseJson(res.body);
    if (res.status >= 400) throw BatonError.fromBody(parsed, `${method} ${this.dataplaneUrl}${path} answered ${res.status}`);
    return parsed as T;
  }

  async close(): Promise<void> {
    await Promise.all([this.#json.close(), this.#agent.close()]);
  }

  async #raw(
    method: string,
    url: string,
    options: { body: Buffer | string | undefined; headers: Readonly<Record<string, string>>; timeoutMs?: number; signal: AbortSignal | undefined },
  ): Promise<InvokeResponse> {
    const signals = [options.signal, options.timeoutMs === undefined ? undefined : AbortSignal.timeout(options.timeoutMs)]
      .filter((s): s is AbortSignal => s !== undefined);
    const signal = signals.length === 0 ? undefined : AbortSignal.any(signals);
    try {
      const res = await request(url, {
        method: method as 'GET', dispatcher: this.#agent, headers: options.headers,
        ...(options.body === undefined ? {} : { body: options.body }),
        ...(signal === undefined ? {} : { signal }),
      });
      const body = Buffer.from(await res.body.arrayBuffer());
      return { status: res.statusCode, headers: res.headers, body };
    } catch (err) {
      if (err instanceof BatonError) throw err;
      const isTimeout = signal?.aborted === true && options.signal?.aborted !== true;
      if (isTimeout) throw new BatonError('ERR_TIMEOUT', `${method} ${url} took longer than ${options.timeoutMs} ms`, { cause: err });
      throw new BatonError('ERR_UNAVAILABLE', `${method} ${url} failed: ${(err as Error).message}`, { cause: err });
    }
  }
}

function fnPath(name: string): string {
  return `/v1/functions/${encodeURIComponent(name)}`;
}

function checkUrl(url: string, what: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new BatonError('ERR_INVALID_REQUEST', `${what} URL '${url}' is not a valid URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new BatonError('ERR_INVALID_REQUEST', `${what} URL '${url}' must be http:// or https://`);
  }
  return url.replace(/\/+$/, '');
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}

/** The CA file of `--ca` / `BATON_CA` / the client config; one that cannot be read is ERR_INVALID_REQUEST. */
function readCa(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new BatonError('ERR_INVALID_REQUEST', `--ca: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}
