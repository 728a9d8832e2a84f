import type { IncomingMessage, ServerResponse } from 'node:http';
import { BatonError, toBatonError } from '../../core/errors.ts';
import type { ScannedRequest } from '../forward-headers.ts';
import { sendError } from '../invocation.ts';
import type { FunctionState } from '../proxy.ts';
import { readBody } from '../read-body.ts';
import type { Route } from '../route.ts';
import type { AsyncEvent, AsyncState } from './async-event.ts';
import type { AsyncInvocations } from './async-invocations.ts';

export const INVOCATIONS_PREFIX = '/v1/invocations';
const STATES: readonly AsyncState[] = ['queued', 'running', 'succeeded', 'failed', 'dead-lettered'];
/** Headers not stored with an event: the proxy adds its own x-forwarded-* on delivery, and Host would re-route it. */
const NOT_STORED = new Set(['host', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'content-length', 'x-request-id', 'x-baton-invocation-id', 'x-baton-attempt']);

export interface AsyncApiOptions {
  readonly invocations: AsyncInvocations;
  readonly payloadMaxBytes: number;
  readonly newId: () => string;
  /**
   * The refusal for a caller (its `Authorization`) of a function's invocations, for functions with
   * `auth: token` (as invoking it); undefined: allowed. Default: everything allowed.
   */
  readonly authorize?: (fn: string, authorization: string | undefined) => BatonError | undefined;
}

/**
 * The asynchronous side of the invocation port (the data plane owns the queue, so it serves
 * this; the CLI asks the data plane):
 *
 *   any invocation + `X-Baton-Invocation-Type: Event` | `Prefer: respond-async`
 *        → 202 `{id}`, `x-baton-invocation-id`, `Location: /v1/invocations/{id}` once durable
 *   GET  /v1/invocations/{id}                                → the invocation (state, attempts, response)
 *   GET  /v1/invocations?function=F[&state=S][&limit=N]      → `{invocations: [...]}` newest first, without responses
 *   POST /v1/invocations/redrive `{function, ids?}`          → `{redriven: [...]}` dead letters queued again
 *
 * These paths are served only when the Host header names no function (otherwise they are the
 * function's own paths). The invocations of a function with `auth: token` are shown, listed and
 * redriven only for a token that may invoke it (`authorize`).
 */
export class AsyncApi {
  readonly #o: AsyncApiOptions;

  constructor(options: AsyncApiOptions) {
    this.#o = options;
  }

  /** An asynchronous invocation of `route.fn`: read the body, make it durable, answer 202. */
  accept(req: IncomingMessage, res: ServerResponse, route: Route<FunctionState>, scanned: ScannedRequest): void {
    const id = this.#o.newId();
    const headers: string[] = [];
    for (let i = 0; i + 1 < scanned.headers.length; i += 2) {
      const name = scanned.headers[i] as string;
      if (!NOT_STORED.has(name.toLowerCase())) headers.push(name, scanned.headers[i + 1] as string);
    }
    readBody(req, this.#o.payloadMaxBytes)
      .then((body) => this.#o.invocations.accept(id, route.fn.name, { kind: 'http', method: req.method ?? 'GET', path: route.path, headers, body }))
      .then(() => sendJson(res, 202, { id, function: route.fn.name, state: this.#o.invocations.get(id)?.state ?? 'queued' }, { 'x-baton-invocation-id': id, location: `${INVOCATIONS_PREFIX}/${id}` }))
      .catch((err: unknown) => {
        res.shouldKeepAlive = false;
        sendError(res, toBatonError(err));
      });
  }

  /** `/v1/invocations…`; false for other paths. */
  handle(req: IncomingMessage, res: ServerResponse, url: string): boolean {
    if (!(url === INVOCATIONS_PREFIX || url.startsWith(`${INVOCATIONS_PREFIX}/`) || url.startsWith(`${INVOCATIONS_PREFIX}?`))) return false;
    this.#serve(req, res, new URL(url, 'http://local')).catch((err: unknown) => sendError(res, toBatonError(err)));
    return true;
  }

  async #serve(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const rest = url.pathname.slice(INVOCATIONS_PREFIX.length);
    const invocations = this.#o.invocations;
    const authorization = req.headers.authorization;
    const refusal = (fn: string): BatonError | undefined => this.#o.authorize?.(fn, authorization);
    if (req.method === 'POST' && rest === '/redrive') {
      const body = parseRedrive(await readBody(req, 1 << 20));
      const refused = refusal(body.function);
      if (refused !== undefined) throw refused;
      sendJson(res, 200, { redriven: invocations.redrive(body.function, body.ids) });
      return;
    }
    if (req.method !== 'GET') throw new BatonError('ERR_NOT_FOUND', `no route ${req.method ?? ''} ${url.pathname}`);
    if (rest === '' || rest === '/') {
      const fn = url.searchParams.get('function') ?? undefined;
      const state = url.searchParams.get('state') ?? undefined;
      if (state !== undefined && !STATES.includes(state as AsyncState)) throw new BatonError('ERR_INVALID_REQUEST', `state must be one of ${STATES.join(', ')} (got '${state}')`);
      const limit = Number(url.searchParams.get('limit') ?? 100);
      if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new BatonError('ERR_INVALID_REQUEST', 'limit must be an integer from 1 to 10000');
      const refused = fn === undefined ? undefined : refusal(fn);
      if (refused !== undefined) throw refused;
      // Without a function named, those of functions the caller may not invoke are left out.
      const list = invocations.list(fn, state as AsyncState | undefined, limit).filter((e) => fn !== undefined || refusal(e.fn) === undefined);
      sendJson(res, 200, { invocations: list.map((e) => toView(e, false)) });
      return;
    }
    const id = decodeURIComponent(rest.slice(1));
    const event = invocations.get(id);
    if (event === undefined) throw new BatonError('ERR_INVOCATION_NOT_FOUND', `no invocation '${id}' is known here (never accepted, or past its retention)`);
    const refused = refusal(event.fn);
    if (refused !== undefined) throw refused;
    sendJson(res, 200, toView(event, true));
  }
}

function parseRedrive(body: Buffer): { function: string; ids?: string[] } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new BatonError('ERR_INVALID_REQUEST', 'the body must be JSON {"function": NAME, "ids"?: [ID…]}');
  }
  const value = parsed as { function?: unknown; ids?: unknown };
  if (typeof value.function !== 'string') throw new BatonError('ERR_INVALID_REQUEST', '"function" must be a function name');
  if (value.ids !== undefined && !(Array.isArray(value.ids) && value.ids.every((i) => typeof i === 'string'))) throw new BatonError('ERR_INVALID_REQUEST', '"ids" must be a list of invocation ids');
  return value.ids === undefined ? { function: value.function } : { function: value.function, ids: value.ids as string[] };
}

/** The JSON view of an invocation: times as ISO strings, the response body as text (or base64). */
export function toView(event: AsyncEvent, withResponse: boolean): Record<string, unknown> {
  const iso = (ms: number | undefined) => (ms === undefined ? undefined : isoMicros(ms));
  const view: Record<string, unknown> = {
    id: event.id,
    function: event.fn,
    state: event.state,
    acceptedAt: iso(event.acceptedAt),
    ...(event.finishedAt === undefined ? {} : { finishedAt: iso(event.finishedAt) }),
    attempts: event.attempts.map((a) => ({ ...a, startedAt: iso(a.startedAt), ...(a.finishedAt === undefined ? {} : { finishedAt: iso(a.finishedAt) }) })),
    throttles: event.throttles,
    redrives: event.redrives,
    ...(event.deadLetterReason === undefined ? {} : { deadLetterReason: event.deadLetterReason }),
  };
  if (event.response !== undefined) {
    const { status, headers, body, isTruncated } = event.response;
    const text = utf8(body);
    view['response'] = withResponse
      ? { status, headers, isTruncated, ...(text === undefined ? { body: body.toString('base64'), bodyEncoding: 'base64' } : { body: text }) }
      : { status };
  }
  return view;
}

/** ISO 8601 with microseconds (`2026-01-01T00:00:00.123456Z`): attempt times are recorded below the millisecond. */
export function isoMicros(ms: number): string {
  const whole = Math.floor(ms);
  const micros = Math.min(999, Math.floor((ms - whole) * 1000));
  return `${new Date(whole).toISOString().slice(0, -1)}${String(micros).padStart(3, '0')}Z`;
}

function utf8(buf: Buffer): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    return undefined;
  }
}

function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const body = JSON.stringify(value);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
}
