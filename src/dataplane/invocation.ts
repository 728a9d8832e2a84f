import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import { ByteLimit } from '../core/byte-limit.ts';
import type { Timer } from '../core/clock.ts';
import { BatonError, type ErrorCode } from '../core/errors.ts';
import { responseHeaders } from './forward-headers.ts';
import { isGrpcResponse, writeGrpcError } from './grpc.ts';
import { H2Upstream, UPSTREAM_TIMEOUT, type H2StreamHandler } from './h2-upstream.ts';
import type { Upstream } from './upstream-pools.ts';
import type { QueueEntry } from './invocation-queue.ts';
import { statusClass } from './metrics.ts';
import type { EndpointEntry, RoutedFunction } from './routing-table.ts';

/** What an invocation needs from the proxy that owns it. */
export interface InvocationOwner<R> {
  /** Frees the invocation's slot at its endpoint and counts the outcome `code`. */
  release(invocation: Invocation<R>, code: string): void;
  /** Moves a refused invocation to another endpoint; false when none is free. */
  retryElsewhere(invocation: Invocation<R>): boolean;
  /** Takes a queued invocation whose client went away out of the queue. */
  abandonQueued(invocation: Invocation<R>): void;
}

/** `waiting`: admitted, queued or about to be; `running`: dispatched to an endpoint; `done`: answered. */
export type InvocationState = 'waiting' | 'running' | 'done';

const kInvocation = Symbol('baton.invocation');
type TaggedResponse = ServerResponse & { [kInvocation]?: Invocation<unknown> };

// Module-level listeners find their invocation through the response: no closure per request.
function onResponseClose(this: ServerResponse): void {
  (this as TaggedResponse)[kInvocation]?.onClientClose();
}
function onResponseDrain(this: ServerResponse): void {
  (this as TaggedResponse)[kInvocation]?.onClientDrain();
}
function ignoreError(): void {
  // The request stream's errors (client reset) surface through the response's 'close'.
}

const CLIENT_CLOSED = new Error('the client closed the connection');

/**
 * One invocation from admission to answer. It is also undici's dispatch handler, so the
 * upstream response is streamed straight into the client's ServerResponse: `res.write` returning
 * false pauses the upstream, the response's 'drain' resumes it.
 *
 * It implements undici's raw handler interface (onConnect, onHeaders, onData, onComplete, onError),
 * the one undici's HTTP/1.1 client calls: a handler with the newer onRequestStart/onResponse*
 * methods is wrapped per request in an adapter that parses the response headers into an object,
 * which the proxy would only take apart again. Here the raw header Buffers go straight into a flat
 * list for `res.writeHead` (measured with `npm run bench:proxy`, see bench/README.md).
 *
 * Errors before the response head: refused connection (nothing sent) → one retry on another
 * endpoint, else 502 ERR_SANDBOX_FAILED; reset → 502 ERR_SANDBOX_FAILED (never retried: the sandbox
 * may have run it); no head within the function's `timeoutMs` → 504 ERR_FUNCTION_TIMEOUT (undici
 * closes the upstream connection). After the head, any failure cuts the client's response (a gRPC
 * response ends with a `grpc-status` trailer instead).
 *
 * To an h2c function it is the handler of one HTTP/2 stream (H2Upstream) with the same outcomes.
 */
export class Invocation<R> implements Dispatcher.DispatchHandler, H2StreamHandler {
  readonly fn: RoutedFunction<R>;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  state: InvocationState = 'waiting';
  queueEntry: QueueEntry<Invocation<R>> | undefined;
  endpoint: EndpointEntry | undefined;
  /** The load-balancing key: the function's affinity header value, if it names one and it was sent. */
  readonly key: string | undefined;
  /**
   * The request body to send instead of streaming `req` (the Lambda Invoke API reads and checks
   * the payload first); set before the invocation is admitted.
   */
  body: Buffer | undefined = undefined;
  /** A chunked body (no `content-length`) is cut at this many bytes with 413; set before admission. */
  bodyMaxBytes: number | undefined = undefined;
  /** Rewrites the sandbox's response head before it is sent (the Lambda Invoke API's shape); may edit `headers`. */
  headHook: HeadHook | undefined = undefined;
  /** The client's deadline (gRPC's `grpc-timeout`), armed by the proxy at admission. */
  deadline: Timer | undefined = undefined;
  /** When that deadline passes (the clock's ms); the sandbox is sent what is left of it as its `grpc-timeout`. */
  deadlineAt: number | undefined = undefined;
  readonly #owner: InvocationOwner<R>;
  readonly #path: string;
  readonly #headers: string[];
  readonly #hasBody: boolean;
  /** Aborts the upstream request; set once undici has a connection for it. */
  #abort: ((err?: Error) => void) | undefined;
  /** Resumes a paused upstream response (from onHeaders). */
  #resume: (() => void) | undefined;
  #isPaused = false;
  #isRequestStarted = false;
  #hasRetried = false;
  #isClientGone = false;
  #status = 0;
  /** Why the upstream request is to be aborted as soon as it has a connection (a deadline passed before). */
  #abortReason: Error | undefined;
  /** `req` through its `bodyMaxBytes` limit, made at the first dispatch (a retry sends the same stream). */
  #limitedBody: ByteLimit | undefined;

  constructor(owner: InvocationOwner<R>, fn: RoutedFunction<R>, req: IncomingMessage, res: ServerResponse, path: string, headers: string[], hasBody: boolean) {
    this.#owner = owner;
    this.fn = fn;
    this.req = req;
    this.res = res;
    this.#path = path;
    this.#headers = headers;
    this.#hasBody = hasBody;
    const affinity = fn.spec.affinityHeader === undefined ? undefined : req.headers[fn.spec.affinityHeader];
    this.key = typeof affinity === 'string' ? affinity : undefined;
    (res as TaggedResponse)[kInvocation] = this;
    res.on('close', onResponseClose);
    req.on('error', ignoreError);
  }

  /**
   * Sends the request to `endpoint` over its upstream; the owner has already taken the slot.
   * `now`: the clock's time, to send an h2c sandbox the rest of the client's deadline.
   */
  begin(endpoint: EndpointEntry, upstream: Upstream, now: number): void {
    this.state = 'running';
    this.endpoint = endpoint;
    this.#abort = undefined;
    this.#resume = undefined;
    this.#isPaused = false;
    this.#isRequestStarted = false;
    const timeoutMs = this.fn.spec.timeoutMs;
    if (upstream instanceof H2Upstream) {
      const te = this.req.headers['te'];
      upstream.dispatch({
        method: this.req.method ?? 'GET',
        path: this.#path,
        headers: this.deadlineAt === undefined ? this.#headers : withGrpcTimeout(this.#headers, Math.max(1, Math.ceil(this.deadlineAt - now))),
        isTrailersAccepted: typeof te === 'string' && te.toLowerCase().includes('trailers'),
        body: this.body ?? (this.#hasBody ? this.#requestBody() : null),
        timeoutMs,
      }, this);
      return;
    }
    upstream.dispatch({
      path: this.#path,
      method: this.req.method as Dispatcher.HttpMethod,
      headers: this.#headers,
      body: this.body ?? (this.#hasBody ? this.#requestBody() : null),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    }, this);
  }

  #requestBody(): IncomingMessage | ByteLimit {
    if (this.bodyMaxBytes === undefined) return this.req;
    this.#limitedBody ??= this.req.pipe(new ByteLimit(this.bodyMaxBytes, payloadTooLarge));
    return this.#limitedBody;
  }

  /** Answers with a data-plane error (queue full, cold-start timeout, function deleted, …). */
  fail(err: BatonError): void {
    this.state = 'done';
    sendError(this.res, err);
  }

  onConnect(abort: (err?: Error) => void): void {
    this.#abort = abort;
    this.#isRequestStarted = true;
    if (this.#isClientGone) abort(CLIENT_CLOSED);
    else if (this.#abortReason !== undefined) abort(this.#abortReason);
  }

  /** Returns false to pause the upstream until `resume` is called. */
  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (statusCode < 200) return true;
    this.#status = statusCode;
    this.#resume = resume;
    if (this.#isClientGone) return true;
    this.#writeHead(statusCode, responseHeaders(rawHeaders), statusText);
    return true;
  }

  /** An h2c sandbox's response head (its headers already a flat list without pseudo-headers). */
  onResponseHead(status: number, headers: string[], resume: () => void): void {
    if (status < 200) return;
    this.#status = status;
    this.#resume = resume;
    if (this.#isClientGone) return;
    this.#writeHead(status, headers, '');
  }

  #writeHead(statusCode: number, headers: string[], statusText: string): void {
    if (this.headHook !== undefined) {
      const status = this.headHook(statusCode, headers);
      this.res.writeHead(status, headers);
      return;
    }
    // HTTP/2 has no reason phrase.
    if (statusText !== '' && this.req.httpVersionMajor !== 2) this.res.writeHead(statusCode, statusText, headers);
    else this.res.writeHead(statusCode, headers);
  }

  /** Returns false when the client's socket is full: undici pauses until 'drain' resumes it. */
  onData(chunk: Buffer): boolean {
    if (this.#isClientGone || this.res.write(chunk)) return true;
    if (!this.#isPaused) {
      this.#isPaused = true;
      this.res.once('drain', onResponseDrain);
    }
    return false;
  }

  /** `trailers`: undici's raw Buffers or an h2c stream's strings, `[name, value, …]`. */
  onComplete(trailers?: readonly (Buffer | string)[] | null): void {
    if (this.state !== 'running') return;
    this.state = 'done';
    if (!this.#isClientGone) {
      // Trailers reach an HTTP/2 client (gRPC's grpc-status); HTTP/1.1 sends them only on a chunked response.
      if (trailers !== undefined && trailers !== null && trailers.length > 0) this.res.addTrailers(trailerObject(trailers));
      this.res.end();
    }
    this.#owner.release(this, this.#isClientGone ? 'client_closed' : statusClass(this.#status));
  }

  onError(err: Error): void {
    if (this.state !== 'running') return;
    if (this.#isClientGone) {
      this.state = 'done';
      this.#owner.release(this, 'client_closed');
      return;
    }
    if (err instanceof BatonError && (err.code === 'ERR_PAYLOAD_TOO_LARGE' || err.code === 'ERR_DEADLINE_EXCEEDED')) {
      // A body too large: the rest is never read, so the connection closes after the answer.
      this.state = 'done';
      if (err.code === 'ERR_PAYLOAD_TOO_LARGE') this.res.shouldKeepAlive = false;
      sendError(this.res, err);
      this.#owner.release(this, err.code);
      return;
    }
    const code = (err as { code?: unknown }).code;
    if (!this.#isRequestStarted && !this.#hasRetried && code === 'ECONNREFUSED') {
      this.#hasRetried = true;
      if (this.#owner.retryElsewhere(this)) return;
    }
    const errorCode: ErrorCode = code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === UPSTREAM_TIMEOUT ? 'ERR_FUNCTION_TIMEOUT' : 'ERR_SANDBOX_FAILED';
    const message = errorCode === 'ERR_FUNCTION_TIMEOUT'
      ? `function '${this.fn.name}' did not answer within ${this.fn.spec.timeoutMs} ms`
      : `sandbox ${this.endpoint?.sandboxId ?? '?'} of function '${this.fn.name}' failed: ${err.message}`;
    this.state = 'done';
    sendError(this.res, new BatonError(errorCode, message, { cause: err }));
    this.#owner.release(this, errorCode);
  }

  /** The client's response closed; if before the answer, the client went away. */
  onClientClose(): void {
    if (this.state === 'done' || this.res.writableFinished) return;
    this.#isClientGone = true;
    if (this.state === 'waiting') {
      this.state = 'done';
      this.#owner.abandonQueued(this);
      return;
    }
    // Running: abort the upstream (its error callback frees the slot). Not yet on a socket: the
    // abort happens in onConnect, or the pool's own error ends it.
    this.#abort?.(CLIENT_CLOSED);
  }

  /** Aborts the request at its sandbox with `err` (answered by onError), now or once it has a connection. */
  abortWith(err: BatonError): void {
    if (this.state !== 'running') return;
    if (this.#abort !== undefined) this.#abort(err);
    else this.#abortReason = err;
  }

  onClientDrain(): void {
    if (!this.#isPaused) return;
    this.#isPaused = false;
    this.#resume?.();
  }
}

/** The refusal of a body larger than its function allows. */
export function payloadTooLarge(maxBytes: number): BatonError {
  return new BatonError('ERR_PAYLOAD_TOO_LARGE', `the invocation body must be at most ${maxBytes} bytes`, { details: { maxBytes } });
}

/** `headers` with `grpc-timeout` set to `ms` milliseconds (what is left of the client's deadline). */
function withGrpcTimeout(headers: readonly string[], ms: number): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < headers.length; i += 2) {
    if ((headers[i] as string).toLowerCase() !== 'grpc-timeout') out.push(headers[i] as string, headers[i + 1] as string);
  }
  out.push('grpc-timeout', `${ms}m`);
  return out;
}

function trailerObject(list: readonly (Buffer | string)[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < list.length; i += 2) {
    const name = String(list[i]).toLowerCase();
    const value = String(list[i + 1]);
    out[name] = out[name] === undefined ? value : `${out[name]}, ${value}`;
  }
  return out;
}

/** Rewrites a sandbox's response status and headers (flat `[name, value, …]`, editable); returns the status to send. */
export type HeadHook = (status: number, headers: string[]) => number;

/** Writes a data-plane error in another API's shape (the Lambda Invoke API's); set on a response under `kErrorWriter`. */
export type ErrorWriter = (res: ServerResponse, err: BatonError) => void;
export const kErrorWriter = Symbol('baton.errorWriter');

/**
 * Sends a data-plane error as `{error:{code,message}}` with the code's status (or through the
 * response's own `kErrorWriter`), or cuts the response if it has begun; to a gRPC request, as a
 * gRPC status (src/dataplane/grpc.ts).
 */
export function sendError(res: ServerResponse, err: BatonError): void {
  if (isGrpcResponse(res)) {
    if (!res.writableEnded) writeGrpcError(res, err);
    return;
  }
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (res.destroyed) return;
  const writer = (res as ServerResponse & { [kErrorWriter]?: ErrorWriter })[kErrorWriter];
  if (writer !== undefined) {
    writer(res, err);
    return;
  }
  const body = JSON.stringify({ error: { code: err.code, message: err.message } });
  res.writeHead(err.status, { 'content-type': 'application/json', 'x-baton-error': err.code, 'content-length': Buffer.byteLength(body), ...retryAfterHeader(err) });
  res.end(body);
}

/** A refusal for overload says when to come back: `Retry-After` in whole seconds (`details.retryAfterSeconds`, else 1). */
export function retryAfterHeader(err: BatonError): { 'retry-after'?: string } {
  if (err.code !== 'ERR_TOO_MANY_REQUESTS') return {};
  const seconds = (err.details as { retryAfterSeconds?: unknown } | undefined)?.retryAfterSeconds;
  return { 'retry-after': String(typeof seconds === 'number' && seconds >= 1 ? Math.ceil(seconds) : 1) };
}
