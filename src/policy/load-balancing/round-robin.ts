import { nextEligibleIndex } from './eligible.ts';
import type { EndpointView, LoadBalancer, LoadBalancingPolicyName } from './types.ts';

/**
 * A cursor over the endpoint array: each pick takes the first eligible endpoint at or after the
 * cursor (wrapping) and moves the cursor past it. When the array changes the cursor is kept modulo
 * its length, so the rotation goes on rather than restarting at 0.
 */
export class RoundRobinBalancer implements LoadBalancer {
  readonly name: LoadBalancingPolicyName;
  #cursor = 0;

  constructor(name: LoadBalancingPolicyName = 'round-robin') {
    this.name = name;
  }

  pick(endpoints: readonly EndpointView[]): EndpointView | undefined {
    if (endpoints.length === 0) return undefined;
    const index = nextEligibleIndex(endpoints, this.#cursor % endpoints.length);
    if (index < 0) return undefined;
    this.#cursor = index + 1;
    return endpoints[index];
  }
}
