import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Contract, ParsedRequestOf, ResponseOf } from '../api/contracts.ts';
import { parseOrThrow } from '../api/validate.ts';
import { BatonError, toBatonError } from '../core/errors.ts';
import type { RpcReply } from './rpc-server.ts';

/**
 * A small method + path router for the JSON APIs between and around the daemons. Handlers return
 * a `Reply` (or a plain value, sent as 200 JSON) or throw a BatonError, which is sent as
 * `{error:{code,message,details}}` with the code's status.
 */

export interface RouteContext {
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  /** The request's headers (none for a call on the RPC stream). */
  readonly headers: IncomingHttpHeaders;
  /** Reads and parses the JSON body (bounded by the router's `maxBodyBytes`). */
  json(): Promise<unknown>;
  /** Reads the raw body (bounded by `limitBytes`, default the router's `maxBodyBytes`); HTTP only. */
  body(limitBytes?: number): Promise<Buffer>;
}

/** Where an error was answered, for the router's `onError`. */
export interface RequestLine {
  readonly method: string;
  readonly path: string;
}

/** A reply with an explicit status; `body` undefined sends no body. `raw` sends bytes as-is. */
export interface Reply {
  readonly status: number;
  readonly body?: unknown;
  readonly raw?: { readonly data: Buffer | string; readonly contentType: string };
}

export type Handler = (ctx: RouteContext) => Promise<Reply | unknown> | Reply | unknown;

interface Route {
  readonly method: string;
  readonly segments: readonly string[];
  readonly handler: Handler;
}

export function reply(status: number, body?: unknown): Reply {
  return body === undefined ? { status } : { status, body };
}

export class JsonRouter {
  readonly #routes: Route[] = [];
  readonly #maxBodyBytes: number;
  #onError: ((err: BatonError, where: RequestLine) => void) | undefined;

  constructor(options: { maxBodyBytes?: number; onError?: (err: BatonError, where: RequestLine) => void } = {}) {
    this.#maxBodyBytes = options.maxBodyBytes ?? 16 * 1024 * 1024;
    this.#onError = options.onError;
  }

  /** `path` segments starting with `:` are parameters, e.g. `/v1/functions/:name`. */
  on(method: string, path: string, handler: Handler): this {
    this.#routes.push({ method, segments: path.split('/').filter(Boolean), handler });
    return this;
  }

  /**
   * Serves one internal call by its contract (src/api/contracts.ts): the request — the JSON body, or
   * for a GET the path parameters and the query — is parsed with the contract's schema before the
   * handler sees it (a bad one is 400 ERR_INVALID_REQUEST naming the field), and the handler's
   * answer must be the contract's response (or a Reply carrying it).
   */
  serve<C extends Contract>(c: C, handler: (request: ParsedRequestOf<C>, ctx: RouteContext) => Promise<ResponseOf<C> | Reply> | ResponseOf<C> | Reply): this {
    return this.on(c.method, c.path, async (ctx) => {
      const raw = c.method === 'GET' ? { ...Object.fromEntries(ctx.query), ...ctx.params } : await ctx.json();
      const request = parseOrThrow(c.request, raw, 'ERR_INVALID_REQUEST', c.name) as ParsedRequestOf<C>;
      return handler(request, ctx);
    });
  }

  /** Node's `request` listener. */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    this.#dispatch(req, res).catch((err: unknown) => this.#sendError(res, toBatonError(err), req));
  };

  /**
   * Runs a call that arrived on the RPC stream: the same route and handler as over HTTP, with the
   * already-parsed body. Routes that answer raw bytes or read a raw body are HTTP only.
   */
  readonly dispatch = async (method: string, path: string, body: unknown): Promise<RpcReply> => {
    const url = new URL(path, 'http://localhost');
    try {
      const found = this.#match(method, url.pathname);
      if (found === undefined) throw this.#noRoute(method, url.pathname);
      const ctx: RouteContext = {
        params: found.params, query: url.searchParams, headers: {},
        json: () => Promise.resolve(body ?? {}),
        body: () => Promise.reject(new BatonError('ERR_INVALID_REQUEST', `${method} ${url.pathname} takes a raw body: call it over HTTP`)),
      };
      const result = await found.route.handler(ctx);
      if (!isReply(result)) return { status: 200, body: result ?? {} };
      if (result.raw !== undefined) throw new BatonError('ERR_INVALID_REQUEST', `${method} ${url.pathname} answers raw bytes: call it over HTTP`);
      return { status: result.status, body: result.body };
    } catch (err) {
      const e = toBatonError(err);
      this.#onError?.(e, { method, path });
      return { status: e.status, body: e.toBody() };
    }
  };

  async #dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const found = this.#match(req.method ?? 'GET', url.pathname);
    if (found === undefined) {
      req.resume();
      throw this.#noRoute(req.method ?? 'GET', url.pathname);
    }
    const body = (limit?: number) => readBody(req, limit ?? this.#maxBodyBytes);
    const ctx: RouteContext = {
      params: found.params, query: url.searchParams, headers: req.headers, body,
      json: async () => parseJson(await body()),
    };
    let result: unknown;
    try {
      result = await found.route.handler(ctx);
    } catch (err) {
      this.#sendError(res, toBatonError(err), req);
      return;
    }
    sendResult(res, result);
  }

  /** 405 ERR_METHOD_NOT_ALLOWED naming the methods the path takes, or 404 ERR_NOT_FOUND when none does. */
  #noRoute(method: string, pathname: string): BatonError {
    const parts = pathname.split('/').filter(Boolean);
    const allow = [...new Set(this.#routes.filter((route) => matchSegments(route.segments, parts) !== undefined).map((route) => route.method))];
    if (allow.length === 0) return new BatonError('ERR_NOT_FOUND', `no route for ${method} ${pathname}`);
    return new BatonError('ERR_METHOD_NOT_ALLOWED', `${pathname} does not take ${method} (it takes ${allow.join(', ')})`, { details: { allow } });
  }

  #match(method: string, pathname: string): { route: Route; params: Record<string, string> } | undefined {
    const parts = pathname.split('/').filter(Boolean);
    for (const route of this.#routes) {
      if (route.method !== method) continue;
      const params = matchSegments(route.segments, parts);
      if (params !== undefined) return { route, params };
    }
    return undefined;
  }

  #sendError(res: ServerResponse, err: BatonError, req: IncomingMessage): void {
    this.#onError?.(err, { method: req.method ?? 'GET', path: req.url ?? '/' });
    if (res.headersSent) {
      res.destroy(err);
      return;
    }
    sendJson(res, err.status, err.toBody(), errorHeaders(err));
  }
}

/** A route's path parameters when its segments match the path's `parts`, else undefined. */
function matchSegments(segments: readonly string[], parts: readonly string[]): Record<string, string> | undefined {
  if (segments.length !== parts.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < parts.length; i++) {
    const segment = segments[i] as string;
    const part = parts[i] as string;
    if (segment.startsWith(':')) params[segment.slice(1)] = decodeURIComponent(part);
    else if (segment !== part) return undefined;
  }
  return params;
}

/** `WWW-Authenticate` on a 401 (RFC 9110 §11.6.1), `Allow` on a 405 (§15.5.6), `Retry-After` on a 429. */
function errorHeaders(err: BatonError): Record<string, string> | undefined {
  if (err.code === 'ERR_UNAUTHENTICATED') return { 'www-authenticate': 'Bearer' };
  if (err.code === 'ERR_METHOD_NOT_ALLOWED') return { allow: ((err.details as { allow?: string[] } | undefined)?.allow ?? []).join(', ') };
  if (err.code !== 'ERR_TOO_MANY_REQUESTS') return undefined;
  const seconds = (err.details as { retryAfterSeconds?: unknown } | undefined)?.retryAfterSeconds;
  return { 'retry-after': String(typeof seconds === 'number' && seconds >= 1 ? Math.ceil(seconds) : 1) };
}

function sendResult(res: ServerResponse, result: unknown): void {
  if (isReply(result)) {
    if (result.raw !== undefined) {
      res.writeHead(result.status, { 'content-type': result.raw.contentType, 'content-length': Buffer.byteLength(result.raw.data) });
      res.end(result.raw.data);
    } else if (result.body === undefined) {
      res.writeHead(result.status, { 'content-length': 0 }).end();
    } else {
      sendJson(res, result.status, result.body);
    }
    return;
  }
  sendJson(res, 200, result ?? {});
}

function isReply(value: unknown): value is Reply {
  return typeof value === 'object' && value !== null && 'status' in value && typeof (value as Reply).status === 'number'
    && Object.keys(value).every((k) => k === 'status' || k === 'body' || k === 'raw');
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers?: Record<string, string>): void {
  const data = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
  res.end(data);
}

export function readBody(req: IncomingMessage, limitBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limitBytes) {
      req.resume();
      reject(new BatonError('ERR_PAYLOAD_TOO_LARGE', `body of ${declared} bytes exceeds the limit of ${limitBytes}`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limitBytes) {
        req.removeAllListeners('data');
        req.resume();
        reject(new BatonError('ERR_PAYLOAD_TOO_LARGE', `body exceeds the limit of ${limitBytes} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0] as Buffer : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function parseJson(buf: Buffer): unknown {
  if (buf.length === 0) return {};
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch (err) {
    throw new BatonError('ERR_INVALID_REQUEST', 'body is not valid JSON', { cause: err });
  }
}
