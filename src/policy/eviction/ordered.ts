import type { EvictionCandidate, EvictionPolicy, EvictionPolicyName } from './types.ts';

/**
 * The first `count` candidates under `compare` (most evictable first). The sort is stable, so
 * equal candidates keep their input order.
 */
export function createOrderedEviction(name: EvictionPolicyName, compare: (a: EvictionCandidate, b: EvictionCandidate) => number): EvictionPolicy {
  return {
    name,
    pickVictims(candidates: readonly EvictionCandidate[], count: number): readonly string[] {
      const take = Math.max(0, Math.floor(count));
      return [...candidates].sort(compare).slice(0, take).map((c) => c.sandboxId);
    },
  };
}

/** Newest first (latest readyAtMs): keeps the sandboxes that have proven themselves. */
export function createNewestEviction(): EvictionPolicy {
  return createOrderedEviction('newest', (a, b) => b.readyAtMs - a.readyAtMs);
}

/** Oldest first (earliest readyAtMs): recycles long-lived sandboxes. */
export function createOldestEviction(): EvictionPolicy {
  return createOrderedEviction('oldest', (a, b) => a.readyAtMs - b.readyAtMs);
}

/** Least recently used first (smallest lastUsedMs): the sandboxes whose caches are coldest. */
export function createLeastRecentlyUsedEviction(): EvictionPolicy {
  return createOrderedEviction('least-recently-used', (a, b) => a.lastUsedMs - b.lastUsedMs);
}
