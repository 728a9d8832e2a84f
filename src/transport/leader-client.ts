import type { Contract, RequestOf, ResponseOf } from '../api/contracts.ts';
import { toBatonError } from '../core/errors.ts';
import { JsonClient, type CallOptions } from './json-client.ts';
import type { TlsMaterial } from './tls.ts';
import { RpcConnection } from './rpc-client.ts';

export interface LeaderClientOptions {
  /** The control planes' base URLs, any of them (at least one): calls go to whichever leads. */
  readonly urls: readonly string[];
  readonly timeoutMs?: number;
  /** Connections of the pool to each control plane. */
  readonly connections?: number;
  /** Calls travel on an RPC stream connection to each control plane (see JsonClient). */
  readonly isRpc?: boolean;
  /** The credential of every call (the cluster's join key): on each HTTP request and at the RPC upgrade. */
  readonly authorization?: string;
  /** `https` control planes: the cluster CA and this daemon's certificate. */
  readonly tls?: TlsMaterial | undefined;
}

/**
 * A worker's or a data plane's client of the control planes of a cluster, of which one leads and
 * the others answer internal calls with 503 ERR_NOT_LEADER naming the leader (`details.leaderUrl`).
 * Calls go to the control plane believed to lead:
 *
 *   ERR_NOT_LEADER with a leader named  → follow it (a URL not in the list joins it) and call again
 *   ERR_NOT_LEADER with none elected yet → the next control plane of the list, and call again
 *   unreachable or timed out            → the next control plane for the next call; the error is
 *                                          the caller's (its own retries reach the next one)
 *
 * Each call is tried at most once more than there are control planes known, so a cluster with no
 * leader answers at once with ERR_NOT_LEADER (retryable) instead of a loop. With one URL this is
 * one JsonClient that also follows a leader hint.
 */
export class LeaderClient {
  readonly #o: LeaderClientOptions;
  readonly #urls: string[];
  readonly #clients = new Map<string, { json: JsonClient; rpc: RpcConnection | undefined }>();
  #leader: string;

  constructor(options: LeaderClientOptions) {
    if (options.urls.length === 0) throw new Error('a leader client needs at least one control-plane URL');
    this.#o = options;
    this.#urls = [...new Set(options.urls.map(trimSlash))];
    this.#leader = this.#urls[0] as string;
  }

  /** The control plane the next call goes to. */
  get leaderUrl(): string {
    return this.#leader;
  }

  invoke<C extends Contract>(c: C, request: RequestOf<C>, options?: CallOptions): Promise<ResponseOf<C>> {
    return this.#withLeader((client) => client.invoke(c, request, options), options, this.#urls.length + 1);
  }

  /** Raw GET of body bytes (artifacts), from the leader. */
  getBytes(path: string, options: CallOptions & { maxBytes: number }): Promise<Buffer> {
    return this.#withLeader((client) => client.getBytes(path, options), options, this.#urls.length + 1);
  }

  async close(): Promise<void> {
    const clients = [...this.#clients.values()];
    this.#clients.clear();
    for (const { rpc } of clients) rpc?.close();
    await Promise.all(clients.map(({ json }) => json.close()));
  }

  #withLeader<T>(call: (client: JsonClient) => Promise<T>, options: CallOptions | undefined, attempts: number): Promise<T> {
    const url = this.#leader;
    return call(this.#clientOf(url)).catch((err: unknown) => {
      const error = toBatonError(err);
      if (options?.signal?.aborted === true) throw err;
      if (error.code === 'ERR_NOT_LEADER') {
        const hint = leaderUrlOf(error.details);
        if (hint !== undefined && hint !== url) this.#follow(hint);
        else this.#next(url);
        if (attempts > 1) return this.#withLeader(call, options, attempts - 1);
        throw err;
      }
      if (error.code === 'ERR_UNAVAILABLE' || error.code === 'ERR_TIMEOUT') this.#next(url);
      throw err;
    });
  }

  #follow(url: string): void {
    if (!this.#urls.includes(url)) this.#urls.push(url);
    this.#leader = url;
  }

  /** Moves on from `url` (unless another call already did). */
  #next(url: string): void {
    if (this.#leader !== url) return;
    const index = this.#urls.indexOf(url);
    this.#leader = this.#urls[(index + 1) % this.#urls.length] as string;
  }

  #clientOf(url: string): JsonClient {
    let entry = this.#clients.get(url);
    if (entry === undefined) {
      const auth = this.#o.authorization === undefined ? {} : { authorization: this.#o.authorization };
      const rpc = this.#o.isRpc === true ? new RpcConnection(url, { ...auth, tls: this.#o.tls }) : undefined;
      const json = new JsonClient(url, {
        tls: this.#o.tls,
        ...(this.#o.timeoutMs === undefined ? {} : { timeoutMs: this.#o.timeoutMs }),
        ...(this.#o.connections === undefined ? {} : { connections: this.#o.connections }),
        ...(rpc === undefined ? {} : { rpc }), ...auth,
      });
      entry = { json, rpc };
      this.#clients.set(url, entry);
    }
    return entry.json;
  }
}

function leaderUrlOf(details: unknown): string | undefined {
  if (typeof details !== 'object' || details === null) return undefined;
  const url = (details as { leaderUrl?: unknown }).leaderUrl;
  return typeof url === 'string' && /^https?:\/\/\S+$/.test(url) ? trimSlash(url) : undefined;
}

function trimSlash(url: string): string {
  return url.replace(/\/+$/, '');
}
