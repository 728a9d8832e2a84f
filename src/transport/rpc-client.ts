import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import { systemClock, type Clock, type Timer } from '../core/clock.ts';
import { BatonError } from '../core/errors.ts';
import { FrameDecoder, encodeFrame, writeCorked } from './rpc-frames.ts';
import { DEFAULT_MAX_FRAME_BYTES, RPC_PATH, RPC_PROTOCOL } from './rpc-server.ts';
import { clientTlsOptions, type TlsMaterial } from './tls.ts';

/**
 * The client side of Baton's internal RPC stream: one upgraded connection to a peer's origin that
 * carries every call to it, answered by id (see rpc-server.ts). Opened on the first call and again
 * after it breaks; a broken connection fails its calls in flight with ERR_UNAVAILABLE, as a failed
 * HTTP request would. Deadlines are checked by one timer per connection, armed only while calls
 * are in flight, not one timer per call.
 */

/** The peer answered the upgrade with something other than 101: it does not serve the RPC stream. */
export class RpcUnsupportedError extends Error {}

export interface RpcConnectionOptions {
  readonly maxFrameBytes?: number;
  /** Calls in flight at once; a call beyond it is refused at once with ERR_OVERLOADED. */
  readonly maxPending?: number;
  readonly connectTimeoutMs?: number;
  /** Bytes written and not yet taken by the peer (or waiting for the connection) beyond which calls are refused with ERR_OVERLOADED. */
  readonly maxUnsentBytes?: number;
  /** Deadlines and the connect timeout; default the real clock. */
  readonly clock?: Clock;
  /** The `authorization` header of the upgrade (the stream's credential, checked once). */
  readonly authorization?: string;
  /** For an `https` origin: the cluster CA and this daemon's certificate (mutual TLS). */
  readonly tls?: TlsMaterial | undefined;
}

interface PendingCall {
  readonly method: string;
  readonly path: string;
  readonly deadline: number;
  readonly timeoutMs: number;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: Error) => void;
  readonly signal: AbortSignal | undefined;
  readonly onAbort: (() => void) | undefined;
}

type State = 'idle' | 'connecting' | 'open';

const SWEEP_MS = 50;

export class RpcConnection {
  readonly origin: string;
  readonly #url: URL;
  readonly #maxFrameBytes: number;
  readonly #maxPending: number;
  readonly #connectTimeoutMs: number;
  readonly #maxUnsentBytes: number;
  readonly #clock: Clock;
  readonly #authorization: string | undefined;
  readonly #tls: TlsMaterial | undefined;
  readonly #pending = new Map<number, PendingCall>();
  #nextId = 1;
  #state: State = 'idle';
  #socket: Socket | undefined;
  /** Frames written while the connection opens. */
  #queued: Buffer[] = [];
  #queuedBytes = 0;
  #sweep: Timer | undefined;
  #isClosed = false;
  /** Set once the peer refused the upgrade: callers use HTTP instead. */
  isUnsupported = false;

  constructor(origin: string, options: RpcConnectionOptions = {}) {
    this.#url = new URL(origin);
    this.origin = this.#url.origin;
    this.#maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.#maxPending = options.maxPending ?? 65_536;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 5_000;
    this.#maxUnsentBytes = options.maxUnsentBytes ?? 64 * 1024 * 1024;
    this.#clock = options.clock ?? systemClock;
    this.#authorization = options.authorization;
    this.#tls = options.tls;
  }

  /** The credential the stream is opened with. */
  get authorization(): string | undefined {
    return this.#authorization;
  }

  /**
   * The stream is up: a call made now is sent at once, and can fail but never with
   * RpcUnsupportedError (that is only learnt while connecting).
   */
  get isOpen(): boolean {
    return this.#state === 'open';
  }

  /** Calls in flight (tests, diagnostics). */
  get pending(): number {
    return this.#pending.size;
  }

  /**
   * Sends one call and resolves with the answer's body (undefined when it has none); a status of
   * 400 or more rejects with the BatonError the peer sent.
   */
  call(method: string, path: string, body: unknown, timeoutMs: number, signal?: AbortSignal): Promise<unknown> {
    if (this.#isClosed) return Promise.reject(new BatonError('ERR_UNAVAILABLE', `${this.#what(method, path)}: the client is closed`));
    if (this.isUnsupported) return Promise.reject(new RpcUnsupportedError(`${this.origin} does not serve ${RPC_PROTOCOL}`));
    if (signal?.aborted === true) return Promise.reject(new BatonError('ERR_UNAVAILABLE', `${this.#what(method, path)}: aborted`));
    const unsent = this.#socket === undefined ? this.#queuedBytes : this.#socket.writableLength;
    if (unsent > this.#maxUnsentBytes) {
      return Promise.reject(new BatonError('ERR_OVERLOADED', `${this.#what(method, path)}: ${unsent} bytes already waiting to be sent to ${this.origin}`));
    }
    if (this.#pending.size >= this.#maxPending) {
      return Promise.reject(new BatonError('ERR_OVERLOADED', `${this.#what(method, path)}: ${this.#pending.size} calls already in flight to ${this.origin}`));
    }
    const id = this.#nextId++;
    const frame = encodeFrame([id, method, path, body ?? null], this.#maxFrameBytes);
    if (frame === undefined) {
      return Promise.reject(new BatonError('ERR_PAYLOAD_TOO_LARGE', `${this.#what(method, path)}: the body is larger than the RPC frame limit of ${this.#maxFrameBytes} bytes`));
    }
    return new Promise<unknown>((resolve, reject) => {
      const onAbort = signal === undefined ? undefined : () => this.#fail(id, new BatonError('ERR_UNAVAILABLE', `${this.#what(method, path)}: aborted`));
      if (onAbort !== undefined) signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending.set(id, { method, path, deadline: this.#clock.now() + timeoutMs, timeoutMs, resolve, reject, signal, onAbort });
      this.#sweep ??= this.#clock.setTimeout(this.#onSweep, SWEEP_MS);
      this.#send(frame);
    });
  }

  /** "POST http://host:port/path", for messages (built only when one is needed). */
  #what(method: string, path: string): string {
    return `${method} ${this.origin}${path}`;
  }

  /** Fails the calls in flight and closes the connection; later calls are refused. */
  close(): void {
    this.#isClosed = true;
    this.#drop(new BatonError('ERR_UNAVAILABLE', `the connection to ${this.origin} was closed`));
  }

  #send(frame: Buffer): void {
    if (this.#state === 'open') {
      writeCorked(this.#socket as Socket, frame);
      return;
    }
    this.#queued.push(frame);
    this.#queuedBytes += frame.length;
    if (this.#state === 'idle') this.#connect();
  }

  #connect(): void {
    this.#state = 'connecting';
    const isTls = this.#url.protocol === 'https:';
    const options = {
      host: this.#url.hostname.replace(/^\[|\]$/g, ''), port: this.#url.port === '' ? (isTls ? 443 : 80) : Number(this.#url.port),
      path: RPC_PATH, method: 'GET', agent: false,
      headers: { connection: 'Upgrade', upgrade: RPC_PROTOCOL, ...(this.#authorization === undefined ? {} : { authorization: this.#authorization }) },
    } as const;
    // An https origin: the stream runs over mutual TLS (the cluster CA, this daemon's certificate).
    const req = isTls ? httpsRequest({ ...options, ...(this.#tls === undefined ? {} : clientTlsOptions(this.#tls)) }) : httpRequest(options);
    const timer = this.#clock.setTimeout(() => req.destroy(new Error(`no answer to the upgrade within ${this.#connectTimeoutMs} ms`)), this.#connectTimeoutMs);
    req.on('upgrade', (_res, socket: Socket, head: Buffer) => {
      timer.cancel();
      if (this.#isClosed) {
        socket.destroy();
        return;
      }
      this.#open(socket, head);
    });
    req.on('response', (res) => {
      timer.cancel();
      if (res.statusCode === 401) {
        // The peer serves the stream but not to this credential: the calls fail as they would over HTTP.
        res.resume();
        this.#state = 'idle';
        this.#drop(new BatonError('ERR_UNAUTHENTICATED', `${this.origin} refused the credential of the RPC stream`));
        return;
      }
      res.resume();
      this.isUnsupported = true;
      this.#state = 'idle';
      this.#drop(new RpcUnsupportedError(`${this.origin} answered the upgrade with ${res.statusCode}`));
    });
    req.on('error', (err) => {
      timer.cancel();
      if (this.#state !== 'connecting') return;
      this.#state = 'idle';
      this.#drop(new BatonError('ERR_UNAVAILABLE', `connecting to ${this.origin} failed: ${err.message}`, { cause: err }));
    });
    req.end();
  }

  #open(socket: Socket, head: Buffer): void {
    this.#state = 'open';
    this.#socket = socket;
    socket.setNoDelay(true);
    const decoder = new FrameDecoder(this.#maxFrameBytes, (value) => this.#onAnswer(value));
    const onData = (chunk: Buffer): void => {
      try {
        decoder.push(chunk);
      } catch (err) {
        socket.destroy(err as Error);
      }
    };
    socket.on('data', onData);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (this.#socket !== socket) return;
      this.#socket = undefined;
      this.#state = 'idle';
      this.#drop(new BatonError('ERR_UNAVAILABLE', `the connection to ${this.origin} closed`));
    });
    const queued = this.#queued;
    this.#queued = [];
    this.#queuedBytes = 0;
    if (queued.length > 0) {
      socket.cork();
      for (const frame of queued) socket.write(frame);
      socket.uncork();
    }
    if (head.length > 0) onData(head);
  }

  #onAnswer(value: unknown): void {
    if (!Array.isArray(value) || value.length !== 3 || typeof value[0] !== 'number' || typeof value[1] !== 'number') {
      this.#socket?.destroy(new Error('an answer frame must be [id, status, body]'));
      return;
    }
    const [id, status, body] = value as [number, number, unknown];
    const call = this.#take(id);
    if (call === undefined) return; // timed out or aborted already
    if (status >= 400) call.reject(BatonError.fromBody(body, `${this.#what(call.method, call.path)} answered ${status}`));
    else call.resolve(body === null ? undefined : body);
  }

  #take(id: number): PendingCall | undefined {
    const call = this.#pending.get(id);
    if (call === undefined) return undefined;
    this.#pending.delete(id);
    if (call.onAbort !== undefined) call.signal?.removeEventListener('abort', call.onAbort);
    return call;
  }

  #fail(id: number, err: Error): void {
    this.#take(id)?.reject(err);
  }

  /** Fails every call in flight and drops the socket and the frames waiting for it. */
  #drop(err: Error): void {
    const socket = this.#socket;
    this.#socket = undefined;
    this.#queued = [];
    this.#queuedBytes = 0;
    if (this.#state === 'open') this.#state = 'idle';
    socket?.destroy();
    for (const id of [...this.#pending.keys()]) this.#fail(id, err);
    this.#sweep?.cancel();
    this.#sweep = undefined;
  }

  readonly #onSweep = (): void => {
    this.#sweep = undefined;
    const now = this.#clock.now();
    for (const [id, call] of this.#pending) {
      if (call.deadline <= now) this.#fail(id, new BatonError('ERR_TIMEOUT', `${this.#what(call.method, call.path)} took longer than ${call.timeoutMs} ms`));
    }
    if (this.#pending.size > 0) this.#sweep = this.#clock.setTimeout(this.#onSweep, SWEEP_MS);
  };
}

/** One RPC connection per origin, shared by every client of a peer behind it; the owner closes them. */
export class RpcConnections {
  readonly #options: RpcConnectionOptions;
  readonly #byOrigin = new Map<string, RpcConnection>();

  constructor(options: RpcConnectionOptions = {}) {
    this.#options = options;
  }

  /** The connection to `url`'s origin opened with `authorization`; one with another credential is closed and replaced. */
  for(url: string, authorization?: string): RpcConnection {
    const origin = new URL(url).origin;
    let connection = this.#byOrigin.get(origin);
    if (connection !== undefined && connection.authorization !== authorization) {
      connection.close();
      connection = undefined;
    }
    if (connection === undefined) {
      connection = new RpcConnection(origin, authorization === undefined ? this.#options : { ...this.#options, authorization });
      this.#byOrigin.set(origin, connection);
    }
    return connection;
  }

  /** Closes the connection to `url`'s origin (its peer left). */
  forget(url: string): void {
    const origin = new URL(url).origin;
    this.#byOrigin.get(origin)?.close();
    this.#byOrigin.delete(origin);
  }

  close(): void {
    for (const connection of this.#byOrigin.values()) connection.close();
    this.#byOrigin.clear();
  }
}
