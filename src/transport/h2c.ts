import type { Server as HttpServer } from 'node:http';
import { createServer as createHttp2Server, type Http2Server, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from 'node:http2';
import type { Socket } from 'node:net';
import { BatonError } from '../core/errors.ts';
import type { HeaderLimits } from './http-limits.ts';

/** The first bytes of HTTP/2's connection preface (RFC 9113 §3.4); no HTTP/1.1 method starts with them. */
const PREFACE_START = Buffer.from('PRI ', 'latin1');

export interface CleartextHttp2Options {
  readonly limits: HeaderLimits;
  /** Most streams a client may have open at once on one connection. */
  readonly maxConcurrentStreams: number;
  /** A session with no frames for this long is sent GOAWAY (its open streams still finish). */
  readonly idleTimeoutMs: number;
  /** A new connection that sends no byte for this long is closed. */
  readonly firstBytesTimeoutMs: number;
}

/** The HTTP/2 side of a port that also serves HTTP/1.1. */
export interface CleartextHttp2 {
  readonly server: Http2Server;
  /** Sessions open now. */
  readonly sessions: ReadonlySet<ServerHttp2Session>;
  /**
   * For a graceful stop: closes the connections that have not sent a byte yet (neither server knows
   * them) and sends GOAWAY on every session (no new streams; open ones finish, then it closes).
   */
  closeIdle(): void;
  /** Cuts every session, and every connection not yet handed to a server, at once. */
  destroyAll(): void;
}

/**
 * Makes `http1` (listening or not yet) also serve HTTP/2 cleartext with prior knowledge — what
 * gRPC clients and `curl --http2-prior-knowledge` use — on the same port: each new connection's
 * first bytes are read once; the HTTP/2 preface hands the socket to an HTTP/2 server, anything else
 * to `http1`'s own connection handling, as before (the cost is one read per connection, none per
 * request). `handler` gets the compatibility API's request and response, which stand for
 * `IncomingMessage`/`ServerResponse` (`httpVersionMajor` is 2).
 *
 * `Upgrade: h2c` from HTTP/1.1 (RFC 7540 §3.2) is not offered: RFC 9113 deprecates it, gRPC and
 * other HTTP/2 clients do not use it, and such a request is answered over HTTP/1.1, which RFC 9110
 * §7.8 allows (a server may ignore Upgrade).
 *
 * Requests over HTTP/2 are bounded as over HTTP/1.1: a header list over `maxHeaderBytes` is refused
 * by the HTTP/2 layer (the stream is reset), more than `maxHeaderCount` fields is answered 431
 * ERR_HEADERS_TOO_LARGE.
 */
export function serveCleartextHttp2(
  http1: HttpServer,
  handler: (req: Http2ServerRequest, res: Http2ServerResponse) => void,
  options: CleartextHttp2Options,
): CleartextHttp2 {
  const { limits } = options;
  const server = createHttp2Server({
    maxHeaderListPairs: limits.maxHeaderCount + 8,
    maxSessionMemory: 32,
    settings: { maxConcurrentStreams: options.maxConcurrentStreams, maxHeaderListSize: limits.maxHeaderBytes, initialWindowSize: 1024 * 1024 },
  }, (req, res) => {
    // Four pseudo-headers (:method, :path, :scheme, :authority) come before the fields.
    if (req.rawHeaders.length > (limits.maxHeaderCount + 4) * 2) {
      writeError(res, new BatonError('ERR_HEADERS_TOO_LARGE', `a request may have at most ${limits.maxHeaderCount} header fields`, { details: { maxHeaderCount: limits.maxHeaderCount } }));
      return;
    }
    handler(req, res);
  });
  const sessions = new Set<ServerHttp2Session>();
  server.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
    // A broken connection ends its streams; the 'error' only needs a listener.
    session.on('error', ignore);
    session.setTimeout(options.idleTimeoutMs, () => session.close());
  });
  // A client's reset or a protocol error on one stream ends that stream (its response closes).
  server.on('streamError', ignore);
  server.on('sessionError', ignore);

  const http1Connection = http1.listeners('connection')[0] as ((socket: Socket) => void) | undefined;
  if (http1Connection === undefined) throw new Error('the HTTP/1.1 server has no connection listener');
  http1.removeListener('connection', http1Connection);
  /** Connections whose first bytes have not come yet. */
  const pending = new Set<Socket>();
  http1.on('connection', (socket: Socket) => {
    let head: Buffer | undefined;
    // Until it is handed over, the socket's errors and a client that sends nothing end it here.
    const onEarlyEnd = (): void => {
      socket.destroy();
    };
    pending.add(socket);
    socket.once('close', () => pending.delete(socket));
    socket.on('error', onEarlyEnd);
    socket.setTimeout(options.firstBytesTimeoutMs, onEarlyEnd);
    const onData = (chunk: Buffer): void => {
      head = head === undefined ? chunk : Buffer.concat([head, chunk]);
      const n = Math.min(head.length, PREFACE_START.length);
      const isPreface = head.compare(PREFACE_START, 0, n, 0, n) === 0;
      if (isPreface && head.length < PREFACE_START.length) return;
      socket.off('data', onData);
      pending.delete(socket);
      socket.off('error', onEarlyEnd);
      socket.off('timeout', onEarlyEnd);
      socket.setTimeout(0);
      socket.pause();
      socket.unshift(head);
      // Both take the bytes already read from the socket's buffer: an HTTP/2 session when it
      // attaches, the HTTP/1.1 parser once the socket flows again.
      if (isPreface) {
        // As the HTTP/1.1 server does: small frames must not wait on Nagle's algorithm.
        socket.setNoDelay(true);
        server.emit('connection', socket);
      } else {
        http1Connection.call(http1, socket);
        socket.resume();
      }
    };
    socket.on('data', onData);
  });

  return {
    server,
    sessions,
    closeIdle() {
      for (const socket of pending) socket.destroy();
      for (const session of sessions) session.close();
    },
    destroyAll() {
      for (const socket of pending) socket.destroy();
      for (const session of sessions) session.destroy();
    },
  };
}

function ignore(): void {
  // See the callers.
}

function writeError(res: Http2ServerResponse, err: BatonError): void {
  const body = JSON.stringify({ error: { code: err.code, message: err.message } });
  res.writeHead(err.status, { 'content-type': 'application/json', 'x-baton-error': err.code, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
