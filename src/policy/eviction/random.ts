import type { Random } from '../../core/random.ts';
import type { EvictionCandidate, EvictionPolicy } from './types.ts';

/** `count` victims drawn uniformly without replacement (a partial Fisher–Yates shuffle). */
export function createRandomEviction(random: Random): EvictionPolicy {
  return {
    name: 'random',
    pickVictims(candidates: readonly EvictionCandidate[], count: number): readonly string[] {
      const ids = candidates.map((c) => c.sandboxId);
      const take = Math.min(ids.length, Math.max(0, Math.floor(count)));
      for (let i = 0; i < take; i++) {
        const j = i + random.int(ids.length - i);
        const picked = ids[j] as string;
        ids[j] = ids[i] as string;
        ids[i] = picked;
      }
      return ids.slice(0, take);
    },
  };
}
