import type { Writable } from 'node:stream';
import { systemClock } from '../core/clock.ts';

/**
 * Framing of Baton's internal RPC stream: each frame is a 4-byte big-endian length followed by
 * that many bytes of UTF-8 JSON. A request is `[id, method, path, body]`, a response
 * `[id, status, body]` (`body` null when there is none).
 */

/**
 * Writes a frame; the frames written in one turn of the event loop leave in one write: the first
 * corks the socket and an immediate (run after the loop has handled all the I/O and timers that were
 * due) uncorks it. Under load that is fewer writes than one per I/O callback (the control plane's
 * writes per cold start at 1,000/s: 4.4 → 3.0), and each write may wake the peer, which is costly.
 */
export function writeCorked(socket: Writable, frame: Buffer): void {
  if (socket.writableCorked === 0) {
    socket.cork();
    // The socket's own turn: always the real event loop, whatever clock the caller's logic runs on.
    systemClock.defer(() => socket.uncork());
  }
  socket.write(frame);
}

/** Thrown by the decoder: the peer broke the framing; the connection cannot go on. */
export class FrameError extends Error {}

/** Encodes one frame; `undefined` when its JSON is over `maxFrameBytes`. */
export function encodeFrame(value: unknown, maxFrameBytes: number): Buffer | undefined {
  const json = JSON.stringify(value);
  const length = Buffer.byteLength(json);
  if (length > maxFrameBytes) return undefined;
  const frame = Buffer.allocUnsafe(4 + length);
  frame.writeUInt32BE(length, 0);
  frame.write(json, 4, 'utf8');
  return frame;
}

/**
 * Cuts a byte stream into frames and hands each one's parsed JSON to `onFrame`. Chunks are kept
 * as they arrive and copied once per frame, so a large frame split over many reads costs one copy.
 */
export class FrameDecoder {
  readonly #maxFrameBytes: number;
  readonly #onFrame: (value: unknown) => void;
  readonly #chunks: Buffer[] = [];
  #buffered = 0;
  /** Length of the frame being read, or -1 while its header is still due. */
  #need = -1;

  constructor(maxFrameBytes: number, onFrame: (value: unknown) => void) {
    this.#maxFrameBytes = maxFrameBytes;
    this.#onFrame = onFrame;
  }

  /** @throws FrameError on a frame over the limit or one that is not JSON. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    for (;;) {
      if (this.#need === -1) {
        if (this.#buffered < 4) return;
        this.#need = this.#take(4).readUInt32BE(0);
        if (this.#need > this.#maxFrameBytes) throw new FrameError(`frame of ${this.#need} bytes exceeds the limit of ${this.#maxFrameBytes}`);
      }
      if (this.#buffered < this.#need) return;
      const bytes = this.#take(this.#need);
      this.#need = -1;
      let value: unknown;
      try {
        value = JSON.parse(bytes.toString('utf8'));
      } catch {
        throw new FrameError('frame is not valid JSON');
      }
      this.#onFrame(value);
    }
  }

  /** Bytes received and not yet handed out (tests, diagnostics). */
  get buffered(): number {
    return this.#buffered;
  }

  #take(n: number): Buffer {
    this.#buffered -= n;
    const first = this.#chunks[0] as Buffer;
    if (first.length >= n) {
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let copied = 0;
    while (copied < n) {
      const chunk = this.#chunks[0] as Buffer;
      const k = Math.min(chunk.length, n - copied);
      chunk.copy(out, copied, 0, k);
      if (k === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(k);
      copied += k;
    }
    return out;
  }
}
