import { BatonError } from '../../core/errors.ts';

export interface ConcurrencyWindowOptions {
  /** Width of one bucket, ms (Knative: 1000). Values recorded in the same bucket are summed. */
  readonly bucketMs: number;
  /** The longest window `average()` may be asked for, ms (the stable window). */
  readonly maxWindowMs: number;
}

/**
 * A ring buffer of fixed-width time buckets holding up to `maxWindowMs` of concurrency history,
 * averaged the way Knative's linear aggregation does (knative-kpa.md §12.2, item 4).
 *
 * One window serves both the stable and the panic average: `average(now, 60_000)` and
 * `average(now, 6_000)` read the same buckets. Memory is `ceil(maxWindowMs / bucketMs)` numbers;
 * `record` and `average` touch at most that many buckets. Pure: time comes in as `nowMs`.
 */
export class ConcurrencyWindow {
  readonly bucketMs: number;
  readonly maxWindowMs: number;
  /**
   * A plain array of doubles, not a Float64Array: a typed array carries an ArrayBuffer and a view
   * (~190 bytes more for a few numbers, measured) that the collector also has to track, and the
   * control plane keeps a window for every function that has been active.
   */
  readonly #buckets: number[];
  /** Bucket index (floor(ms / bucketMs)) of the first write since the last reset; null when empty. */
  #firstIndex: number | null = null;
  #lastIndex = 0;

  /** @throws BatonError ERR_INVALID_CONFIG when bucketMs ≤ 0 or maxWindowMs < bucketMs. */
  constructor(options: ConcurrencyWindowOptions) {
    const { bucketMs, maxWindowMs } = options;
    if (!(bucketMs > 0) || !Number.isFinite(bucketMs) || !(maxWindowMs >= bucketMs) || !Number.isFinite(maxWindowMs)) {
      throw new BatonError('ERR_INVALID_CONFIG', `concurrency window needs 0 < bucketMs ≤ maxWindowMs (got bucketMs ${bucketMs}, maxWindowMs ${maxWindowMs})`, { details: { bucketMs, maxWindowMs } });
    }
    this.bucketMs = bucketMs;
    this.maxWindowMs = maxWindowMs;
    // 60_000 ms of history in 1_000-ms buckets → 60 buckets.
    this.#buckets = new Array<number>(Math.ceil(maxWindowMs / bucketMs)).fill(0);
  }

  /**
   * Adds `value` to the bucket holding `nowMs`. Several records in one bucket are summed (one per
   * source per bucket: each data plane's report). A record older than the buffer's reach behind
   * the latest write is dropped.
   */
  record(nowMs: number, value: number): void {
    const index = this.#indexOf(nowMs);
    const size = this.#buckets.length;
    if (this.#firstIndex === null || index - this.#lastIndex >= size) {
      // Empty, or no write for a whole buffer: start over from this bucket.
      this.#buckets.fill(0);
      this.#firstIndex = index;
      this.#lastIndex = index;
    } else if (index > this.#lastIndex) {
      this.#clearAfterLast(index);
      this.#lastIndex = index;
    } else if (index <= this.#lastIndex - size) {
      return;
    } else if (index < this.#firstIndex) {
      this.#firstIndex = index;
    }
    const slot = this.#slot(index);
    this.#buckets[slot] = (this.#buckets[slot] ?? 0) + value;
  }

  /**
   * Linear average over the last `windowMs` ending at `nowMs`:
   * sum(valid buckets) / number of valid buckets, where the valid buckets run from
   * max(first write, now − window + 1 bucket) to the last write. So a history shorter than the
   * window divides by the shorter span, gaps between writes count as zeros, trailing buckets with
   * no write yet are left out, and no write for a whole window gives 0.
   *
   * @throws BatonError ERR_INVALID_CONFIG when windowMs ≤ 0 or spans more buckets than maxWindowMs.
   */
  average(nowMs: number, windowMs: number): number {
    const windowBuckets = this.#windowBuckets(windowMs);
    if (this.#firstIndex === null) return 0;
    // A `now` before the last write is read as the last write.
    const nowIndex = Math.max(this.#indexOf(nowMs), this.#lastIndex);
    // Window 6 buckets, now 20 → it covers buckets 15..20; last write 18 → 15..18 are valid.
    const from = Math.max(this.#firstIndex, nowIndex - windowBuckets + 1);
    if (from > this.#lastIndex) return 0;
    let sum = 0;
    for (let i = from; i <= this.#lastIndex; i++) sum += this.#buckets[this.#slot(i)] ?? 0;
    return sum / (this.#lastIndex - from + 1);
  }

  /** True when nothing was recorded since the last reset, or (given `nowMs`) nothing within maxWindowMs. */
  isEmpty(nowMs?: number): boolean {
    if (this.#firstIndex === null) return true;
    if (nowMs === undefined) return false;
    return this.#indexOf(nowMs) - this.#lastIndex >= this.#buckets.length;
  }

  /** Forgets all history. */
  reset(): void {
    this.#buckets.fill(0);
    this.#firstIndex = null;
    this.#lastIndex = 0;
  }

  #indexOf(nowMs: number): number {
    return Math.floor(nowMs / this.bucketMs);
  }

  #slot(index: number): number {
    const size = this.#buckets.length;
    return ((index % size) + size) % size;
  }

  /** Zeroes the buckets after the last write up to `index`: they still hold a lap-old history. */
  #clearAfterLast(index: number): void {
    for (let i = this.#lastIndex + 1; i <= index; i++) this.#buckets[this.#slot(i)] = 0;
  }

  #windowBuckets(windowMs: number): number {
    // 6_000 ms in 1_000-ms buckets → 6; 6_500 ms → 7.
    const buckets = Math.ceil(windowMs / this.bucketMs);
    if (!(buckets >= 1) || buckets > this.#buckets.length) {
      throw new BatonError('ERR_INVALID_CONFIG', `average window ${windowMs} ms must be > 0 and ≤ maxWindowMs ${this.maxWindowMs}`, { details: { windowMs, maxWindowMs: this.maxWindowMs } });
    }
    return buckets;
  }
}
