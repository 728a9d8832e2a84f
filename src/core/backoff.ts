/**
 * Exponential back-off: `firstMs`, doubling on every failure up to `maxMs`, back to `firstMs` on
 * success. With `jitter` (0–1) each delay is drawn from [delay × (1 − jitter), delay], so that many
 * clients that failed together do not retry together. Worked numbers, first 100, max 5,000: 100,
 * 200, 400, 800, 1,600, 3,200, 5,000, 5,000, …
 */
export interface BackoffOptions {
  readonly firstMs: number;
  readonly maxMs: number;
  /** Share of each delay that is random, 0 (default) to 1. */
  readonly jitter?: number;
  /** A number in [0, 1); required with `jitter` (an injected seeded Random's `next`). */
  readonly random?: () => number;
}

export class Backoff {
  readonly #options: BackoffOptions;
  #nextMs: number;
  #failures = 0;

  constructor(options: BackoffOptions) {
    this.#options = options;
    this.#nextMs = options.firstMs;
  }

  /** Consecutive failures since the last success. */
  get failures(): number {
    return this.#failures;
  }

  /** The delay to wait after this failure, ms; the next one doubles. */
  next(): number {
    const { maxMs, jitter = 0, random } = this.#options;
    const delayMs = this.#nextMs;
    this.#nextMs = Math.min(maxMs, delayMs * 2);
    this.#failures++;
    if (jitter <= 0 || random === undefined) return delayMs;
    return delayMs * (1 - jitter * random());
  }

  reset(): void {
    this.#nextMs = this.#options.firstMs;
    this.#failures = 0;
  }
}
