import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { connect as connectTcp } from 'node:net';
import type { Readable } from 'node:stream';

/** The code of the error a stream fails with when the sandbox sends nothing for the timeout. */
export const UPSTREAM_TIMEOUT = 'ERR_UPSTREAM_TIMEOUT';

/**
 * What an HTTP/2 stream to a sandbox reports to, in the shape of undici's raw dispatch handler
 * (the Invocation implements both): the response head comes as a flat `[name, value, …]` list.
 */
export interface H2StreamHandler {
  /** The request is on the wire; `abort` cancels the stream (then onError(err) follows). */
  onConnect(abort: (err?: Error) => void): void;
  onResponseHead(status: number, headers: string[], resume: () => void): void;
  /** Returns false to pause the stream until `resume` is called. */
  onData(chunk: Buffer): boolean;
  onComplete(trailers: string[] | null): void;
  onError(err: Error): void;
}

export interface H2Request {
  readonly method: string;
  readonly path: string;
  /** Flat `[name, value, …]` (hop-by-hop ones already dropped); `host` becomes `:authority`. */
  readonly headers: readonly string[];
  /** Sends `te: trailers` (gRPC's servers require it). */
  readonly isTrailersAccepted: boolean;
  readonly body: Buffer | Readable | null;
  /** The stream fails with UPSTREAM_TIMEOUT when the sandbox sends nothing for this long. */
  readonly timeoutMs: number;
}

/**
 * One HTTP/2 cleartext (prior knowledge) session to one sandbox address, carrying every
 * invocation to it as a stream: the data plane already bounds the streams at an endpoint by the
 * function's concurrency. The session is opened at the first request and again after it closed
 * or the sandbox sent GOAWAY; `close` ends it when the endpoint leaves the routing view.
 */
export class H2Upstream {
  readonly address: string;
  #session: ClientHttp2Session | undefined;
  #isClosed = false;

  constructor(address: string) {
    this.address = address;
  }

  dispatch(request: H2Request, handler: H2StreamHandler): void {
    if (this.#isClosed) {
      handler.onError(Object.assign(new Error(`the session to ${this.address} is closed`), { code: 'ECONNREFUSED' }));
      return;
    }
    const current = this.#session;
    const session = current === undefined || current.closed || current.destroyed ? this.#connect() : current;
    let stream: ClientHttp2Stream;
    try {
      stream = session.request(requestHeaders(request, this.address), { endStream: request.body === null });
    } catch (err) {
      // Nothing was sent (a session going away, headers HTTP/2 refuses): as a refused connection,
      // the invocation may go to another endpoint.
      handler.onError(Object.assign(new Error(`no stream to ${this.address}: ${(err as Error).message}`), { code: 'ECONNREFUSED', cause: err }));
      return;
    }
    new StreamForward(stream, handler, request);
  }

  /** Graceful: streams in flight finish, then the connection closes. */
  close(): Promise<void> {
    this.#isClosed = true;
    const session = this.#session;
    this.#session = undefined;
    if (session === undefined || session.closed) return Promise.resolve();
    return new Promise((resolve) => session.close(() => resolve()));
  }

  destroy(): void {
    this.#isClosed = true;
    this.#session?.destroy();
    this.#session = undefined;
  }

  #connect(): ClientHttp2Session {
    const url = new URL(`http://${this.address}`);
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    const port = Number(url.port || 80);
    const session = connect(url.origin, {
      // Without TCP_NODELAY small frames wait on Nagle's algorithm and the peer's delayed ACK.
      createConnection: () => connectTcp({ host, port, noDelay: true }),
      maxSessionMemory: 32,
      settings: { enablePush: false, initialWindowSize: 1024 * 1024 },
    });
    // A failed or broken connection fails its streams, which report it; the session's own error needs only a listener.
    session.on('error', ignore);
    const forget = (): void => {
      if (this.#session === session) this.#session = undefined;
    };
    session.once('close', forget);
    session.once('goaway', forget);
    this.#session = session;
    return session;
  }
}

function ignore(): void {
  // See the callers.
}

function requestHeaders(request: H2Request, address: string): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ':method': request.method, ':path': request.path, ':scheme': 'http' };
  let authority: string | undefined;
  const list = request.headers;
  for (let i = 0; i + 1 < list.length; i += 2) {
    const name = (list[i] as string).toLowerCase();
    const value = list[i + 1] as string;
    if (name === 'host') {
      authority ??= value;
      continue;
    }
    const existing = out[name];
    if (existing === undefined) out[name] = value;
    else if (Array.isArray(existing)) existing.push(value);
    else out[name] = [String(existing), value];
  }
  out[':authority'] = authority ?? address;
  if (request.isTrailersAccepted) out['te'] = 'trailers';
  return out;
}

/** One invocation's stream: its events, translated for the handler. */
class StreamForward {
  readonly #stream: ClientHttp2Stream;
  readonly #handler: H2StreamHandler;
  #trailers: string[] | null = null;
  #isDone = false;

  constructor(stream: ClientHttp2Stream, handler: H2StreamHandler, request: H2Request) {
    this.#stream = stream;
    this.#handler = handler;
    // The body is sent once the stream is open: a session that never connects has read none of it,
    // so the invocation can go to another endpoint with the body whole. On a session already
    // connected the stream is opened within request(), before any listener.
    const open = (): void => {
      handler.onConnect(this.#abort);
      if (!this.#isDone) this.#send(request.body);
    };
    if (stream.pending) stream.once('ready', open);
    else queueMicrotask(open);
    stream.once('response', (headers: IncomingHttpHeaders) => {
      handler.onResponseHead(Number(headers[':status']), headList(headers), this.#resume);
    });
    stream.on('data', (chunk: Buffer) => {
      if (!this.#isDone && !handler.onData(chunk)) stream.pause();
    });
    stream.once('trailers', (trailers: IncomingHttpHeaders) => {
      this.#trailers = headList(trailers);
    });
    stream.once('end', () => {
      if (this.#isDone) return;
      this.#isDone = true;
      handler.onComplete(this.#trailers);
    });
    stream.on('error', (err: Error & { cause?: { code?: unknown } }) => {
      // A session that never connected cancels its pending streams; the cause says why.
      const refused = err.cause?.code === 'ECONNREFUSED';
      this.#fail(refused ? Object.assign(new Error(err.message), { code: 'ECONNREFUSED' }) : err);
    });
    stream.once('close', () => {
      if (!this.#isDone) this.#fail(new Error(`the stream closed before its end (code ${stream.rstCode ?? '?'})`));
    });
    stream.setTimeout(request.timeoutMs, () => {
      this.#abort(Object.assign(new Error(`no answer within ${request.timeoutMs} ms`), { code: UPSTREAM_TIMEOUT }));
    });
  }

  #send(body: Buffer | Readable | null): void {
    if (body === null) return;
    if (Buffer.isBuffer(body)) {
      this.#stream.end(body);
      return;
    }
    body.on('error', (err: Error) => this.#abort(err));
    body.pipe(this.#stream);
  }

  readonly #resume = (): void => {
    this.#stream.resume();
  };

  readonly #abort = (err?: Error): void => {
    if (this.#isDone) return;
    this.#stream.close(constants.NGHTTP2_CANCEL);
    this.#fail(err ?? new Error('aborted'));
  };

  #fail(err: Error): void {
    if (this.#isDone) return;
    this.#isDone = true;
    if (!this.#stream.closed) this.#stream.close(constants.NGHTTP2_CANCEL);
    this.#handler.onError(err);
  }
}

/** A response's or trailers' headers as a flat list, without the pseudo-headers. */
function headList(headers: IncomingHttpHeaders): string[] {
  const list: string[] = [];
  for (const name of Object.keys(headers)) {
    if (name.charCodeAt(0) === 0x3a /* ':' */) continue;
    const value = headers[name];
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) list.push(name, v);
    else list.push(name, String(value));
  }
  return list;
}
