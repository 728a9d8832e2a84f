import { createServer as createHttpsServer, type ServerOptions as HttpsServerOptions } from 'node:https';
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { BatonError, type ErrorCode } from '../core/errors.ts';

/** How large a request's header section may be, and how many fields it may have. */
export interface HeaderLimits {
  readonly maxHeaderBytes: number;
  readonly maxHeaderCount: number;
}

/**
 * An HTTP/1.1 server whose requests are bounded by `limits`: a header section over
 * `maxHeaderBytes` or with more than `maxHeaderCount` fields is answered 431 ERR_HEADERS_TOO_LARGE,
 * and a request Node's parser rejects (a malformed start line or header, `Content-Length` with
 * `Transfer-Encoding`, two `Content-Length`s, a bad chunk) 400 ERR_INVALID_REQUEST, each with the
 * ordinary error body, and the connection is closed: after a request that did not parse, nothing
 * else on it can be trusted to be where it seems.
 */
export function createLimitedServer(limits: HeaderLimits, handler: RequestListener, options: { keepAliveTimeout?: number; tls?: HttpsServerOptions } = {}): Server {
  const { tls, ...httpOptions } = options;
  const serverOptions = { ...httpOptions, maxHeaderSize: limits.maxHeaderBytes, requireHostHeader: false };
  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    // Node keeps at most maxHeadersCount fields (one more than allowed), dropping the rest: more than allowed is refused.
    if (req.rawHeaders.length > limits.maxHeaderCount * 2) {
      res.shouldKeepAlive = false;
      writeError(res, new BatonError('ERR_HEADERS_TOO_LARGE', `a request may have at most ${limits.maxHeaderCount} header fields`, { details: { maxHeaderCount: limits.maxHeaderCount } }));
      return;
    }
    handler(req, res);
  };
  // With `tls` an HTTPS server (node:https's is a node:http Server over TLS sockets): a client that does not speak TLS fails the handshake and is closed.
  const server: Server = tls === undefined ? createServer(serverOptions, listener) : createHttpsServer({ ...serverOptions, ...tls }, listener);
  server.maxHeadersCount = limits.maxHeaderCount + 1;
  server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => {
    if (!socket.writable || err.code === 'ECONNRESET') {
      socket.destroy();
      return;
    }
    const refusal = parseRefusal(err.code, limits);
    if (refusal === undefined) {
      socket.destroy();
      return;
    }
    socket.end(rawErrorResponse(refusal));
  });
  return server;
}

function parseRefusal(code: string | undefined, limits: HeaderLimits): BatonError | undefined {
  if (code === 'HPE_HEADER_OVERFLOW') {
    return new BatonError('ERR_HEADERS_TOO_LARGE', `the request's header section must be at most ${limits.maxHeaderBytes} bytes`, { details: { maxHeaderBytes: limits.maxHeaderBytes } });
  }
  if (code !== undefined && code.startsWith('HPE_')) return new BatonError('ERR_INVALID_REQUEST', `the request is not valid HTTP/1.1 (${code})`);
  return undefined;
}

function writeError(res: ServerResponse, err: BatonError): void {
  const body = JSON.stringify({ error: { code: err.code, message: err.message } });
  res.writeHead(err.status, { 'content-type': 'application/json', 'x-baton-error': err.code, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

const REASONS: Partial<Record<ErrorCode, string>> = { ERR_HEADERS_TOO_LARGE: 'Request Header Fields Too Large', ERR_INVALID_REQUEST: 'Bad Request' };

/** A whole response written on a socket whose request never parsed (there is no ServerResponse). */
function rawErrorResponse(err: BatonError): string {
  const body = JSON.stringify({ error: { code: err.code, message: err.message } });
  return `HTTP/1.1 ${err.status} ${REASONS[err.code] ?? 'Error'}\r\ncontent-type: application/json\r\nx-baton-error: ${err.code}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
}
