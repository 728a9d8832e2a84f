import { wallTimeMs } from '../../core/clock.ts';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/** One request as the emulated sandboxes need it: the target and a few headers. The body is read and dropped. */
export interface ResponderRequest {
  readonly method: string;
  /** The request target as sent (`/fn/name/path?query`). */
  readonly url: string;
  /** A header's value (the first one when repeated), by lower-case name. */
  header(name: string): string | undefined;
}

/** Answers one request, once; answers are written in request order on each connection. */
export interface ResponderReply {
  send(status: number, json: string): void;
  /** True once the connection is gone: an answer would go nowhere. */
  readonly isClosed: boolean;
  /** Called if the connection goes before the answer is sent. */
  onClose(listener: () => void): void;
}

export type ResponderHandler = (req: ResponderRequest, reply: ResponderReply) => void;

export interface ResponderOptions {
  /** A keep-alive connection with nothing in flight is closed after this long (Node's HTTP server: 5 s). */
  readonly idleTimeoutMs?: number;
  /** Largest request head (request line and headers); larger gets 431 and the connection closed. */
  readonly maxHeadBytes?: number;
}

/**
 * A minimal HTTP/1.1 server for the emulated sandboxes: request heads are parsed, bodies (sized by
 * Content-Length or chunked) are read and dropped, answers are small JSON texts written in one write
 * each, in request order (pipelining), with keep-alive as in HTTP/1.1 (HTTP/1.0: close unless asked).
 *
 * Why not `node:http`: an emulated sandbox stands in for a function running on another machine,
 * but here it shares the two cores with the control plane, data plane and load generator it is
 * measured with. Answering through the same handler, `node:http` took ~155 µs of CPU per request
 * against ~118 µs for this server (`npm run bench:responder`: 2,500 requests/s, 10 ms each) — at
 * 2,500 cold starts/s, a tenth of a core. The data plane still talks real HTTP/1.1 to it with its
 * ordinary client.
 *
 * Malformed requests get 400 (a head too large 431, an unsupported transfer coding 501) and the
 * connection is closed, as `node:http` does.
 */
export function createResponder(handler: ResponderHandler, options: ResponderOptions = {}): Responder {
  return new Responder(handler, options);
}

export class Responder {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();

  constructor(handler: ResponderHandler, options: ResponderOptions = {}) {
    const idleTimeoutMs = options.idleTimeoutMs ?? 5_000;
    const maxHeadBytes = options.maxHeadBytes ?? 16 * 1024;
    // Half-open: a client that ends its side after a request still gets the answer.
    this.#server = createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
      new Connection(socket, handler, idleTimeoutMs, maxHeadBytes);
    });
  }

  /** Listens; resolves with the port (useful with 0). */
  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => {
        this.#server.off('error', reject);
        resolve((this.#server.address() as AddressInfo).port);
      });
    });
  }

  /** Stops listening and closes every connection; answers still waiting are dropped. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.#server.listening) {
        resolve();
        return;
      }
      this.#server.close(() => resolve());
      for (const socket of this.#sockets) socket.destroy();
    });
  }
}

const STATUS_TEXT: Record<number, string> = {
  200: 'OK', 400: 'Bad Request', 404: 'Not Found', 431: 'Request Header Fields Too Large', 500: 'Internal Server Error',
  501: 'Not Implemented', 503: 'Service Unavailable',
};

let dateSecond = -1;
let dateText = '';
/** The Date header's value, rebuilt at most once a second. */
function httpDate(): string {
  const nowMs = wallTimeMs();
  const second = Math.floor(nowMs / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(nowMs).toUTCString();
  }
  return dateText;
}

class Request implements ResponderRequest {
  readonly method: string;
  readonly url: string;
  readonly #headers: Map<string, string>;

  constructor(method: string, url: string, headers: Map<string, string>) {
    this.method = method;
    this.url = url;
    this.#headers = headers;
  }

  header(name: string): string | undefined {
    return this.#headers.get(name);
  }
}

/** A request waiting for its answer; answers leave in this order. */
class Exchange implements ResponderReply {
  readonly #connection: Connection;
  readonly keepAlive: boolean;
  text: string | undefined;
  #closeListeners: (() => void)[] | undefined;

  constructor(connection: Connection, keepAlive: boolean) {
    this.#connection = connection;
    this.keepAlive = keepAlive;
  }

  get isClosed(): boolean {
    return this.#connection.isClosed;
  }

  send(status: number, json: string): void {
    if (this.text !== undefined || this.#connection.isClosed) return;
    const connection = this.keepAlive ? 'keep-alive: timeout=5\r\n' : 'connection: close\r\n';
    this.text = `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Unknown'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(json)}\r\ndate: ${httpDate()}\r\n${connection}\r\n${json}`;
    this.#connection.flush();
  }

  onClose(listener: () => void): void {
    (this.#closeListeners ??= []).push(listener);
  }

  closed(): void {
    if (this.text !== undefined) return;
    for (const listener of this.#closeListeners ?? []) listener();
  }
}

type Body = 'none' | 'length' | 'chunked';

/**
 * Requests read ahead of their answers on one connection. Past this the connection is not read
 * until half of them are answered, as `node:http` stops reading when answers back up: a client
 * that pipelines without end cannot make the server hold unbounded state.
 */
export const MAX_WAITING_REQUESTS = 256;

/** One connection's parser: head → body (dropped) → next head; exchanges answered in order. */
class Connection {
  readonly #socket: Socket;
  readonly #handler: ResponderHandler;
  readonly #maxHeadBytes: number;
  /** Unparsed bytes (latin1): a partial head, or a partial chunk-size line. */
  #buffer = '';
  #body = 'none';
  /** Body bytes still to drop (Length), or of the current chunk's data plus its CRLF (Chunked). */
  #remaining = 0;
  /** In a chunked body: reading the trailer section after the last chunk. */
  #inTrailers = false;
  readonly #exchanges: Exchange[] = [];
  /** No more requests are read: the last one asked to close, or one was malformed. */
  #isEnding = false;
  /** Not reading: MAX_WAITING_REQUESTS wait for their answers. `#backlog` holds what was read but not parsed. */
  #isPaused = false;
  #backlog = '';
  isClosed = false;

  constructor(socket: Socket, handler: ResponderHandler, idleTimeoutMs: number, maxHeadBytes: number) {
    this.#socket = socket;
    this.#handler = handler;
    this.#maxHeadBytes = maxHeadBytes;
    socket.setTimeout(idleTimeoutMs, () => {
      if (this.#exchanges.length === 0) socket.destroy();
    });
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('end', () => {
      this.#isEnding = true;
      if (this.#exchanges.length === 0) socket.end();
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      this.isClosed = true;
      for (const exchange of this.#exchanges.splice(0)) exchange.closed();
    });
  }

  /** Writes the answers that are ready, in order, up to the first still waiting. */
  flush(): void {
    let text = '';
    let isClosing = false;
    while (this.#exchanges.length > 0) {
      const head = this.#exchanges[0] as Exchange;
      if (head.text === undefined) break;
      this.#exchanges.shift();
      text += head.text;
      if (!head.keepAlive) {
        isClosing = true;
        break;
      }
    }
    if (text === '') return;
    if (isClosing || (this.#isEnding && this.#exchanges.length === 0)) {
      this.#isEnding = true;
      this.#socket.end(text, 'latin1');
      for (const exchange of this.#exchanges.splice(0)) exchange.closed();
      return;
    }
    this.#socket.write(text, 'latin1');
    // After the write: requests read now may be answered at once, and those answers come after these.
    if (this.#isPaused && this.#exchanges.length <= MAX_WAITING_REQUESTS / 2) this.#unpause();
  }

  #onData(chunk: Buffer): void {
    if (this.#isEnding) return;
    if (this.#isPaused) {
      this.#backlog += chunk.toString('latin1');
      return;
    }
    this.#consume(chunk.toString('latin1'));
  }

  #unpause(): void {
    this.#isPaused = false;
    const backlog = this.#backlog;
    this.#backlog = '';
    this.#consume(backlog);
    if (!this.#isPaused && !this.#isEnding) this.#socket.resume();
  }

  #consume(input: string): void {
    let text = input;
    while (text.length > 0 && !this.#isEnding) {
      if (this.#body === 'none' && this.#exchanges.length >= MAX_WAITING_REQUESTS) {
        this.#isPaused = true;
        this.#backlog = text;
        this.#socket.pause();
        return;
      }
      if (this.#body === 'length') text = this.#dropLength(text);
      else if (this.#body === 'chunked') text = this.#dropChunked(text);
      else text = this.#readHead(text);
    }
  }

  /** Consumes a head from `this.#buffer + text` if complete; returns what is left after it. */
  #readHead(text: string): string {
    const data = this.#buffer + text;
    // Tolerate empty lines before a request line (RFC 9112 §2.2).
    let start = 0;
    while (data.startsWith('\r\n', start)) start += 2;
    const end = data.indexOf('\r\n\r\n', start);
    if (end < 0) {
      if (data.length - start > this.#maxHeadBytes) this.#refuse(431, 'ERR_INVALID_REQUEST', 'the request head is too large');
      else this.#buffer = data.slice(start);
      return '';
    }
    if (end - start > this.#maxHeadBytes) {
      this.#refuse(431, 'ERR_INVALID_REQUEST', 'the request head is too large');
      return '';
    }
    this.#buffer = '';
    const lines = data.slice(start, end).split('\r\n');
    const requestLine = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) HTTP\/1\.([01])$/.exec(lines[0] ?? '');
    if (requestLine === null) {
      this.#refuse(400, 'ERR_INVALID_REQUEST', 'malformed request line');
      return '';
    }
    const headers = new Map<string, string>();
    let contentLength: string | undefined;
    let transferEncoding: string | undefined;
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i] as string;
      const colon = line.indexOf(':');
      // No name, whitespace before the colon, or a folded line (obsolete): all refused, as RFC 9112 §5 asks.
      if (colon <= 0 || line.charCodeAt(colon - 1) === 32 || line.charCodeAt(colon - 1) === 9 || line.charCodeAt(0) === 32 || line.charCodeAt(0) === 9) {
        this.#refuse(400, 'ERR_INVALID_REQUEST', 'malformed header line');
        return '';
      }
      const name = line.slice(0, colon).toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === 'content-length') {
        if (contentLength !== undefined && contentLength !== value) {
          this.#refuse(400, 'ERR_INVALID_REQUEST', 'conflicting content-length headers');
          return '';
        }
        contentLength = value;
      } else if (name === 'transfer-encoding') {
        transferEncoding = transferEncoding === undefined ? value : `${transferEncoding}, ${value}`;
      }
      if (!headers.has(name)) headers.set(name, value);
    }
    const isHttp10 = requestLine[3] === '0';
    const connection = (headers.get('connection') ?? '').toLowerCase();
    const keepAlive = isHttp10 ? /(^|,)\s*keep-alive\s*(,|$)/.test(connection) : !/(^|,)\s*close\s*(,|$)/.test(connection);
    if (transferEncoding !== undefined) {
      // Only chunked, as the final (and here the only) coding; with Content-Length too, the request is refused (RFC 9112 §6.1).
      if (transferEncoding.toLowerCase() !== 'chunked' || contentLength !== undefined) {
        this.#refuse(transferEncoding.toLowerCase() === 'chunked' ? 400 : 501, 'ERR_INVALID_REQUEST', `unsupported transfer-encoding '${transferEncoding}'`);
        return '';
      }
      this.#body = 'chunked';
      this.#remaining = 0;
      this.#inTrailers = false;
    } else if (contentLength !== undefined) {
      if (!/^\d{1,15}$/.test(contentLength)) {
        this.#refuse(400, 'ERR_INVALID_REQUEST', `invalid content-length '${contentLength}'`);
        return '';
      }
      const length = Number(contentLength);
      this.#body = length > 0 ? 'length' : 'none';
      this.#remaining = length;
    }
    if (this.#body !== 'none' && (headers.get('expect') ?? '').toLowerCase() === '100-continue' && this.#exchanges.length === 0) {
      this.#socket.write('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');
    }
    const exchange = new Exchange(this, keepAlive);
    this.#exchanges.push(exchange);
    if (!keepAlive) this.#isEnding = true;
    try {
      this.#handler(new Request(requestLine[1] as string, requestLine[2] as string, headers), exchange);
    } catch {
      exchange.send(500, '{"error":{"code":"ERR_INTERNAL","message":"the emulated sandbox failed to answer"}}');
    }
    return data.slice(end + 4);
  }

  #dropLength(text: string): string {
    if (text.length < this.#remaining) {
      this.#remaining -= text.length;
      return '';
    }
    const rest = text.slice(this.#remaining);
    this.#remaining = 0;
    this.#body = 'none';
    return rest;
  }

  /** Drops chunk data, reads chunk-size lines and the trailers; returns what follows the body. */
  #dropChunked(text: string): string {
    let data = text;
    while (data.length > 0) {
      if (this.#remaining > 0) {
        const n = Math.min(this.#remaining, data.length);
        this.#remaining -= n;
        data = data.slice(n);
        continue;
      }
      const all = this.#buffer + data;
      const eol = all.indexOf('\r\n');
      if (eol < 0) {
        if (all.length > this.#maxHeadBytes) this.#refuse(400, 'ERR_INVALID_REQUEST', 'chunk-size line too long');
        else this.#buffer = all;
        return '';
      }
      this.#buffer = '';
      const line = all.slice(0, eol);
      data = all.slice(eol + 2);
      if (this.#inTrailers) {
        // Trailer fields are dropped; an empty line ends the body.
        if (line === '') {
          this.#body = 'none';
          return data;
        }
        continue;
      }
      const size = /^([0-9A-Fa-f]{1,12})(?:[ \t]*;.*)?$/.exec(line);
      if (size === null) {
        this.#refuse(400, 'ERR_INVALID_REQUEST', 'malformed chunk size');
        return '';
      }
      const length = Number.parseInt(size[1] as string, 16);
      if (length === 0) this.#inTrailers = true;
      else this.#remaining = length + 2; // the data and its CRLF
    }
    return '';
  }

  /** Answers a malformed request and closes the connection once every answer before it is written. */
  #refuse(status: number, code: string, message: string): void {
    this.#buffer = '';
    this.#body = 'none';
    const exchange = new Exchange(this, false);
    this.#exchanges.push(exchange);
    this.#isEnding = true;
    exchange.send(status, JSON.stringify({ error: { code, message } }));
  }
}
