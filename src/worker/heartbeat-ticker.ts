import type { Clock, Timer } from '../core/clock.ts';
import type { HeartbeatTicker } from '../transport/membership-link.ts';

/**
 * One timer for the heartbeats of every logical worker in a process: each tick calls every
 * subscribed beat (each still sends its own request). 500 emulated workers at a 1 s interval cost
 * one timer firing once a second rather than 500 timers. The timer runs only while someone is
 * subscribed; the interval is the latest one a subscriber gave (the control plane tells every
 * worker the same).
 */
export class ClockHeartbeatTicker implements HeartbeatTicker {
  readonly #clock: Clock;
  readonly #beats = new Set<() => void>();
  #intervalMs: number;
  #timer: Timer | undefined;

  constructor(clock: Clock, intervalMs: number) {
    this.#clock = clock;
    this.#intervalMs = intervalMs;
  }

  get size(): number {
    return this.#beats.size;
  }

  subscribe(beat: () => void, intervalMs: number): () => void {
    // A new function object per subscription, so the same beat may subscribe twice harmlessly.
    const entry = (): void => beat();
    this.#beats.add(entry);
    this.#intervalMs = intervalMs;
    this.#timer ??= this.#clock.setTimeout(() => this.#tick(), this.#intervalMs);
    return () => {
      this.#beats.delete(entry);
      if (this.#beats.size === 0) this.close();
    };
  }

  #tick(): void {
    this.#timer = undefined;
    for (const beat of [...this.#beats]) beat();
    if (this.#beats.size > 0) this.#timer = this.#clock.setTimeout(() => this.#tick(), this.#intervalMs);
  }

  close(): void {
    this.#beats.clear();
    this.#timer?.cancel();
    this.#timer = undefined;
  }
}
