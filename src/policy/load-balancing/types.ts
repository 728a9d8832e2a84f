import type { Random } from '../../core/random.ts';

/** What a load balancer sees of one endpoint of a function, on one data plane. */
export interface EndpointView {
  readonly sandboxId: string;
  /** Invocations in flight at this endpoint from this data plane. */
  readonly inflight: number;
  /** Max in flight (the function's `concurrency`). */
  readonly capacity: number;
  readonly isDraining: boolean;
  /**
   * A connection to it was refused: nothing listens there any more (its sandbox or its worker
   * died), and it gets no invocation until the control plane withdraws it. Set by a data plane.
   */
  readonly isRefused?: boolean;
}

/**
 * Picks the endpoint for one invocation among a function's endpoints. Returns undefined when no
 * endpoint is eligible; an eligible endpoint is never draining nor refused and has `inflight < capacity`.
 * One instance per function (it may keep a cursor); pure otherwise: no I/O, no clock, randomness
 * only from the injected Random.
 */
export interface LoadBalancer {
  readonly name: LoadBalancingPolicyName;
  pick(endpoints: readonly EndpointView[], key?: string): EndpointView | undefined;
}

export const LOAD_BALANCING_POLICIES = ['random', 'round-robin', 'least-inflight', 'power-of-two', 'knative', 'ch-bl'] as const;
export type LoadBalancingPolicyName = (typeof LOAD_BALANCING_POLICIES)[number];

export interface LoadBalancerOptions {
  readonly random: Random;
  /** CH-BL: an endpoint over (1 + epsilon) × average load passes the request on. Default 0.25. */
  readonly epsilon?: number;
}
