import { fits, placeEach } from './candidates.ts';
import type { Candidate } from './candidates.ts';
import type { PlacementDecision, PlacementPolicy, PlacementRequest, WorkerSnapshot } from './types.ts';

/**
 * A cursor over the workers array, kept across calls: each sandbox goes to the first worker at or
 * after the cursor (wrapping) that it fits on, and the cursor moves past that worker.
 */
export class RoundRobinPlacement implements PlacementPolicy {
  readonly name = 'round-robin';
  #cursor = 0;

  place(request: PlacementRequest, workers: readonly WorkerSnapshot[]): PlacementDecision {
    return placeEach('round-robin', request, workers, (candidates) => {
      const chosen = this.#firstFrom(candidates, request, this.#cursor) ?? this.#firstFrom(candidates, request, 0);
      if (chosen !== undefined) this.#cursor = chosen.index + 1;
      return chosen;
    });
  }

  /** Candidates are in worker-array order, so the first with index ≥ start is next in turn. */
  #firstFrom(candidates: readonly Candidate[], request: PlacementRequest, start: number): Candidate | undefined {
    for (const candidate of candidates) if (candidate.index >= start && fits(candidate, request)) return candidate;
    return undefined;
  }
}
