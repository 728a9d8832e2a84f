import type { CancelSignal } from './cancellation.ts';
import { BatonError } from './errors.ts';

/**
 * Bounds how many tasks run at once. `acquire` waits for a free slot (FIFO); the returned function
 * releases it exactly once. An aborted waiter leaves the queue and rejects with the signal's reason.
 */
export class Semaphore {
  readonly #limit: number;
  #active = 0;
  readonly #waiters: { grant: () => void; reject: (err: unknown) => void }[] = [];

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new BatonError('ERR_INTERNAL', `semaphore limit must be a positive integer, got ${limit}`);
    this.#limit = limit;
  }

  get active(): number {
    return this.#active;
  }

  get waiting(): number {
    return this.#waiters.length;
  }

  async acquire(signal?: CancelSignal): Promise<() => void> {
    signal?.throwIfAborted();
    if (this.#active < this.#limit) {
      this.#active += 1;
      return this.#releaser();
    }
    await new Promise<void>((resolve, reject) => {
      const waiter = {
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject,
      };
      const onAbort = (): void => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
    });
    return this.#releaser();
  }

  #releaser(): () => void {
    let isReleased = false;
    return () => {
      if (isReleased) return;
      isReleased = true;
      const next = this.#waiters.shift();
      // The slot passes straight to the next waiter, so `active` stays the same.
      if (next === undefined) this.#active -= 1;
      else next.grant();
    };
  }
}
