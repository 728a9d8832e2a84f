/**
 * A set of objects kept in an array, each member knowing its place in a field of its own (`slot`):
 * `add` appends, `delete` moves the last member into the gap, so both are O(1) and allocate only
 * when the array grows past its largest size so far. The order is not kept.
 *
 * For small sets that empty and refill all the time — a function's sandboxes or endpoints under
 * churn go 0 → 1 → 0 with every cold start. V8 gives a Map or Set a new table when it empties (and
 * every few changes of one that gains and loses members); referenced from the old generation, each
 * table is promoted there to die. A value may be in one SlotSet per slot field.
 */
export class SlotSet<T extends { [P in K]: number }, K extends string> {
  readonly #items: T[] = [];
  readonly #slot: K;

  /** `slot`: the members' field that holds their place (-1 when not in the set). */
  constructor(slot: K) {
    this.#slot = slot;
  }

  get size(): number {
    return this.#items.length;
  }

  /** The members as an array, valid until the next change (e.g. a load balancer's endpoints). */
  get items(): readonly T[] {
    return this.#items;
  }

  has(value: T): boolean {
    return this.#items[value[this.#slot]] === value;
  }

  add(value: T): void {
    if (this.has(value)) return;
    this.#place(value, this.#items.length);
    this.#items.push(value);
  }

  delete(value: T): boolean {
    if (!this.has(value)) return false;
    const at = value[this.#slot];
    const last = this.#items.pop() as T;
    if (last !== value) {
      this.#items[at] = last;
      this.#place(last, at);
    }
    this.#place(value, -1);
    return true;
  }

  /** Do not add or delete while iterating (copy first). */
  values(): IterableIterator<T> {
    return this.#items.values();
  }

  [Symbol.iterator](): IterableIterator<T> {
    return this.#items.values();
  }

  #place(value: T, at: number): void {
    (value as { [P in K]: number })[this.#slot] = at;
  }
}
