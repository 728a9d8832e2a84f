import { crc32 } from 'node:zlib';
import { mkdir, open, readdir, readFile, rm, truncate, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Clock, Timer } from '../../core/clock.ts';
import { createDeferred, type Deferred } from '../../core/deferred.ts';

/**
 * An append-only log of checksummed records in numbered segment files (`seg-00000001.log`, …)
 * with group commit: the records of one batch are written with one `writev` and made durable with
 * one `fdatasync`, so thousands of appends per second cost a few hundred fsyncs, not thousands.
 *
 * With `groupCommitMs: 0` (the default) the commit is the natural one databases use: a record
 * appended while no write is in flight is flushed in the next turn of the event loop (with every
 * record appended in the same turn), and the records that arrive while a write and its fsync are
 * in flight form the next batch, flushed as soon as that fsync returns. An idle log adds one fsync
 * to an append and no fixed wait; a busy one makes batches as large as an fsync is long. A
 * positive `groupCommitMs` also holds each batch's first record that long before the flush.
 *
 * Record framing (little-endian):
 *
 *     u32 length of what follows the checksum   u32 CRC-32 of it   u32 header length   header (JSON)   body
 *
 * A crash can leave the last record torn (a short write) or, on a bad disk, a record whose bytes
 * do not match their checksum. Replay stops at the first such record of a segment, reports it,
 * and truncates the segment there: nothing after a bad frame can be framed reliably, and a torn
 * tail is never replayed as garbage. A new segment is opened at every start.
 *
 * Segments are numbered; `append` says synchronously which segment a record lands in, so the
 * owner can count the live records per segment and `drop` a segment once nothing in it is needed.
 */
export interface SegmentLogOptions {
  readonly dir: string;
  readonly clock: Clock;
  /** How long the first record of a batch waits for others before the write and fsync (0: no wait, see above). */
  readonly groupCommitMs: number;
  /** A segment is closed once it holds this many bytes; the next record opens a new one. */
  readonly segmentMaxBytes: number;
}

/** One replayed record. */
export interface ReplayedRecord {
  readonly segment: number;
  readonly header: unknown;
  readonly body: Buffer;
}

export interface ReplayReport {
  readonly records: number;
  /** Segments whose tail (from `offset`) was torn or corrupt, and was cut off. */
  readonly corrupt: { readonly segment: number; readonly offset: number; readonly bytes: number; readonly reason: string }[];
}

const FRAME_BYTES = 8;
const SEGMENT_PATTERN = /^seg-(\d{8})\.log$/;

interface Pending {
  readonly segment: number;
  readonly buffers: Buffer[];
  bytes: number;
}

export class SegmentLog {
  readonly #options: SegmentLogOptions;
  #fh: FileHandle | undefined;
  #openSegment = 0;
  /** The segment the next appended record goes to, and the bytes assigned to it so far. */
  #segment = 0;
  #segmentBytes = 0;
  #pending: Pending[] = [];
  #waiters: Deferred<void>[] = [];
  #timer: Timer | undefined;
  #isDeferred = false;
  #flushing: Promise<void> | undefined;
  #segments = new Set<number>();
  #isClosed = false;
  #closing: Promise<void> | undefined;
  #fsyncs = 0;

  constructor(options: SegmentLogOptions) {
    this.#options = options;
  }

  /** fdatasync calls so far (for metrics and the benchmark). */
  get fsyncs(): number {
    return this.#fsyncs;
  }

  /** Segment numbers present on disk or being written. */
  get segments(): readonly number[] {
    return [...this.#segments].sort((a, b) => a - b);
  }

  get activeSegment(): number {
    return this.#segment;
  }

  /** Reads every segment in order (cutting torn tails), then opens a new segment for appends. */
  async open(onRecord: (record: ReplayedRecord) => void): Promise<ReplayReport> {
    await mkdir(this.#options.dir, { recursive: true });
    const numbers = (await readdir(this.#options.dir)).map((f) => SEGMENT_PATTERN.exec(f)).filter((m) => m !== null).map((m) => Number(m[1])).sort((a, b) => a - b);
    let records = 0;
    const corrupt: ReplayReport['corrupt'][number][] = [];
    for (const segment of numbers) {
      this.#segments.add(segment);
      const file = this.#file(segment);
      const data = await readFile(file);
      const { count, goodBytes, reason } = parseSegment(data, (header, body) => onRecord({ segment, header, body }));
      records += count;
      if (reason !== undefined) {
        corrupt.push({ segment, offset: goodBytes, bytes: data.length - goodBytes, reason });
        await truncate(file, goodBytes);
      }
    }
    this.#segment = (numbers.at(-1) ?? 0) + 1;
    this.#segmentBytes = 0;
    await this.#openFile(this.#segment);
    return { records, corrupt };
  }

  /**
   * Appends one record; returns the segment it goes to and a promise that resolves once it is on
   * disk (written and fdatasync'd with its batch).
   */
  append(header: unknown, body?: Buffer): { segment: number; durable: Promise<void> } {
    if (this.#isClosed) throw new Error('the segment log is closed');
    // One buffer per record (frame, header, body), so that a batch is one buffer written with one call.
    const json = JSON.stringify(header);
    const jsonBytes = Buffer.byteLength(json);
    const bodyBytes = body?.length ?? 0;
    const length = 4 + jsonBytes + bodyBytes;
    const size = FRAME_BYTES + length;
    const record = Buffer.allocUnsafe(size);
    record.writeUInt32LE(length, 0);
    record.writeUInt32LE(jsonBytes, FRAME_BYTES);
    record.write(json, FRAME_BYTES + 4, 'utf8');
    if (body !== undefined && bodyBytes > 0) body.copy(record, FRAME_BYTES + 4 + jsonBytes);
    record.writeUInt32LE(crc32(record.subarray(FRAME_BYTES)), 4);
    if (this.#segmentBytes > 0 && this.#segmentBytes + size > this.#options.segmentMaxBytes) {
      this.#segment += 1;
      this.#segmentBytes = 0;
    }
    this.#segmentBytes += size;
    this.#segments.add(this.#segment);
    const last = this.#pending.at(-1);
    if (last !== undefined && last.segment === this.#segment) {
      last.buffers.push(record);
      last.bytes += size;
    } else {
      this.#pending.push({ segment: this.#segment, buffers: [record], bytes: size });
    }
    const waiter = createDeferred<void>();
    this.#waiters.push(waiter);
    this.#schedule();
    return { segment: this.#segment, durable: waiter.promise };
  }

  /** Deletes a segment that holds nothing needed any more (never the one being appended to). */
  async drop(segment: number): Promise<void> {
    if (segment >= this.#segment || !this.#segments.has(segment)) return;
    this.#segments.delete(segment);
    if (segment === this.#openSegment) return;
    await rm(this.#file(segment), { force: true });
  }

  /** Flushes what is pending and closes the file. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#timer?.cancel();
    this.#timer = undefined;
    // No flush starts on its own from here: the one in flight ends, then what is pending is flushed here.
    while (this.#flushing !== undefined || this.#pending.length > 0) {
      if (this.#flushing !== undefined) await this.#flushing;
      else await this.#flush();
    }
    this.#isClosed = true;
    await this.#fh?.close();
    this.#fh = undefined;
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#isDeferred || this.#flushing !== undefined) return;
    if (this.#options.groupCommitMs > 0) {
      this.#timer = this.#options.clock.setTimeout(this.#onTimer, this.#options.groupCommitMs);
      return;
    }
    this.#isDeferred = true;
    this.#options.clock.defer(this.#onTimer);
  }

  readonly #onTimer = (): void => {
    this.#timer = undefined;
    this.#isDeferred = false;
    if (this.#closing !== undefined || this.#pending.length === 0) return;
    this.#flushing = this.#flush().finally(() => {
      this.#flushing = undefined;
      // What arrived during this write and fsync is the next batch: with no wait, flushed at once.
      if (this.#pending.length === 0) return;
      if (this.#options.groupCommitMs > 0) this.#schedule();
      else this.#onTimer();
    });
  };

  async #flush(): Promise<void> {
    const pending = this.#pending;
    const waiters = this.#waiters;
    this.#pending = [];
    this.#waiters = [];
    try {
      for (const part of pending) {
        if (part.segment !== this.#openSegment) {
          await this.#sync();
          await this.#fh?.close();
          await this.#openFile(part.segment);
        }
        await writeAll(this.#fh as FileHandle, part.buffers.length === 1 ? part.buffers : [Buffer.concat(part.buffers, part.bytes)]);
      }
      await this.#sync();
      for (const waiter of waiters) waiter.resolve();
    } catch (err) {
      for (const waiter of waiters) waiter.reject(err);
    }
  }

  async #sync(): Promise<void> {
    if (this.#fh === undefined) return;
    await this.#fh.datasync();
    this.#fsyncs += 1;
  }

  async #openFile(segment: number): Promise<void> {
    this.#fh = await open(this.#file(segment), 'a');
    this.#openSegment = segment;
    this.#segments.add(segment);
    // The new file's directory entry must be durable too, or a crash could lose the whole segment.
    const dir = await open(this.#options.dir, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  #file(segment: number): string {
    return path.join(this.#options.dir, `seg-${String(segment).padStart(8, '0')}.log`);
  }
}

async function writeAll(fh: FileHandle, buffers: Buffer[]): Promise<void> {
  // writev may write less than asked (large batches); continue from where it stopped.
  let rest = buffers;
  while (rest.length > 0) {
    const { bytesWritten } = await fh.writev(rest);
    rest = skipBytes(rest, bytesWritten);
  }
}

function skipBytes(buffers: Buffer[], bytes: number): Buffer[] {
  let left = bytes;
  let i = 0;
  while (i < buffers.length && left >= (buffers[i] as Buffer).length) {
    left -= (buffers[i] as Buffer).length;
    i += 1;
  }
  if (i >= buffers.length) return [];
  const rest = buffers.slice(i);
  rest[0] = (rest[0] as Buffer).subarray(left);
  return rest;
}

/** Parses records until the end or the first bad one; `goodBytes` is where the good prefix ends. */
export function parseSegment(data: Buffer, onRecord: (header: unknown, body: Buffer) => void): { count: number; goodBytes: number; reason?: string } {
  let offset = 0;
  let count = 0;
  while (offset < data.length) {
    if (data.length - offset < FRAME_BYTES + 4) return { count, goodBytes: offset, reason: 'torn frame header' };
    const length = data.readUInt32LE(offset);
    const crc = data.readUInt32LE(offset + 4);
    if (length < 4 || offset + FRAME_BYTES + length > data.length) return { count, goodBytes: offset, reason: 'torn record (shorter than its length)' };
    const payload = data.subarray(offset + FRAME_BYTES, offset + FRAME_BYTES + length);
    if (crc32(payload) !== crc) return { count, goodBytes: offset, reason: 'checksum mismatch' };
    const jsonLength = payload.readUInt32LE(0);
    if (4 + jsonLength > payload.length) return { count, goodBytes: offset, reason: 'header longer than its record' };
    let header: unknown;
    try {
      header = JSON.parse(payload.subarray(4, 4 + jsonLength).toString('utf8'));
    } catch {
      return { count, goodBytes: offset, reason: 'header is not JSON' };
    }
    onRecord(header, Buffer.from(payload.subarray(4 + jsonLength)));
    count += 1;
    offset += FRAME_BYTES + length;
  }
  return { count, goodBytes: offset };
}
