/** The links a value carries to be in an IntrusiveList (in at most one list at a time). */
export interface ListLinks<T> {
  prev: T | undefined;
  next: T | undefined;
  isLinked: boolean;
}

/**
 * A doubly linked list through fields of its values: adding and removing allocate nothing. For
 * sets of long-lived objects that come and go by the thousand per second (active functions,
 * waiting invocations): a Map or Set of them is given a new table as it grows and again as it
 * shrinks (V8 shrinks on delete), and each table, referenced from the old generation, is promoted
 * to die there.
 *
 * One `cursor` may walk the list across event-loop turns: removing the value it points at moves it
 * on, and values appended meanwhile are reached too.
 */
export class IntrusiveList<T extends ListLinks<T>> {
  #head: T | undefined;
  #tail: T | undefined;
  #size = 0;
  /** The value a walk visits next (see `startWalk`, `step`). */
  #cursor: T | undefined;

  get size(): number {
    return this.#size;
  }

  /** Appends a value; one already in the list stays where it is. */
  push(value: T): void {
    if (value.isLinked) return;
    value.isLinked = true;
    value.prev = this.#tail;
    value.next = undefined;
    if (this.#tail === undefined) this.#head = value;
    else this.#tail.next = value;
    this.#tail = value;
    this.#size++;
  }

  /** Removes a value; false when it was not in the list. */
  remove(value: T): boolean {
    if (!value.isLinked) return false;
    if (this.#cursor === value) this.#cursor = value.next;
    if (value.prev === undefined) this.#head = value.next;
    else value.prev.next = value.next;
    if (value.next === undefined) this.#tail = value.prev;
    else value.next.prev = value.prev;
    value.prev = value.next = undefined;
    value.isLinked = false;
    this.#size--;
    return true;
  }

  /** Removes every value. */
  clear(): void {
    while (this.#head !== undefined) this.remove(this.#head);
  }

  /** Starts a walk from the first value. */
  startWalk(): void {
    this.#cursor = this.#head;
  }

  /** The walk's next value (undefined at the end). */
  step(): T | undefined {
    const value = this.#cursor;
    if (value !== undefined) this.#cursor = value.next;
    return value;
  }

  /** Iterates from the first value; removing the current value meanwhile is safe, removing others is not. */
  *[Symbol.iterator](): IterableIterator<T> {
    let value = this.#head;
    while (value !== undefined) {
      const next = value.next;
      yield value;
      value = next;
    }
  }
}
