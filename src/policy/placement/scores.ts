import type { Candidate } from './candidates.ts';
import type { PlacementRequest } from './types.ts';

/** Highest score of one Kubernetes scoring plugin. */
const MAX_NODE_SCORE = 100;

/** Fraction of CPU in use once one more sandbox of `request` is on the worker (0–1). */
function usedCpu(candidate: Candidate, request: PlacementRequest): number {
  const { cpuMilli } = candidate.worker.capacity;
  // 4000m capacity, 2500m free, request 500m → (4000 − 2500 + 500) / 4000 = 0.5.
  return cpuMilli > 0 ? Math.min(1, (cpuMilli - candidate.freeCpuMilli + request.resources.cpuMilli) / cpuMilli) : 1;
}

/** The same for memory. (Two numbers, no tuple: scoring runs for every worker of every placement.) */
function usedMemory(candidate: Candidate, request: PlacementRequest): number {
  const { memoryMiB } = candidate.worker.capacity;
  return memoryMiB > 0 ? Math.min(1, (memoryMiB - candidate.freeMemoryMiB + request.resources.memoryMiB) / memoryMiB) : 1;
}

/** Mean free fraction of CPU and memory after the sandbox (0–1): higher = emptier worker. */
export function freeFraction(candidate: Candidate, request: PlacementRequest): number {
  // CPU 0.5 used, memory 0.25 used → ((1 − 0.5) + (1 − 0.25)) / 2 = 0.625.
  return (2 - usedCpu(candidate, request) - usedMemory(candidate, request)) / 2;
}

/** Mean used fraction after the sandbox (0–1): higher = fuller worker (bin packing). */
export function usedFraction(candidate: Candidate, request: PlacementRequest): number {
  return 1 - freeFraction(candidate, request);
}

/**
 * Kubernetes NodeResourcesFit "LeastAllocated", 0–100 in integers as the scheduler computes it:
 * per resource (capacity − requested) × 100 / capacity, then the mean of CPU and memory.
 * CPU 0.5 used → 50, memory 0.25 used → 75 → (50 + 75) / 2 = 62.
 */
export function leastAllocatedScore(candidate: Candidate, request: PlacementRequest): number {
  const cpuScore = Math.floor((1 - usedCpu(candidate, request)) * MAX_NODE_SCORE);
  const memoryScore = Math.floor((1 - usedMemory(candidate, request)) * MAX_NODE_SCORE);
  return Math.floor((cpuScore + memoryScore) / 2);
}

/**
 * Kubernetes NodeResourcesBalancedAllocation, 0–100: (1 − standard deviation of the used
 * fractions) × 100; for two resources the deviation is |cpu − memory| / 2.
 * CPU 0.5 used, memory 0.25 used → std 0.125 → 87.
 */
export function balancedAllocationScore(candidate: Candidate, request: PlacementRequest): number {
  return Math.floor((1 - Math.abs(usedCpu(candidate, request) - usedMemory(candidate, request)) / 2) * MAX_NODE_SCORE);
}
