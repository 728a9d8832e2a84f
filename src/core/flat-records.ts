/**
 * Records of a few numeric fields each, kept in one plain array of doubles (record i's field f at
 * i × fields + offset(f)) instead of an object per record. For numbers kept per function for
 * seconds or longer — a function's recent cold starts, a demand report's parts waiting to be sent —
 * where an object each would live long enough to be promoted to the old generation and be traced
 * by every mark-compact (bench/README.md, churn, fifth and sixth rounds: up to twenty records per
 * function among the control plane's longest-lived objects; the report parts' entries promoted
 * while they waited). A plain array of doubles rather than a typed array: a buffer and a view per
 * instance cost more than the numbers at this size (same rounds, measured by RSS).
 */
export class FlatRecords<F extends string> {
  readonly #width: number;
  readonly #offsets: Readonly<Record<F, number>>;
  readonly #values: number[] = [];

  constructor(fields: readonly F[]) {
    this.#width = fields.length;
    const offsets = {} as Record<F, number>;
    fields.forEach((field, i) => { offsets[field] = i; });
    this.#offsets = offsets;
  }

  get size(): number {
    return this.#values.length / this.#width;
  }

  /** Appends a record with every field NaN; returns its index. */
  append(): number {
    const index = this.size;
    for (let i = 0; i < this.#width; i++) this.#values.push(Number.NaN);
    return index;
  }

  set(index: number, field: F, value: number): void {
    this.#values[index * this.#width + this.#offsets[field]] = value;
  }

  get(index: number, field: F): number {
    return this.#values[index * this.#width + this.#offsets[field]] as number;
  }
}

/**
 * A first-in first-out queue in one array that is reused from one batch to the next: slots before
 * the head are consumed, and once the queue empties both ends go back to 0, so a queue filled and
 * drained every tick allocates nothing after its largest size (a Set filled and drained every tick
 * is given new tables all the way up and down: bench/README.md, churn, sixth round).
 */
export class ReusableFifo<T> {
  readonly #items: (T | undefined)[] = [];
  #head = 0;
  #end = 0;

  get size(): number {
    return this.#end - this.#head;
  }

  push(item: T): void {
    this.#items[this.#end++] = item;
  }

  /** The oldest item, removed; undefined when empty. */
  shift(): T | undefined {
    if (this.#head === this.#end) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head === this.#end) this.#head = this.#end = 0;
    return item;
  }

  /** Calls `fn` on every item still queued, oldest first. */
  forEach(fn: (item: T) => void): void {
    for (let i = this.#head; i < this.#end; i++) fn(this.#items[i] as T);
  }

  clear(): void {
    this.#items.length = 0;
    this.#head = this.#end = 0;
  }
}
