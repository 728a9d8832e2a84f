import type { Clock, Timer } from '../core/clock.ts';

/** A place in the queue, handed back by `push` so the caller can `remove` it in O(1). */
export interface QueueEntry<T> {
  readonly value: T;
  /** Clock time (ms) at which the entry expires. */
  readonly deadlineAt: number;
  /** Clock time (ms) at which the entry was pushed. */
  readonly enqueuedAt: number;
}

interface Node<T> extends QueueEntry<T> {
  prev: Node<T> | undefined;
  next: Node<T> | undefined;
  isQueued: boolean;
}

export interface InvocationQueueOptions<T> {
  /** Max entries; `push` beyond it returns undefined (the caller answers ERR_QUEUE_FULL). */
  readonly capacity: number;
  /** Per-entry deadline after `push`, in ms. */
  readonly timeoutMs: number;
  readonly clock: Clock;
  /** Called once per entry whose deadline passed; the entry is already out of the queue. */
  readonly onExpired: (value: T) => void;
}

/**
 * One function's bounded FIFO of invocations waiting for a free sandbox, each with a deadline.
 *
 * Every entry gets the same `timeoutMs` and the clock is monotonic, so deadlines grow along the
 * queue and the head always expires first: one timer, armed for the head, is enough. The timer is
 * not moved when the head leaves early; when it fires it expires what is due and re-arms for the
 * new head. So a queue holds at most one timer whatever its length, and none once it has emptied
 * and its timer has fired.
 */
export class InvocationQueue<T> {
  readonly #options: InvocationQueueOptions<T>;
  #head: Node<T> | undefined;
  #tail: Node<T> | undefined;
  #size = 0;
  #timer: Timer | undefined;
  #timerAt = 0;

  constructor(options: InvocationQueueOptions<T>) {
    this.#options = options;
  }

  get size(): number {
    return this.#size;
  }

  get capacity(): number {
    return this.#options.capacity;
  }

  /** Appends `value`; returns undefined when the queue is full (nothing changes). */
  push(value: T): QueueEntry<T> | undefined {
    if (this.#size >= this.#options.capacity) return undefined;
    const now = this.#options.clock.now();
    const node: Node<T> = {
      value, enqueuedAt: now, deadlineAt: now + this.#options.timeoutMs,
      prev: this.#tail, next: undefined, isQueued: true,
    };
    if (this.#tail === undefined) this.#head = node;
    else this.#tail.next = node;
    this.#tail = node;
    this.#size++;
    if (this.#timer === undefined) this.#arm(node.deadlineAt);
    return node;
  }

  /** Removes and returns the oldest entry, or undefined when empty. */
  shift(): QueueEntry<T> | undefined {
    const node = this.#head;
    if (node !== undefined) this.#unlink(node);
    return node;
  }

  /** Removes and returns the newest entry, or undefined when empty. */
  pop(): QueueEntry<T> | undefined {
    const node = this.#tail;
    if (node !== undefined) this.#unlink(node);
    return node;
  }

  /** The oldest entry without removing it. */
  peek(): QueueEntry<T> | undefined {
    return this.#head;
  }

  /** Removes `entry` if it is still queued (a client went away); returns whether it was. */
  remove(entry: QueueEntry<T>): boolean {
    const node = entry as Node<T>;
    if (!node.isQueued) return false;
    this.#unlink(node);
    return true;
  }

  /** Empties the queue, returning the values oldest first (the timer goes with the last one). */
  drain(): T[] {
    const values: T[] = [];
    for (let node = this.shift(); node !== undefined; node = this.shift()) values.push(node.value);
    return values;
  }

  #unlink(node: Node<T>): void {
    if (node.prev === undefined) this.#head = node.next;
    else node.prev.next = node.next;
    if (node.next === undefined) this.#tail = node.prev;
    else node.next.prev = node.prev;
    node.prev = undefined;
    node.next = undefined;
    node.isQueued = false;
    this.#size--;
    if (this.#size === 0 && this.#timer !== undefined) {
      // Nothing left to expire: drop the timer now rather than let it fire on an empty queue at the
      // deadline. A cold start empties its function's queue within milliseconds, and a timer kept
      // for the whole queue timeout (seconds) outlives young-generation collections: at thousands
      // of cold starts per second that was thousands of timers promoted to the old generation.
      this.#timer.cancel();
      this.#timer = undefined;
    }
  }

  #arm(at: number): void {
    this.#timerAt = at;
    // The callback is made at the first arming: a data plane holds a queue for every function it
    // routes, and most never queue anything.
    this.#onTimer ??= () => this.#expire();
    this.#timer = this.#options.clock.setTimeout(this.#onTimer, Math.max(0, at - this.#options.clock.now()));
  }

  #onTimer: (() => void) | undefined;

  #expire(): void {
    this.#timer = undefined;
    const now = Math.max(this.#options.clock.now(), this.#timerAt);
    while (this.#head !== undefined && this.#head.deadlineAt <= now) {
      const node = this.#head;
      this.#unlink(node);
      this.#options.onExpired(node.value);
    }
    if (this.#head !== undefined && this.#timer === undefined) this.#arm(this.#head.deadlineAt);
  }
}
