import { parsePolicyName } from '../parse-policy-name.ts';
import { createLeastRecentlyUsedEviction, createNewestEviction, createOldestEviction } from './ordered.ts';
import { createRandomEviction } from './random.ts';
import { EVICTION_POLICIES } from './types.ts';
import type { EvictionOptions, EvictionPolicy, EvictionPolicyName } from './types.ts';

export type { EvictionCandidate, EvictionOptions, EvictionPolicy, EvictionPolicyName } from './types.ts';
export { EVICTION_POLICIES } from './types.ts';

/** A new eviction policy of the named kind. */
export function createEvictionPolicy(name: EvictionPolicyName, options: EvictionOptions): EvictionPolicy {
  switch (name) {
    case 'random': return createRandomEviction(options.random);
    case 'newest': return createNewestEviction();
    case 'oldest': return createOldestEviction();
    case 'least-recently-used': return createLeastRecentlyUsedEviction();
  }
}

/** @throws BatonError ERR_INVALID_CONFIG naming the bad value and the allowed names. */
export function parseEvictionPolicy(name: string): EvictionPolicyName {
  return parsePolicyName('eviction', EVICTION_POLICIES, name);
}
