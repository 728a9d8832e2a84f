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
