import { isEligible } from './eligible.ts';
import { RoundRobinBalancer } from './round-robin.ts';
import type { EndpointView, LoadBalancer } from './types.ts';

/** Knative's activator sends to the first free endpoint when concurrency is this small. */
const FIRST_AVAILABLE_MAX_CAPACITY = 3;

/**
 * Knative activator style: with a concurrency of at most 3 per sandbox, the first eligible
 * endpoint in array order (packs work onto few sandboxes, which Knative found best for small
 * limits); above that, round-robin over the eligible ones. The concurrency is read from the first
 * endpoint (all endpoints of a function share it).
 */
export class KnativeBalancer implements LoadBalancer {
  readonly name = 'knative';
  readonly #roundRobin = new RoundRobinBalancer('knative');

  pick(endpoints: readonly EndpointView[]): EndpointView | undefined {
    const capacity = endpoints[0]?.capacity ?? 0;
    if (capacity <= FIRST_AVAILABLE_MAX_CAPACITY) return endpoints.find(isEligible);
    return this.#roundRobin.pick(endpoints);
  }
}
