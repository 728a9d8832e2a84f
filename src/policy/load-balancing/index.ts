import { parsePolicyName } from '../parse-policy-name.ts';
import { ChBlBalancer } from './ch-bl.ts';
import { KnativeBalancer } from './knative.ts';
import { createLeastInflightBalancer } from './least-inflight.ts';
import { createPowerOfTwoBalancer } from './power-of-two.ts';
import { createRandomBalancer } from './random.ts';
import { RoundRobinBalancer } from './round-robin.ts';
import { LOAD_BALANCING_POLICIES } from './types.ts';
import type { LoadBalancer, LoadBalancerOptions, LoadBalancingPolicyName } from './types.ts';

export type { EndpointView, LoadBalancer, LoadBalancerOptions, LoadBalancingPolicyName } from './types.ts';
export { LOAD_BALANCING_POLICIES } from './types.ts';

/**
 * A new load balancer of the named policy; use one per function (round-robin, knative and ch-bl
 * keep a cursor or a ring).
 *
 * @throws BatonError ERR_INVALID_CONFIG for a ch-bl epsilon that is negative or not finite.
 */
export function createLoadBalancer(name: LoadBalancingPolicyName, options: LoadBalancerOptions): LoadBalancer {
  switch (name) {
    case 'random': return createRandomBalancer(options.random);
    case 'round-robin': return new RoundRobinBalancer();
    case 'least-inflight': return createLeastInflightBalancer();
    case 'power-of-two': return createPowerOfTwoBalancer(options.random);
    case 'knative': return new KnativeBalancer();
    case 'ch-bl': return new ChBlBalancer(options.random, options.epsilon);
  }
}

/** @throws BatonError ERR_INVALID_CONFIG naming the bad value and the allowed names. */
export function parseLoadBalancingPolicy(name: string): LoadBalancingPolicyName {
  return parsePolicyName('load-balancing', LOAD_BALANCING_POLICIES, name);
}
