import { createHash, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createDeferred, type Deferred } from '../../core/deferred.ts';

/**
 * The Lambda Runtime API for one sandbox, served by the worker beside the process (a custom
 * runtime polls it; it never listens itself). One port takes both sides:
 *
 * - the data plane's invocations, at any path outside `/2018-06-01/` (the sandbox's endpoint
 *   address is this server's): a request marked `x-baton-event-format: lambda` carries the raw
 *   payload; any other HTTP request becomes a function-URL event (payload format 2.0);
 * - the runtime's calls: `GET /2018-06-01/runtime/invocation/next` (long poll, answered with the
 *   payload and `Lambda-Runtime-Aws-Request-Id`, `-Deadline-Ms`, `-Invoked-Function-Arn`,
 *   `-Trace-Id`), `POST …/invocation/{id}/response`, `POST …/invocation/{id}/error`,
 *   `POST /2018-06-01/runtime/init/error`.
 *
 * The sandbox is ready at the runtime's first `next`; an init error fails its start. Invocations
 * wait here in arrival order (the data plane sends at most the function's `concurrency`).
 */
export interface RuntimeApiOptions {
  readonly host: string;
  readonly functionName: string;
  readonly timeoutMs: number;
  readonly wallNow: () => number;
}

interface PendingInvocation {
  readonly id: string;
  readonly payload: Buffer;
  readonly isLambda: boolean;
  readonly res: ServerResponse;
  readonly deadlineMs: number;
}

const PREFIX = '/2018-06-01/runtime/';
const MAX_BODY_BYTES = 6 * 1024 * 1024;

export class RuntimeApiServer {
  readonly #o: RuntimeApiOptions;
  readonly #server: Server;
  readonly #queue: PendingInvocation[] = [];
  readonly #pollers: ServerResponse[] = [];
  readonly #inflight = new Map<string, PendingInvocation>();
  readonly #ready: Deferred<void> = createDeferred<void>();
  #isReady = false;

  constructor(options: RuntimeApiOptions) {
    this.#o = options;
    this.#server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => this.#handle(req, res));
    this.#server.headersTimeout = 0;
    this.#server.requestTimeout = 0;
    void this.#ready.promise.catch(() => undefined);
  }

  /** Resolves at the runtime's first `next`; rejects with the runtime's init error. */
  get ready(): Promise<void> {
    return this.#ready.promise;
  }

  /** Listens on a free port; resolves with `host:port` (for the sandbox's env and its endpoint). */
  listen(): Promise<string> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, this.#o.host, () => {
        const { port } = this.#server.address() as AddressInfo;
        resolve(`${this.#o.host}:${port}`);
      });
    });
  }

  close(): void {
    for (const poller of this.#pollers.splice(0)) poller.destroy();
    for (const pending of [...this.#queue.splice(0), ...this.#inflight.values()]) pending.res.destroy();
    this.#inflight.clear();
    this.#server.close();
    this.#server.closeAllConnections();
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const chunks: Buffer[] = [];
    let bytes = 0;
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('end', () => {
      if (bytes > MAX_BODY_BYTES) return send(res, 413, { errorMessage: 'body too large', errorType: 'RequestTooLarge' });
      const body = Buffer.concat(chunks);
      if (url.startsWith(PREFIX)) this.#runtimeCall(req.method ?? 'GET', url.slice(PREFIX.length), req, body, res);
      else this.#invocation(req, body, res);
    });
  }

  #invocation(req: IncomingMessage, body: Buffer, res: ServerResponse): void {
    const isLambda = req.headers['x-baton-event-format'] === 'lambda';
    const given = req.headers['x-request-id'];
    const id = typeof given === 'string' && given.length > 0 ? given : randomUUID();
    const payload = isLambda ? (body.length === 0 ? Buffer.from('{}') : body) : Buffer.from(JSON.stringify(functionUrlEvent(req, body, id)));
    const pending: PendingInvocation = { id, payload, isLambda, res, deadlineMs: this.#o.wallNow() + this.#o.timeoutMs };
    res.once('close', () => {
      const at = this.#queue.indexOf(pending);
      if (at >= 0) this.#queue.splice(at, 1);
      if (this.#inflight.get(id) === pending) this.#inflight.delete(id);
    });
    const poller = this.#pollers.shift();
    if (poller !== undefined) this.#hand(pending, poller);
    else this.#queue.push(pending);
  }

  #runtimeCall(method: string, path: string, req: IncomingMessage, body: Buffer, res: ServerResponse): void {
    if (method === 'GET' && path === 'invocation/next') {
      if (!this.#isReady) {
        this.#isReady = true;
        this.#ready.resolve();
      }
      const pending = this.#queue.shift();
      if (pending !== undefined) this.#hand(pending, res);
      else {
        this.#pollers.push(res);
        res.once('close', () => {
          const at = this.#pollers.indexOf(res);
          if (at >= 0) this.#pollers.splice(at, 1);
        });
      }
      return;
    }
    if (method === 'POST' && path === 'init/error') {
      this.#ready.reject(new Error(`the runtime reported an init error: ${describeError(body, req)}`));
      send(res, 202, { status: 'OK' });
      return;
    }
    const m = /^invocation\/([^/]+)\/(response|error)$/.exec(path);
    if (method === 'POST' && m !== null) {
      const id = decodeURIComponent(m[1] as string);
      const pending = this.#inflight.get(id);
      if (pending === undefined) {
        send(res, 400, { errorMessage: `no invocation ${id} is in flight`, errorType: 'InvalidRequestID' });
        return;
      }
      this.#inflight.delete(id);
      send(res, 202, { status: 'OK' });
      if (m[2] === 'response') respond(pending, body);
      else respondError(pending, body, req);
      return;
    }
    send(res, 404, { errorMessage: `no Runtime API route ${method} /2018-06-01/runtime/${path}`, errorType: 'NotFound' });
  }

  #hand(pending: PendingInvocation, poller: ServerResponse): void {
    this.#inflight.set(pending.id, pending);
    poller.writeHead(200, {
      'content-type': 'application/json',
      'lambda-runtime-aws-request-id': pending.id,
      'lambda-runtime-deadline-ms': String(pending.deadlineMs),
      'lambda-runtime-invoked-function-arn': `arn:aws:lambda:local:000000000000:function:${this.#o.functionName}`,
      'lambda-runtime-trace-id': `Root=1-${Math.floor(this.#o.wallNow() / 1000).toString(16)}-${createHash('sha1').update(pending.id).digest('hex').slice(0, 24)};Sampled=0`,
      'content-length': pending.payload.length,
    }).end(pending.payload);
  }
}

/** The runtime's result: the Lambda payload as is, or — for an HTTP invocation — a function-URL result mapped to HTTP. */
function respond(pending: PendingInvocation, body: Buffer): void {
  if (pending.res.destroyed) return;
  if (pending.isLambda) {
    pending.res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length }).end(body);
    return;
  }
  let result: unknown;
  try {
    result = JSON.parse(body.toString('utf8'));
  } catch {
    result = undefined;
  }
  const r = result as { statusCode?: unknown; headers?: Record<string, unknown>; body?: unknown; isBase64Encoded?: boolean } | undefined;
  if (r !== undefined && r !== null && typeof r === 'object' && typeof r.statusCode === 'number') {
    const out = typeof r.body === 'string' ? Buffer.from(r.body, r.isBase64Encoded === true ? 'base64' : 'utf8') : Buffer.from(r.body === undefined ? '' : JSON.stringify(r.body));
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(r.headers ?? {})) headers[k.toLowerCase()] = String(v);
    headers['content-length'] = String(out.length);
    pending.res.writeHead(r.statusCode, headers).end(out);
    return;
  }
  pending.res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length }).end(body);
}

function respondError(pending: PendingInvocation, body: Buffer, req: IncomingMessage): void {
  if (pending.res.destroyed) return;
  const error = body.length > 0 ? body : Buffer.from(JSON.stringify({ errorMessage: 'the runtime reported an error', errorType: String(req.headers['lambda-runtime-function-error-type'] ?? 'Unhandled') }));
  const headers = { 'content-type': 'application/json', 'content-length': error.length };
  if (pending.isLambda) pending.res.writeHead(200, { ...headers, 'x-amz-function-error': 'Unhandled' }).end(error);
  else pending.res.writeHead(500, headers).end(error);
}

function describeError(body: Buffer, req: IncomingMessage): string {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { errorMessage?: unknown; errorType?: unknown };
    return `${String(parsed.errorType ?? req.headers['lambda-runtime-function-error-type'] ?? 'Error')}: ${String(parsed.errorMessage ?? '')}`;
  } catch {
    return body.toString('utf8').slice(0, 500);
  }
}

function send(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
}

/** An HTTP invocation as a Lambda function-URL event (payload format 2.0), as the handler runner builds it. */
function functionUrlEvent(req: IncomingMessage, body: Buffer, requestId: string): Record<string, unknown> {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const rawPath = q < 0 ? url : url.slice(0, q);
  const headers: Record<string, string> = {};
  for (const [name, values] of Object.entries(req.headersDistinct)) if (values !== undefined) headers[name] = values.join(',');
  const isText = /^(text\/|application\/(json|.*\+json|xml|x-www-form-urlencoded))/i.test(req.headers['content-type'] ?? '');
  return {
    version: '2.0', routeKey: '$default', rawPath, rawQueryString: q < 0 ? '' : url.slice(q + 1), headers,
    requestContext: { http: { method: req.method ?? 'GET', path: rawPath, protocol: `HTTP/${req.httpVersion}`, sourceIp: req.socket.remoteAddress ?? '' }, requestId, routeKey: '$default', stage: '$default' },
    ...(body.length === 0 ? {} : { body: isText ? body.toString('utf8') : body.toString('base64') }),
    isBase64Encoded: body.length > 0 && !isText,
  };
}
