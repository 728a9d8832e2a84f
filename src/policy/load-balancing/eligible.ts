import type { EndpointView } from './types.ts';

/** An endpoint may take one more invocation: not draining, not refusing connections, and below its concurrency. */
export function isEligible(endpoint: EndpointView): boolean {
  return !endpoint.isDraining && endpoint.isRefused !== true && endpoint.inflight < endpoint.capacity;
}

export function countEligible(endpoints: readonly EndpointView[]): number {
  let count = 0;
  for (const endpoint of endpoints) if (isEligible(endpoint)) count++;
  return count;
}

/** The `n`-th (0-based) eligible endpoint in array order; undefined when there are fewer. */
export function nthEligible(endpoints: readonly EndpointView[], n: number): EndpointView | undefined {
  let seen = 0;
  for (const endpoint of endpoints) {
    if (!isEligible(endpoint)) continue;
    if (seen === n) return endpoint;
    seen++;
  }
  return undefined;
}

/** The first eligible endpoint at or after `start`, wrapping around; -1 when none. */
export function nextEligibleIndex(endpoints: readonly EndpointView[], start: number): number {
  const length = endpoints.length;
  for (let step = 0; step < length; step++) {
    const index = (start + step) % length;
    const endpoint = endpoints[index];
    if (endpoint !== undefined && isEligible(endpoint)) return index;
  }
  return -1;
}
