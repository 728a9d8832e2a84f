/**
 * Time comes from an injected Clock so that policies and state machines can be driven by tests
 * with explicit instants. `now()` is milliseconds on a monotonic timeline (not wall time).
 */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): Timer;
}

export interface Timer {
  cancel(): void;
}

/**
 * The real clock: `performance.now()` (monotonic) and Node timers, unref'd so they never hold the
 * process open — unless made with `holdsProcess` (a supervisor whose only pending work may be a
 * timer, e.g. a restart it waits to make).
 */
export class SystemClock implements Clock {
  readonly #holdsProcess: boolean;

  constructor(options: { holdsProcess?: boolean } = {}) {
    this.#holdsProcess = options.holdsProcess === true;
  }

  now(): number {
    return performance.now();
  }

  setTimeout(fn: () => void, ms: number): Timer {
    const handle = setTimeout(fn, ms);
    if (!this.#holdsProcess) handle.unref();
    return { cancel: () => clearTimeout(handle) };
  }
}

export const systemClock: Clock = new SystemClock();

/** Wall-clock milliseconds since the epoch, for timestamps shown to people. */
export function wallTimeMs(): number {
  return Date.now();
}
