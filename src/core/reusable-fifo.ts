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
