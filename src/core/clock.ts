/**
 * Time comes from an injected Clock so that policies and state machines can be driven by tests
 * with explicit instants. `now()` is milliseconds on a monotonic timeline (not wall time).
 *
 * This file and the daemons' composition roots (`main.ts`) are the only places that touch real
 * timers (`setTimeout`, `setImmediate`) or read the time (`Date.now`, `performance.now`); the
 * lint (eslint.config.js) keeps it so.
 */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): Timer;
  /**
   * Runs `fn` in a later turn of the event loop, once the I/O already waiting has been handled
   * (`setImmediate` on the real clock). Work collected during one turn — a batch to send, the next
   * slice of a long sweep — is handed over this way. A ManualClock runs deferred work when a test
   * calls `runTurns()`, and before each timer it fires.
   */
  defer(fn: () => void): void;
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

  defer(fn: () => void): void {
    setImmediate(fn);
  }
}

export const systemClock: Clock = new SystemClock();

/** Resolves in a later turn of the event loop (see `Clock.defer`): lets waiting I/O run between slices of long work. */
export function nextTurn(clock: Clock = systemClock): Promise<void> {
  return new Promise((resolve) => clock.defer(resolve));
}

/** Calls `fn` every `ms` on `clock` until the returned timer is cancelled (each call arms the next). */
export function repeat(clock: Clock, ms: number, fn: () => void): Timer {
  let timer: Timer;
  const tick = (): void => {
    fn();
    timer = clock.setTimeout(tick, ms);
  };
  timer = clock.setTimeout(tick, ms);
  return { cancel: () => timer.cancel() };
}

/** Wall-clock milliseconds since the epoch, for timestamps shown to people. */
export function wallTimeMs(): number {
  return Date.now();
}

let wallOffsetMs = Date.now() - performance.now();

/**
 * Wall-clock milliseconds since the epoch with sub-millisecond resolution: the monotonic clock
 * plus an offset that follows `Date.now()` (re-anchored whenever the two drift apart by more than
 * a millisecond, as when the system clock is set). For records whose times are compared at
 * sub-millisecond scale (an asynchronous invocation's accepted, started and finished times).
 */
export function wallTimePreciseMs(): number {
  const mono = performance.now();
  const candidate = Date.now() - mono;
  if (Math.abs(candidate - wallOffsetMs) > 1) wallOffsetMs = candidate;
  return mono + wallOffsetMs;
}
