import type { Random } from '../../core/random.ts';
import type { PlacementDecision, PlacementPolicyName, PlacementRequest, WorkerSnapshot } from './types.ts';

/**
 * A worker that passed the static filter (schedulable, has the runtime), with the CPU and memory
 * still free once the sandboxes placed so far in this call are counted.
 */
export interface Candidate {
  /** Position in the `workers` array given to `place` (this call's). */
  index: number;
  readonly worker: WorkerSnapshot;
  freeCpuMilli: number;
  freeMemoryMiB: number;
}

/** Chooses the worker for one sandbox; must return a candidate that `fits`, or undefined. */
export type ChooseWorker = (candidates: readonly Candidate[], request: PlacementRequest) => Candidate | undefined;

export function fits(candidate: Candidate, request: PlacementRequest): boolean {
  return candidate.freeCpuMilli >= request.resources.cpuMilli && candidate.freeMemoryMiB >= request.resources.memoryMiB;
}

/**
 * Filter → score → pick, one sandbox at a time: `choose` picks a worker among those that still
 * fit, and its free resources shrink by the request before the next pick, so a worker is never
 * overcommitted within one call. Stops at the first sandbox that fits nowhere.
 */
export function placeEach(name: PlacementPolicyName, request: PlacementRequest, workers: readonly WorkerSnapshot[], choose: ChooseWorker): PlacementDecision {
  const candidates = filterCandidates(request, workers);
  const workerIds: string[] = [];
  const count = Math.max(0, Math.floor(request.count));
  while (workerIds.length < count) {
    const chosen = choose(candidates, request);
    if (chosen === undefined || !fits(chosen, request)) break;
    chosen.freeCpuMilli -= request.resources.cpuMilli;
    chosen.freeMemoryMiB -= request.resources.memoryMiB;
    workerIds.push(chosen.worker.id);
  }
  const candidateCount = candidates.length;
  // The reason is for logs and people: built only when read (placement runs for every cold start).
  return {
    workerIds, unplaced: count - workerIds.length,
    get reason() {
      return describe(name, request, count, workerIds, candidateCount, workers.length);
    },
  };
}

/**
 * Places `request.count` sandboxes on the fitting workers with the highest `score`, ties to the
 * first or, with `random`, to a uniform random one: placeEach with pickBest. One sandbox — every
 * cold start — takes a single pass that filters and scores each worker through one scratch
 * candidate, with no candidate list: placement looks at every worker, so its cost per worker is
 * what a cluster of a thousand workers pays per cold start. Same workers in the same order, same
 * tie-breaking, same decision as the general path (a property test checks it).
 */
export function placeByScore(name: PlacementPolicyName, request: PlacementRequest, workers: readonly WorkerSnapshot[], score: (c: Candidate, r: PlacementRequest) => number, random?: Random): PlacementDecision {
  if (Math.max(0, Math.floor(request.count)) !== 1) return placeEach(name, request, workers, (candidates) => pickBest(candidates, request, score, random));
  const { runtime, resources } = request;
  // Filled in for each worker that fits; scores read it and keep nothing.
  const scratch: { -readonly [K in keyof Candidate]: Candidate[K] } = { index: 0, worker: workers[0] as WorkerSnapshot, freeCpuMilli: 0, freeMemoryMiB: 0 };
  const best = new Best<WorkerSnapshot>(random);
  let candidateCount = 0;
  for (let index = 0; index < workers.length; index++) {
    const worker = workers[index] as WorkerSnapshot;
    if (!worker.isSchedulable || !worker.runtimes.includes(runtime)) continue;
    candidateCount++;
    const freeCpuMilli = worker.capacity.cpuMilli - worker.allocated.cpuMilli;
    const freeMemoryMiB = worker.capacity.memoryMiB - worker.allocated.memoryMiB;
    if (freeCpuMilli < resources.cpuMilli || freeMemoryMiB < resources.memoryMiB) continue;
    scratch.index = index;
    scratch.worker = worker;
    scratch.freeCpuMilli = freeCpuMilli;
    scratch.freeMemoryMiB = freeMemoryMiB;
    best.offer(worker, score(scratch, request));
  }
  const workerIds = best.item === undefined ? [] : [best.item.id];
  return {
    workerIds, unplaced: 1 - workerIds.length,
    get reason() {
      return describe(name, request, 1, workerIds, candidateCount, workers.length);
    },
  };
}

/**
 * Each worker's Candidate, reused from call to call (placement is synchronous and no policy keeps
 * one): a placement costs one array, not one object per worker.
 */
const candidateOf = new WeakMap<WorkerSnapshot, Candidate>();

function filterCandidates(request: PlacementRequest, workers: readonly WorkerSnapshot[]): Candidate[] {
  const candidates: Candidate[] = [];
  for (let index = 0; index < workers.length; index++) {
    const worker = workers[index] as WorkerSnapshot;
    if (!worker.isSchedulable || !worker.runtimes.includes(request.runtime)) continue;
    const freeCpuMilli = worker.capacity.cpuMilli - worker.allocated.cpuMilli;
    const freeMemoryMiB = worker.capacity.memoryMiB - worker.allocated.memoryMiB;
    let candidate = candidateOf.get(worker);
    if (candidate === undefined) {
      candidate = { index, worker, freeCpuMilli, freeMemoryMiB };
      candidateOf.set(worker, candidate);
    } else {
      candidate.index = index;
      candidate.freeCpuMilli = freeCpuMilli;
      candidate.freeMemoryMiB = freeMemoryMiB;
    }
    candidates.push(candidate);
  }
  return candidates;
}

function describe(name: PlacementPolicyName, request: PlacementRequest, count: number, workerIds: readonly string[], candidateCount: number, workerCount: number): string {
  let reason = `${name}: placed ${workerIds.length}/${count} on ${new Set(workerIds).size} worker(s)`;
  if (workerIds.length < count) {
    const { cpuMilli, memoryMiB } = request.resources;
    reason += `; ${count - workerIds.length} unplaced: no schedulable worker with runtime ${request.runtime} has ${cpuMilli}m CPU and ${memoryMiB} MiB free`
      + ` (${candidateCount} of ${workerCount} workers are schedulable with the runtime)`;
  }
  return reason;
}

/** The fitting candidate with the highest score; ties go to the first, or to a uniform random one when `random` is given. */
export function pickBest(candidates: readonly Candidate[], request: PlacementRequest, score: (c: Candidate, r: PlacementRequest) => number, random?: Random): Candidate | undefined {
  const best = new Best<Candidate>(random);
  for (const candidate of candidates) {
    if (fits(candidate, request)) best.offer(candidate, score(candidate, request));
  }
  return best.item;
}

/** The highest-scoring item offered so far; a tie keeps the first or, with `random`, a uniform random one. */
class Best<T> {
  item: T | undefined;
  #score = -Infinity;
  #ties = 0;
  readonly #random: Random | undefined;

  constructor(random: Random | undefined) {
    this.#random = random;
  }

  offer(item: T, score: number): void {
    if (score > this.#score) {
      this.item = item;
      this.#score = score;
      this.#ties = 1;
    } else if (score === this.#score && this.#random !== undefined) {
      // Reservoir sampling: the k-th tie replaces the choice with probability 1/k.
      this.#ties++;
      if (this.#random.int(this.#ties) === 0) this.item = item;
    }
  }
}

export function countFitting(candidates: readonly Candidate[], request: PlacementRequest): number {
  let count = 0;
  for (const candidate of candidates) if (fits(candidate, request)) count++;
  return count;
}

/** The `n`-th (0-based) fitting candidate in array order. */
export function nthFitting(candidates: readonly Candidate[], request: PlacementRequest, n: number): Candidate | undefined {
  let seen = 0;
  for (const candidate of candidates) {
    if (!fits(candidate, request)) continue;
    if (seen === n) return candidate;
    seen++;
  }
  return undefined;
}
