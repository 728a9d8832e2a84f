import type { EndpointView, LoadBalancer } from '../policy/load-balancing/types.ts';

/**
 * The data plane's built-in policy: the eligible endpoint (not draining, `inflight < capacity`)
 * with the fewest invocations in flight. Ties are broken by a rotating start index so that equally
 * loaded endpoints share the work instead of the first one taking every request.
 */
export class LeastInflightBalancer implements LoadBalancer {
  readonly name = 'least-inflight';
  #cursor = 0;

  pick(endpoints: readonly EndpointView[]): EndpointView | undefined {
    const count = endpoints.length;
    if (count === 0) return undefined;
    const start = this.#cursor++ % count;
    if (this.#cursor >= 1 << 30) this.#cursor = 0;
    let best: EndpointView | undefined;
    for (let i = 0; i < count; i++) {
      const endpoint = endpoints[(start + i) % count] as EndpointView;
      if (endpoint.isDraining || endpoint.inflight >= endpoint.capacity) continue;
      if (best === undefined || endpoint.inflight < best.inflight) best = endpoint;
    }
    return best;
  }
}
