/**
 * The poke (Knative's activator poke, Dirigent's scale-from-zero): an invocation found no free
 * capacity. A function at zero is scaled at once — not at the next tick — to exactly the capacity
 * its waiting invocations need, one sandbox per `concurrency` of them, within [max(1, minScale),
 * maxScale]; the next ticks add the target-utilisation headroom if the demand stays. A function
 * that already has sandboxes (ready or starting) is left to the autoscaler's tick.
 *
 * Worked numbers: 7 waiting, concurrency 3 → ceil(7 / 3) = 3 sandboxes; with maxScale 2 → 2.
 */
export interface PokeInput {
  /** Invocations queued for the function on the data plane that poked. */
  readonly waiting: number;
  /** Sandboxes of the current generation, ready or starting. */
  readonly currentScale: number;
  readonly concurrency: number;
  readonly minScale: number;
  readonly maxScale: number;
}

/** The scale to go to now, or undefined when the poke changes nothing. */
export function computePokeScale(input: PokeInput): number | undefined {
  if (input.currentScale > 0 || input.waiting <= 0) return undefined;
  const wanted = Math.ceil(input.waiting / input.concurrency);
  return Math.min(input.maxScale, Math.max(1, input.minScale, wanted));
}
