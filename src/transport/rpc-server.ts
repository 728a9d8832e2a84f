import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { BatonError, toBatonError } from '../core/errors.ts';
import { FrameDecoder, FrameError, encodeFrame, writeCorked } from './rpc-frames.ts';

/**
 * The server side of Baton's internal RPC stream. A peer upgrades one HTTP/1.1 connection
 * (`GET /internal/v1/rpc`, `Upgrade: baton-rpc/1`) and then sends framed calls on it — the same
 * method, path and JSON body as the HTTP API, answered by the same handlers — instead of one HTTP
 * exchange per call. Calls on a connection run concurrently and are answered by id; answers written
 * in one tick leave in one write.
 */

export const RPC_PATH = '/internal/v1/rpc';
export const RPC_PROTOCOL = 'baton-rpc/1';
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024;

export interface RpcReply {
  readonly status: number;
  readonly body: unknown;
}

/** Runs one call: the HTTP route for `method` and `path`, given the parsed body. */
export type RpcDispatch = (method: string, path: string, body: unknown) => Promise<RpcReply>;
/** What serves a stream's calls: a dispatch, told which request opened the stream (its socket, its peer's certificate). */
export type RpcStreamDispatch = (method: string, path: string, body: unknown, upgrade: IncomingMessage) => Promise<RpcReply>;

export interface RpcServerOptions {
  readonly maxFrameBytes?: number;
  /** Calls running at once on one connection; beyond it the connection is not read until some finish. */
  readonly maxInFlight?: number;
  /** A connection broke the protocol (it is closed). */
  readonly onProtocolError?: (err: Error) => void;
  /** Checks an upgrade before it is accepted; false when it has answered (401) and closed the socket. */
  readonly admit?: (req: IncomingMessage, socket: Duplex) => boolean;
}

export interface RpcServer {
  /** Closes every upgraded connection (they are no longer the HTTP server's, so its close() would wait for them). */
  close(): void;
  readonly connections: number;
}

const HIGH_WATER_BYTES = 8 * 1024 * 1024;

/** Serves the RPC stream on `server`'s upgrade requests for RPC_PATH; other upgrades are refused. */
export function serveRpc(server: Server, dispatch: RpcStreamDispatch, options: RpcServerOptions = {}): RpcServer {
  const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  const maxInFlight = options.maxInFlight ?? 4096;
  const sockets = new Set<Duplex>();
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const protocol = String(req.headers.upgrade ?? '').toLowerCase();
    if (req.url !== RPC_PATH || protocol !== RPC_PROTOCOL) {
      socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    if (options.admit !== undefined && !options.admit(req, socket)) return;
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: ${RPC_PROTOCOL}\r\n\r\n`);
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    serveConnection(socket, head, (method, path, body) => dispatch(method, path, body, req), maxFrameBytes, maxInFlight, options.onProtocolError);
  });
  return {
    close() {
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    },
    get connections() {
      return sockets.size;
    },
  };
}

function serveConnection(
  socket: Duplex, head: Buffer, dispatch: RpcDispatch, maxFrameBytes: number, maxInFlight: number, onProtocolError: ((err: Error) => void) | undefined,
): void {
  (socket as Duplex & { setNoDelay?: (noDelay: boolean) => void }).setNoDelay?.(true);
  let inFlight = 0;
  const isOverloaded = (): boolean => inFlight >= maxInFlight || socket.writableLength > HIGH_WATER_BYTES;
  const maybeResume = (): void => {
    if (socket.isPaused() && !isOverloaded() && !socket.destroyed) socket.resume();
  };
  socket.on('drain', maybeResume);

  const answer = (id: number, status: number, body: unknown): void => {
    if (socket.destroyed) return;
    let frame = encodeFrame([id, status, body ?? null], maxFrameBytes);
    if (frame === undefined) {
      const err = new BatonError('ERR_INTERNAL', `the answer is larger than the RPC frame limit of ${maxFrameBytes} bytes`);
      frame = encodeFrame([id, err.status, err.toBody()], maxFrameBytes) as Buffer;
    }
    writeCorked(socket, frame);
  };

  const onCall = (value: unknown): void => {
    if (!Array.isArray(value) || value.length !== 4 || typeof value[0] !== 'number' || typeof value[1] !== 'string' || typeof value[2] !== 'string') {
      throw new FrameError('a call frame must be [id, method, path, body]');
    }
    const [id, method, path, body] = value as [number, string, string, unknown];
    inFlight++;
    dispatch(method, path, body).then(
      (reply) => answer(id, reply.status, reply.body),
      (err: unknown) => {
        const e = toBatonError(err);
        answer(id, e.status, e.toBody());
      },
    ).finally(() => {
      inFlight--;
      maybeResume();
    });
    if (isOverloaded()) socket.pause();
  };

  const decoder = new FrameDecoder(maxFrameBytes, onCall);
  const onData = (chunk: Buffer): void => {
    try {
      decoder.push(chunk);
    } catch (err) {
      onProtocolError?.(err as Error);
      socket.destroy();
    }
  };
  socket.on('data', onData);
  socket.on('error', () => socket.destroy());
  if (head.length > 0) onData(head);
}
