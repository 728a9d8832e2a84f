import { isEligible } from './eligible.ts';
import type { EndpointView, LoadBalancer } from './types.ts';

/** The eligible endpoint with the fewest invocations in flight; ties go to the first in the array. */
export function pickLeastInflight(endpoints: readonly EndpointView[]): EndpointView | undefined {
  let best: EndpointView | undefined;
  for (const endpoint of endpoints) {
    if (isEligible(endpoint) && (best === undefined || endpoint.inflight < best.inflight)) best = endpoint;
  }
  return best;
}

export function createLeastInflightBalancer(): LoadBalancer {
  return { name: 'least-inflight', pick: pickLeastInflight };
}
