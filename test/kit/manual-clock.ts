import type { Clock, Timer } from '../../src/core/clock.ts';

/**
 * A Clock whose time moves only when the test calls `advance`; due timers fire in order. Work
 * deferred to a later turn (`defer`) runs when the test calls `runTurns()`, and — as on the real
 * event loop, where immediates run before a later timer — before each timer `advance` fires.
 */
export class ManualClock implements Clock {
  #now: number;
  #timers: { at: number; seq: number; fn: () => void; isCancelled: boolean }[] = [];
  #seq = 0;
  #deferred: (() => void)[] = [];
  #turns = 0;

  constructor(startMs = 0) {
    this.#now = startMs;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    const timer = { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn, isCancelled: false };
    this.#timers.push(timer);
    return { cancel: () => { timer.isCancelled = true; } };
  }

  defer(fn: () => void): void {
    this.#deferred.push(fn);
  }

  /**
   * Runs deferred work, one turn at a time (what a turn defers runs in the next one), until none
   * is left or `maxTurns` have run; returns how many turns ran.
   */
  runTurns(maxTurns = 10_000): number {
    let turns = 0;
    while (this.#deferred.length > 0 && turns < maxTurns) {
      const turn = this.#deferred;
      this.#deferred = [];
      for (const fn of turn) fn();
      turns++;
    }
    this.#turns += turns;
    return turns;
  }

  /**
   * Runs deferred work and lets promise callbacks run in between, until nothing is deferred any
   * more: for code whose turns await fakes that answer with promises.
   */
  async settle(maxRounds = 1_000): Promise<void> {
    for (let round = 0; round < maxRounds; round++) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.runTurns() === 0 && this.#deferred.length === 0) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (this.#deferred.length === 0) return;
      }
    }
    throw new Error(`ManualClock.settle: still deferring work after ${maxRounds} rounds`);
  }

  /** Turns run so far (by `runTurns`, `settle` and `advance`). */
  get turns(): number {
    return this.#turns;
  }

  get pendingTurns(): number {
    return this.#deferred.length;
  }

  /** Moves time forward by `ms`, firing every timer that falls due, earliest first, with the deferred work between them. */
  advance(ms: number): void {
    const target = this.#now + ms;
    for (;;) {
      this.runTurns();
      const due = this.#timers
        .filter((t) => !t.isCancelled && t.at <= target)
        .sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (due === undefined) break;
      this.#timers = this.#timers.filter((t) => t !== due);
      this.#now = due.at;
      due.fn();
    }
    this.#now = target;
  }

  get pendingTimers(): number {
    return this.#timers.filter((t) => !t.isCancelled).length;
  }
}
