import { Pool, errors, type Dispatcher } from 'undici';
import { compileInPlaceCheck } from '../api/in-place-check.ts';
import { pathOf, type Contract, type RequestOf, type ResponseOf } from '../api/contracts.ts';
import { BatonError } from '../core/errors.ts';
import { RpcUnsupportedError, type RpcConnection } from './rpc-client.ts';
import { clientTlsOptions, type ClientTls } from './tls.ts';

/**
 * A JSON RPC client for one peer daemon, over a keep-alive connection pool. Every call has a
 * deadline (`timeoutMs`, default the client's) and may take an AbortSignal. Errors from the peer
 * come back as the BatonError it sent; transport failures as ERR_UNAVAILABLE or ERR_TIMEOUT.
 */
export interface CallOptions {
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
  /** Set on the call that follows a redirect (307/308, from a follower to the leader): it follows no other. */
  readonly redirected?: boolean;
}

export interface JsonClientOptions {
  readonly timeoutMs?: number;
  /** Connections of the client's own pool (ignored with `dispatcher`). */
  readonly connections?: number;
  /**
   * A dispatcher shared with other clients (an undici Agent): clients of peers behind one origin
   * then share its connections. Its owner closes it; `close()`/`destroy()` leave it alone.
   */
  readonly dispatcher?: Dispatcher;
  /**
   * The peer's RPC stream connection (shared by the clients of its origin, closed by its owner):
   * JSON calls travel on it instead of as HTTP requests. A peer that does not serve the stream is
   * called over HTTP.
   */
  readonly rpc?: RpcConnection;
  /** The `authorization` header of every HTTP call (the RPC stream carries its own, see RpcConnection). */
  readonly authorization?: string;
  /** Headers sent with every HTTP call (e.g. `authorization`), also on the call that follows a redirect. */
  readonly headers?: Readonly<Record<string, string>>;
  /** An `https` peer of the cluster: the CA it must be signed by, and this daemon's certificate (ignored with `dispatcher`, which has its own). */
  readonly tls?: ClientTls | undefined;
}

export class JsonClient {
  readonly baseUrl: string;
  readonly #pool: Dispatcher;
  readonly #origin: string;
  readonly #isShared: boolean;
  /** The base URL's path without its trailing slash ('' for a bare origin), put before every call's path. */
  readonly #prefix: string;
  readonly #timeoutMs: number;
  readonly #rpc: RpcConnection | undefined;
  /** Headers of a call without a body and of one with a JSON body (made once: no object per call). */
  readonly #headers: Record<string, string> | undefined;
  readonly #jsonHeaders: Record<string, string>;
  readonly #tls: ClientTls | undefined;

  /**
   * `baseUrl` may carry a path (`http://host:port/w/3`): the pool connects to its origin and every
   * call's path is appended to that prefix (`/internal/v1/sandboxes` → `/w/3/internal/v1/sandboxes`).
   */
  constructor(baseUrl: string, options: JsonClientOptions = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    const url = new URL(this.baseUrl);
    this.#prefix = url.pathname.replace(/\/+$/, '');
    this.#origin = url.origin;
    this.#isShared = options.dispatcher !== undefined;
    this.#pool = options.dispatcher ?? new Pool(url.origin, {
      connections: options.connections ?? 8, keepAliveTimeout: 30_000, ...(options.tls === undefined ? {} : { connect: clientTlsOptions(options.tls) }),
    });
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#rpc = options.rpc;
    const headers = options.authorization === undefined ? options.headers : { ...options.headers, authorization: options.authorization };
    this.#headers = headers === undefined ? undefined : { ...headers };
    this.#jsonHeaders = { 'content-type': 'application/json', ...this.#headers };
    this.#tls = options.tls;
  }

  /**
   * Makes one internal call by its contract (src/api/contracts.ts): the path and method come from
   * the contract, and the answer is checked against its response schema (ERR_BAD_RESPONSE when it
   * does not match), so what the caller gets is what the type says.
   */
  invoke<C extends Contract>(c: C, request: RequestOf<C>, options?: CallOptions): Promise<ResponseOf<C>> {
    const answer = this.call<unknown>(c.method, pathOf(c, request), c.method === 'GET' ? undefined : request, options);
    return answer.then((body) => checkResponse(c, body));
  }

  get<T>(path: string, options?: CallOptions): Promise<T> {
    return this.call<T>('GET', path, undefined, options);
  }

  post<T>(path: string, body: unknown, options?: CallOptions): Promise<T> {
    return this.call<T>('POST', path, body, options);
  }

  call<T>(method: string, path: string, body: unknown, options: CallOptions = {}): Promise<T> {
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    const rpc = this.#rpc;
    // On an open stream the call cannot fall back to HTTP, so nothing here keeps `body` once it is
    // encoded: under load an answer can take long enough for a body kept until then to be promoted
    // to the old generation (demand reports, creation batches, routing deltas: bench/README.md,
    // churn, sixth round).
    if (rpc !== undefined && rpc.isOpen) {
      try {
        return rpc.call(method, this.#prefix + path, body, timeoutMs, options.signal) as Promise<T>;
      } catch (err) {
        // A body JSON cannot encode (a BigInt, a cycle): rejected, as from an async call.
        return Promise.reject(err);
      }
    }
    return this.#callWithFallback<T>(method, path, body, timeoutMs, options);
  }

  async #callWithFallback<T>(method: string, path: string, body: unknown, timeoutMs: number, options: CallOptions): Promise<T> {
    if (this.#rpc !== undefined && !this.#rpc.isUnsupported) {
      try {
        return await this.#rpc.call(method, this.#prefix + path, body, timeoutMs, options.signal) as T;
      } catch (err) {
        if (!(err instanceof RpcUnsupportedError)) throw err;
      }
    }
    const payload = body === undefined ? undefined : JSON.stringify(body);
    let res;
    try {
      // The deadline is undici's own headers and body timeouts (cheaper than a timer signal per
      // call); a caller's signal is passed through.
      res = await this.#pool.request({
        origin: this.#origin, method, path: this.#prefix + path, headersTimeout: timeoutMs, bodyTimeout: timeoutMs,
        ...(options.signal === undefined ? {} : { signal: options.signal }),
        ...(payload === undefined ? (this.#headers === undefined ? {} : { headers: this.#headers }) : { body: payload, headers: this.#jsonHeaders }),
      });
    } catch (err) {
      if (err instanceof errors.HeadersTimeoutError) throw new BatonError('ERR_TIMEOUT', `${method} ${this.baseUrl}${path} took longer than ${timeoutMs} ms`, { cause: err });
      throw new BatonError('ERR_UNAVAILABLE', `${method} ${this.baseUrl}${path} failed: ${(err as Error).message}`, { cause: err });
    }
    const location = res.headers['location'];
    if ((res.statusCode === 307 || res.statusCode === 308) && typeof location === 'string' && options.redirected !== true) {
      // A follower control plane sends management calls to its leader: the same call, once, there.
      await res.body.dump();
      const target = new URL(location, this.#origin);
      const there = new JsonClient(target.origin, { timeoutMs, tls: this.#tls, ...(this.#headers === undefined ? {} : { headers: this.#headers }) });
      try {
        return await there.call<T>(method, target.pathname + target.search, body, { ...options, redirected: true });
      } finally {
        there.destroy();
      }
    }
    const text = await res.body.text().catch((err: unknown) => {
      throw new BatonError('ERR_UNAVAILABLE', `${method} ${this.baseUrl}${path}: reading the response failed`, { cause: err });
    });
    const parsed: unknown = text.length === 0 ? undefined : safeParse(text);
    if (res.statusCode >= 400) {
      throw BatonError.fromBody(parsed, `${method} ${this.baseUrl}${path} answered ${res.statusCode}`);
    }
    return parsed as T;
  }

  /** Raw GET returning the body bytes (artifacts). */
  async getBytes(path: string, options: CallOptions & { maxBytes: number }): Promise<Buffer> {
    const timeout = AbortSignal.timeout(options.timeoutMs ?? this.#timeoutMs);
    const signal = options.signal === undefined ? timeout : AbortSignal.any([timeout, options.signal]);
    let res;
    try {
      res = await this.#pool.request({ origin: this.#origin, method: 'GET', path: this.#prefix + path, signal, ...(this.#headers === undefined ? {} : { headers: this.#headers }) });
    } catch (err) {
      throw new BatonError('ERR_UNAVAILABLE', `GET ${this.baseUrl}${path} failed: ${(err as Error).message}`, { cause: err });
    }
    if (res.statusCode >= 400) {
      const text = await res.body.text();
      throw BatonError.fromBody(safeParse(text), `GET ${this.baseUrl}${path} answered ${res.statusCode}`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length;
      if (size > options.maxBytes) {
        res.body.destroy();
        throw new BatonError('ERR_ARTIFACT_TOO_LARGE', `GET ${path}: body exceeds ${options.maxBytes} bytes`);
      }
      chunks.push(chunk as Buffer);
    }
    return Buffer.concat(chunks);
  }

  async close(): Promise<void> {
    if (!this.#isShared) await this.#pool.close();
  }

  destroy(): void {
    if (!this.#isShared) void this.#pool.destroy().catch(() => undefined);
  }
}

function checkResponse<C extends Contract>(c: C, body: unknown): ResponseOf<C> {
  const value = body ?? {};
  // The internal answers are strict schemas: checked in place, nothing copied (api/in-place-check.ts).
  if (compileInPlaceCheck(c.response)?.(value) === true) return value as ResponseOf<C>;
  const parsed = c.response.safeParse(value);
  if (parsed.success) return parsed.data as ResponseOf<C>;
  const issue = parsed.error.issues[0];
  const where = issue === undefined ? '' : `: ${issue.path.join('.') || '(body)'}: ${issue.message}`;
  throw new BatonError('ERR_BAD_RESPONSE', `${c.name} (${c.method} ${c.path}) answered a body its contract does not allow${where}`);
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
