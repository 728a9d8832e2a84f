import { z } from 'zod';
import { ID_PATTERN } from './ids.ts';

/**
 * Contracts between the control plane and data planes.
 *
 * Control plane → data plane (internal :8081):
 *   POST /internal/v1/routing      RoutingUpdate → 200 RoutingAck | 409 ERR_VERSION_GAP (send a snapshot)
 *   POST /internal/v1/drain/wait   DrainWaitRequest → 200 DrainWaitResponse
 * Data plane → control plane (:9090):
 *   POST /internal/v1/dataplanes/register   RegisterDataplaneRequest → 200 {} (a snapshot follows on /routing)
 *   POST /internal/v1/dataplanes/heartbeat  {dataplaneId} → 200 {} | 404 ERR_DATAPLANE_NOT_FOUND (register again)
 *   POST /internal/v1/demand                DemandReport → 200 DemandAck
 *
 * Routing state is keyed (functions by name, endpoints by sandbox id) so every change is
 * idempotent. Each data plane's view has a version inside an epoch: a delta applies only when its
 * `baseVersion` equals the receiver's version in the same epoch; otherwise the receiver answers
 * ERR_VERSION_GAP and the control plane sends a snapshot, which replaces the whole view.
 */

const id = z.string().regex(ID_PATTERN);

export const routingFunctionSchema = z.strictObject({
  name: z.string(),
  generation: z.number().int().min(1),
  /** Max in-flight invocations per sandbox. */
  concurrency: z.number().int().min(1),
  timeoutMs: z.number().int().min(1),
  /** The spec's `scaling.maxScale`: with that many endpoints every slot busy, the function cannot grow (overload refusals). */
  maxScale: z.number().int().min(1).optional(),
  /** The spec's `maxConcurrency` (in flight at once; one more is 429). */
  maxConcurrency: z.number().int().min(1).optional(),
  /** The spec's `maxBodyBytes` (largest invocation body). */
  maxBodyBytes: z.number().int().min(1).optional(),
  /** Header carrying the load-balancing key (see the function spec). */
  affinityHeader: z.string().optional(),
  /** The spec's `protocol` when it is not the default `http1`: how the data plane talks to the sandboxes. */
  protocol: z.enum(['http1', 'h2c']).optional(),
  /** The spec's `async` settings (compiled, every field set), when it has some; the data plane applies the defaults otherwise. */
  async: z.strictObject({
    maxRetryAttempts: z.number().int().min(0).max(2),
    maxEventAgeMs: z.number().int().min(1),
    retryBackoffMs: z.number().int().min(1),
    maxConcurrency: z.number().int().min(1),
    onFailure: z.discriminatedUnion('type', [
      z.strictObject({ type: z.literal('dlq') }),
      z.strictObject({ type: z.literal('function'), name: z.string() }),
    ]),
  }).optional(),
});
export type RoutingFunction = z.infer<typeof routingFunctionSchema>;

export const routingEndpointSchema = z.strictObject({
  sandboxId: id,
  function: z.string(),
  /** `host:port` of the sandbox's HTTP server. */
  address: z.string(),
  /** A draining endpoint gets no new invocations; it is deleted once the control plane says so. */
  isDraining: z.boolean(),
});
export type RoutingEndpoint = z.infer<typeof routingEndpointSchema>;

export const routingChangeSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('function.put'), function: routingFunctionSchema }),
  z.strictObject({ type: z.literal('function.delete'), name: z.string() }),
  z.strictObject({ type: z.literal('endpoint.put'), endpoint: routingEndpointSchema }),
  z.strictObject({ type: z.literal('endpoint.delete'), sandboxId: id }),
]);
export type RoutingChange = z.infer<typeof routingChangeSchema>;

export const routingUpdateSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('delta'),
    epoch: z.string(),
    /** The sending leader's lease epoch (fencing; not the view's `epoch`): lower than the highest seen is refused, ERR_STALE_EPOCH. Absent counts as 0. */
    leaderEpoch: z.number().int().min(0).optional(),
    baseVersion: z.number().int().min(0),
    version: z.number().int().min(1),
    changes: z.array(routingChangeSchema),
  }),
  z.strictObject({
    kind: z.literal('snapshot'),
    epoch: z.string(),
    leaderEpoch: z.number().int().min(0).optional(),
    version: z.number().int().min(0),
    functions: z.array(routingFunctionSchema),
    endpoints: z.array(routingEndpointSchema),
  }),
]);
export type RoutingUpdate = z.infer<typeof routingUpdateSchema>;
export const routingAckSchema = z.strictObject({ epoch: z.string(), version: z.number().int().min(0) });
export type RoutingAck = z.infer<typeof routingAckSchema>;

export const drainWaitRequestSchema = z.strictObject({
  sandboxIds: z.array(id).max(100_000),
  timeoutMs: z.number().int().min(0).max(3_600_000),
});
export type DrainWaitRequest = z.infer<typeof drainWaitRequestSchema>;
/** `drained`: no invocation in flight (or unknown here). `pending`: still busy at the timeout. */
export const drainWaitResponseSchema = z.strictObject({ drained: z.array(z.string()), pending: z.array(z.string()) });
export type DrainWaitResponse = z.infer<typeof drainWaitResponseSchema>;

export const registerDataplaneRequestSchema = z.strictObject({
  dataplaneId: id,
  /** Base URL of the internal API (routing, drain), e.g. `http://127.0.0.1:8081`. */
  url: z.url(),
  /** Base URL clients invoke functions on, e.g. `http://127.0.0.1:8080`. */
  proxyUrl: z.url(),
});
export type RegisterDataplaneRequest = z.infer<typeof registerDataplaneRequestSchema>;

export const dataplaneHeartbeatSchema = z.strictObject({ dataplaneId: id });

export const demandEntrySchema = z.strictObject({
  function: z.string(),
  /** Time-weighted average of (in flight + queued) over the report interval. */
  concurrency: z.number().min(0),
  /** Invocations waiting in the queue right now. */
  queued: z.number().int().min(0),
  /** Invocations at sandboxes right now. */
  inflight: z.number().int().min(0),
  /** Sandboxes that received an invocation during the interval (feeds least-recently-used eviction). */
  usedSandboxes: z.array(z.string()).max(100_000).optional(),
});
export type DemandEntry = z.infer<typeof demandEntrySchema>;

export const demandReportSchema = z.strictObject({
  dataplaneId: id,
  /** True when sent at once because an invocation found no free capacity (the "poke"). */
  isPoke: z.boolean(),
  entries: z.array(demandEntrySchema).max(1_000_000),
});
export type DemandReport = z.infer<typeof demandReportSchema>;

/**
 * The control plane's answer to a demand report: functions with waiting invocations that no worker
 * has room for (and that have no sandbox). The data plane fails their queued invocations at once
 * with 503 ERR_NO_CAPACITY instead of letting them wait for their deadline.
 */
export const demandAckSchema = z.strictObject({ noCapacity: z.array(z.string()) });
export type DemandAck = z.infer<typeof demandAckSchema>;
