import type { Clock } from './clock.ts';

/**
 * Collects what is added during one event-loop turn and hands it over once, at a later turn
 * (through the injected clock's `defer`): the one "collect this turn, send once" mechanism of the
 * daemons. Creations for a worker, routing changes for a data plane, drain waits, sandbox events
 * and demand pokes each travel as one message per turn however many arrive — which is what lets
 * one control plane start thousands of sandboxes per second.
 *
 * `schedule()` asks for a flush without adding an item, for owners whose batch lives elsewhere
 * (a routing publisher that may hold changes back while its pipeline is full).
 */
export class TurnBatcher<T> {
  readonly #clock: Clock;
  readonly #flush: (items: T[]) => void;
  #items: T[] = [];
  #isScheduled = false;

  /** `flush` gets the items in the order they were added (an empty array after a bare `schedule()`). */
  constructor(clock: Clock, flush: (items: T[]) => void) {
    this.#clock = clock;
    this.#flush = flush;
  }

  /** Items waiting for the next flush. */
  get size(): number {
    return this.#items.length;
  }

  get isScheduled(): boolean {
    return this.#isScheduled;
  }

  add(item: T): void {
    this.#items.push(item);
    this.schedule();
  }

  schedule(): void {
    if (this.#isScheduled) return;
    this.#isScheduled = true;
    this.#clock.defer(this.#run);
  }

  /** Drops what is waiting (the owner is closing); a flush already scheduled hands over nothing. */
  clear(): void {
    this.#items = [];
  }

  readonly #run = (): void => {
    this.#isScheduled = false;
    const items = this.#items;
    this.#items = [];
    this.#flush(items);
  };
}
