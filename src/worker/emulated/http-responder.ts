import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/**
 * A small HTTP/1.1 server for the emulated sandboxes: it reads requests off each connection and
 * hands the handler only what an emulated function needs (method, target, the headers it names),
 * and writes each answer as one preformatted write, in request order. It exists because the
 * emulated runtime stands in for thousands of function processes inside one worker process: with
 * Node's `http` server, serving their invocations cost that process as much CPU as its whole control
 * path (a request and a response object, both streams, per invocation); this costs a fraction.
 *
 * It speaks the HTTP/1.1 its only client — the data plane's upstream pool — sends: keep-alive,
 * pipelining (answered in order), bodies with `content-length` or `transfer-encoding: chunked`
 * (read and dropped: an emulated function ignores its payload), `connection: close`. Anything else
 * is answered 400 (malformed), 431 (a head over 16 KiB), 501 (another transfer coding) and the
 * connection is closed.
 */

export interface LeanRequest {
  readonly method: string;
  /** The request target, e.g. `/fn/hello/?x=1`. */
  readonly target: string;
  /** Lower-cased names → values, for the header names the server was asked to keep. */
  readonly headers: ReadonlyMap<string, string>;
}

export interface LeanAnswer {
  readonly status: number;
  readonly body: string;
}

/**
 * Answers a request now or later by calling `respond` once (later calls, and calls after the
 * connection closed, are ignored). May return a function that cancels the work: it is called if the
 * connection closes before the answer.
 */
export type LeanHandler = (request: LeanRequest, respond: (answer: LeanAnswer) => void) => (() => void) | void;

export const MAX_HEAD_BYTES = 16 * 1024;

const REASONS: Readonly<Record<number, string>> = {
  200: 'OK', 400: 'Bad Request', 404: 'Not Found', 431: 'Request Header Fields Too Large', 501: 'Not Implemented', 503: 'Service Unavailable',
};

export function formatResponse(answer: LeanAnswer, isClose: boolean): string {
  const length = Buffer.byteLength(answer.body);
  const reason = REASONS[answer.status] ?? 'Unknown';
  return `HTTP/1.1 ${answer.status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${length}\r\n${isClose ? 'connection: close\r\n' : ''}\r\n${answer.body}`;
}

/** Why a connection's bytes could not be read as HTTP/1.1. */
class ProtocolError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

type BodyState =
  | { readonly kind: 'none' }
  | { readonly kind: 'length'; left: number }
  | { readonly kind: 'chunked'; phase: 'size' | 'data' | 'data-crlf' | 'trailers'; left: number };

/** Reads one connection: requests in, answers out in request order. */
class Connection {
  readonly #socket: ConnectionSocket;
  readonly #handler: LeanHandler;
  readonly #keep: ReadonlySet<string>;
  #buffer = '';
  #body: BodyState = { kind: 'none' };
  /** Sequence numbers: of the next request read, and of the next answer to write. */
  #nextSeq = 0;
  #nextToWrite = 0;
  /** Answers ready but waiting for an earlier one. */
  readonly #ready = new Map<number, string>();
  /** Cancels of the requests not answered yet. */
  readonly #cancels = new Map<number, () => void>();
  #isCloseAfter = false;
  #isDone = false;

  constructor(socket: ConnectionSocket, handler: LeanHandler, keep: ReadonlySet<string>) {
    this.#socket = socket;
    this.#handler = handler;
    this.#keep = keep;
    socket.setNoDelay(true);
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => this.#onData(chunk));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.#onClose());
  }

  #onClose(): void {
    this.#isDone = true;
    for (const cancel of this.#cancels.values()) cancel();
    this.#cancels.clear();
    this.#ready.clear();
  }

  #onData(chunk: string): void {
    if (this.#isDone || this.#isCloseAfter) return;
    this.#buffer += chunk;
    try {
      while (!this.#isDone && !this.#isCloseAfter && this.#step());
    } catch (err) {
      this.#fail(err instanceof ProtocolError ? err.status : 400, err instanceof Error ? err.message : String(err));
    }
    // Bytes after a request that closes the connection are not read.
    if (this.#isCloseAfter) this.#buffer = '';
  }

  /** Consumes what it can of the buffer; true when it made progress and may go on. */
  #step(): boolean {
    const body = this.#body;
    if (body.kind === 'length') {
      const take = Math.min(body.left, this.#buffer.length);
      body.left -= take;
      this.#buffer = this.#buffer.slice(take);
      if (body.left > 0) return false;
      this.#body = { kind: 'none' };
      return true;
    }
    if (body.kind === 'chunked') return this.#stepChunked(body);
    if (this.#buffer.length === 0) return false;
    const end = this.#buffer.indexOf('\r\n\r\n');
    if (end < 0) {
      if (this.#buffer.length > MAX_HEAD_BYTES) throw new ProtocolError(431, `a request head over ${MAX_HEAD_BYTES} bytes`);
      return false;
    }
    if (end > MAX_HEAD_BYTES) throw new ProtocolError(431, `a request head over ${MAX_HEAD_BYTES} bytes`);
    const head = this.#buffer.slice(0, end);
    this.#buffer = this.#buffer.slice(end + 4);
    this.#onHead(head);
    return true;
  }

  #onHead(head: string): void {
    const lines = head.split('\r\n');
    const requestLine = lines[0] ?? '';
    const parts = requestLine.split(' ');
    const [method = '', target = '', version = ''] = parts;
    if (parts.length !== 3 || !/^[A-Z]+$/.test(method) || target === '' || !/^HTTP\/1\.[01]$/.test(version)) {
      throw new ProtocolError(400, `a malformed request line '${requestLine.slice(0, 100)}'`);
    }
    const headers = new Map<string, string>();
    let contentLength: number | undefined;
    let isChunked = false;
    let isClose = version === 'HTTP/1.0';
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i] as string;
      const colon = line.indexOf(':');
      if (colon <= 0) throw new ProtocolError(400, 'a malformed header line');
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === 'content-length') {
        if (!/^\d{1,15}$/.test(value) || (contentLength !== undefined && contentLength !== Number(value))) throw new ProtocolError(400, `an invalid content-length '${value.slice(0, 30)}'`);
        contentLength = Number(value);
      } else if (name === 'transfer-encoding') {
        if (value.toLowerCase() !== 'chunked') throw new ProtocolError(501, `transfer-encoding '${value.slice(0, 30)}' is not supported`);
        isChunked = true;
      } else if (name === 'connection') {
        const tokens = value.toLowerCase().split(',').map((t) => t.trim());
        if (tokens.includes('close')) isClose = true;
        else if (tokens.includes('keep-alive')) isClose = false;
      }
      if (this.#keep.has(name) && !headers.has(name)) headers.set(name, value);
    }
    if (isChunked && contentLength !== undefined) throw new ProtocolError(400, 'both content-length and transfer-encoding');
    if (isChunked) this.#body = { kind: 'chunked', phase: 'size', left: 0 };
    else if (contentLength !== undefined && contentLength > 0) this.#body = { kind: 'length', left: contentLength };
    if (isClose) this.#isCloseAfter = true;
    const seq = this.#nextSeq++;
    let isAnswered = false;
    const cancel = this.#handler({ method, target, headers }, (answer) => {
      if (isAnswered || this.#isDone) return;
      isAnswered = true;
      this.#cancels.delete(seq);
      this.#answer(seq, formatResponse(answer, isClose));
    });
    if (!isAnswered && typeof cancel === 'function') this.#cancels.set(seq, cancel);
  }

  #stepChunked(body: Extract<BodyState, { kind: 'chunked' }>): boolean {
    if (body.phase === 'data') {
      const take = Math.min(body.left, this.#buffer.length);
      body.left -= take;
      this.#buffer = this.#buffer.slice(take);
      if (body.left > 0) return false;
      body.phase = 'data-crlf';
      return true;
    }
    const eol = this.#buffer.indexOf('\r\n');
    if (eol < 0) {
      if (this.#buffer.length > MAX_HEAD_BYTES) throw new ProtocolError(400, 'a chunk framing line over the head limit');
      return false;
    }
    const line = this.#buffer.slice(0, eol);
    this.#buffer = this.#buffer.slice(eol + 2);
    if (body.phase === 'data-crlf') {
      if (line !== '') throw new ProtocolError(400, 'chunk data not followed by CRLF');
      body.phase = 'size';
    } else if (body.phase === 'trailers') {
      if (line === '') this.#body = { kind: 'none' };
    } else {
      const sizeText = (line.split(';')[0] ?? '').trim();
      if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) throw new ProtocolError(400, `an invalid chunk size '${sizeText.slice(0, 30)}'`);
      const size = Number.parseInt(sizeText, 16);
      if (size === 0) body.phase = 'trailers';
      else {
        body.phase = 'data';
        body.left = size;
      }
    }
    return true;
  }

  /** Records an answer and writes every answer now due in order, in one write. */
  #answer(seq: number, text: string): void {
    this.#ready.set(seq, text);
    let out = '';
    for (let next = this.#ready.get(this.#nextToWrite); next !== undefined; next = this.#ready.get(this.#nextToWrite)) {
      out += next;
      this.#ready.delete(this.#nextToWrite);
      this.#nextToWrite++;
    }
    if (out !== '') this.#socket.write(out, 'utf8');
    if (this.#isCloseAfter && this.#nextToWrite === this.#nextSeq) this.#end();
  }

  /** A protocol error: answered after the answers already due, then the connection is closed. */
  #fail(status: number, message: string): void {
    this.#isCloseAfter = true;
    this.#body = { kind: 'none' };
    const seq = this.#nextSeq++;
    this.#answer(seq, formatResponse({ status, body: JSON.stringify({ error: { code: 'ERR_INVALID_REQUEST', message } }) }, true));
  }

  #end(): void {
    if (this.#isDone) return;
    this.#isDone = true;
    this.#socket.end();
  }
}

/** The socket surface a connection uses (a `net.Socket`; tests pass a stand-in). */
export type ConnectionSocket = Pick<Socket, 'setNoDelay' | 'setEncoding' | 'on' | 'write' | 'end' | 'destroy'>;

/** Serves HTTP/1.1 requests arriving on `socket` with `handler`. */
export function serveConnection(socket: ConnectionSocket, handler: LeanHandler, keepHeaders: ReadonlySet<string>): void {
  new Connection(socket, handler, keepHeaders);
}

/** The server: `listen` it, `close` to stop it and drop every connection. */
export class ResponderServer {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();

  /** `keepHeaders`: the (lower-case) header names handed to the handler; others are read and dropped. */
  constructor(handler: LeanHandler, keepHeaders: readonly string[]) {
    const keep = new Set(keepHeaders);
    this.#server = createServer((socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
      serveConnection(socket, handler, keep);
    });
  }

  /** Resolves with the port it listens on. */
  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => {
        this.#server.off('error', reject);
        resolve((this.#server.address() as AddressInfo).port);
      });
    });
  }

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
