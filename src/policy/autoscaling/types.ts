/**
 * The per-function KPA autoscaler, as pure data: settings, the state carried between decisions,
 * and the decision. See `kpa.ts` for the algorithm.
 */
export interface KpaSettings {
  /** Target concurrency per sandbox = concurrency × targetUtilization (≥ 0.01). */
  readonly targetPerSandbox: number;
  readonly stableWindowMs: number;
  readonly panicWindowMs: number;
  /** Panic when desired panic sandboxes / ready ≥ this (2 = 200 %). */
  readonly panicThreshold: number;
  readonly maxScaleUpRate: number;
  readonly maxScaleDownRate: number;
  readonly minScale: number;
  readonly maxScale: number;
  /** Desired must have been 0 for this long before the last sandbox goes. */
  readonly scaleToZeroGraceMs: number;
}

export interface KpaState {
  /** When panic mode was last entered or extended; null when not panicking. */
  readonly panicStartMs: number | null;
  readonly maxPanicSandboxes: number;
  /** Since when the unbounded decision has been 0 continuously; null when it is not 0. */
  readonly zeroSinceMs: number | null;
}

export interface KpaInput {
  readonly now: number;
  readonly settings: KpaSettings;
  readonly state: KpaState;
  /** Average concurrency (in flight + queued, all data planes) over the stable and panic windows. */
  readonly stableAverage: number;
  readonly panicAverage: number;
  /** Sandboxes ready now (0 is treated as 1 for rate limits, as Knative does). */
  readonly readySandboxes: number;
  /** Sandboxes that exist (ready or starting): the current scale. */
  readonly currentScale: number;
}

export interface KpaDecision {
  readonly desired: number;
  readonly reason: string;
  readonly state: KpaState;
  readonly isPanicking: boolean;
}

export const INITIAL_KPA_STATE: KpaState = { panicStartMs: null, maxPanicSandboxes: 0, zeroSinceMs: null };
