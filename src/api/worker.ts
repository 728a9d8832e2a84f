import { z } from 'zod';
import { DIGEST_PATTERN, NETWORK_MODES, RUNTIMES } from './function-spec.ts';
import { ID_PATTERN } from './ids.ts';

/**
 * Contracts between the control plane and workers. Paths are relative to the receiver's base URL.
 *
 * Control plane → worker (worker :10010):
 *   POST /internal/v1/sandboxes          CreateSandboxesRequest → 202 CreateSandboxesResponse
 *   POST /internal/v1/sandboxes/delete   DeleteSandboxesRequest → 200 DeleteSandboxesResponse
 *   GET  /internal/v1/sandboxes          → 200 ListSandboxesResponse
 *   GET  /internal/v1/sandboxes/{id}/logs?tail=N → 200 SandboxLogsResponse
 *   POST {processUrl}/internal/v1/process/sandboxes  ProcessSandboxesRequest → 200 ProcessSandboxesResponse
 *        (creations and deletions for every worker that shares a process, in one request; sent to
 *        the `processUrl` a worker gave when it registered)
 * Worker → control plane (:9090):
 *   POST /internal/v1/workers/register   RegisterWorkerRequest → 200 RegisterWorkerResponse
 *   POST /internal/v1/workers/heartbeat  HeartbeatRequest → 200 {} | 404 ERR_WORKER_NOT_FOUND (register again)
 *   POST /internal/v1/workers/events     SandboxEventsRequest → 200 {}
 *   POST /internal/v1/workers/events/batch  SandboxEventBatchesRequest → 200 SandboxEventBatchesResponse
 *                                        (the events of several workers that share a process, in one request)
 *   GET  /internal/v1/artifacts/{digest} → 200 application/gzip (the management API's `GET /v1/artifacts/{digest}` needs a deployer token)
 *
 * Creation is asynchronous: the worker accepts a batch at once and reports each sandbox's outcome
 * later as a `ready` or `failed` event (events are batched too). A sandbox that dies on its own is
 * reported as `exited`.
 */

const id = z.string().regex(ID_PATTERN);

/** What a worker needs to start a sandbox of a function. */
export const sandboxFunctionSchema = z.strictObject({
  name: z.string(),
  generation: z.number().int().min(1),
  runtime: z.enum(RUNTIMES),
  /** Absent for functions without code (runtime emulated). */
  artifact: z.string().regex(DIGEST_PATTERN).optional(),
  handler: z.string().optional(),
  command: z.array(z.string()).optional(),
  /** A command function that speaks the Lambda Runtime API (the worker serves it beside the process). */
  lambdaRuntimeApi: z.boolean().optional(),
  concurrency: z.number().int().min(1),
  timeoutMs: z.number().int().min(1),
  env: z.record(z.string(), z.string()),
  resources: z.strictObject({
    cpuMilli: z.number().int(), memoryMiB: z.number().int(),
    maxPids: z.number().int().min(1).optional(), diskMiB: z.number().int().min(1).optional(),
  }),
  /** Runtime `container`: what the sandbox may reach; absent = `none`. */
  network: z.enum(NETWORK_MODES).optional(),
});
export type SandboxFunction = z.infer<typeof sandboxFunctionSchema>;

export const createSandboxesRequestSchema = z.strictObject({
  sandboxes: z.array(z.strictObject({ sandboxId: id, function: sandboxFunctionSchema })).max(10_000),
  /** The epoch of the leader lease of the control plane that sends it (fencing: a lower one than the worker has seen is refused, ERR_STALE_EPOCH). Absent counts as 0. */
  leaderEpoch: z.number().int().min(0).optional(),
});
export type CreateSandboxesRequest = z.infer<typeof createSandboxesRequestSchema>;
export const createSandboxesResponseSchema = z.strictObject({ accepted: z.number().int().min(0) });
export type CreateSandboxesResponse = z.infer<typeof createSandboxesResponseSchema>;

export const deleteSandboxesRequestSchema = z.strictObject({
  sandboxIds: z.array(id).max(10_000),
  /** The epoch of the leader lease of the control plane that sends it (fencing: a lower one than the worker has seen is refused, ERR_STALE_EPOCH). Absent counts as 0. */
  leaderEpoch: z.number().int().min(0).optional(),
});
export type DeleteSandboxesRequest = z.infer<typeof deleteSandboxesRequestSchema>;
export const deleteSandboxesResponseSchema = z.strictObject({ deleted: z.array(z.string()), unknown: z.array(z.string()) });
export type DeleteSandboxesResponse = z.infer<typeof deleteSandboxesResponseSchema>;

export type SandboxState = 'starting' | 'ready' | 'stopping';

export const sandboxInfoSchema = z.strictObject({
  sandboxId: id,
  function: z.string(),
  generation: z.number().int(),
  state: z.enum(['starting', 'ready', 'stopping']),
  /** `host:port` the data plane connects to; present once ready. */
  address: z.string().optional(),
  pid: z.number().int().optional(),
  startedAt: z.string(),
});
export type SandboxInfo = z.infer<typeof sandboxInfoSchema>;
export const listSandboxesResponseSchema = z.object({ sandboxes: z.array(sandboxInfoSchema) });
export type ListSandboxesResponse = z.infer<typeof listSandboxesResponseSchema>;

export const sandboxLogLineSchema = z.object({ ts: z.string(), stream: z.enum(['stdout', 'stderr']), line: z.string() });
export type SandboxLogLine = z.infer<typeof sandboxLogLineSchema>;
/** `GET /internal/v1/sandboxes/{sandboxId}/logs?tail=N`: the request's fields are the path parameter and the query. */
export const sandboxLogsRequestSchema = z.strictObject({ sandboxId: id, tail: z.coerce.number().int().min(0).max(100_000).default(100) });
export type SandboxLogsRequest = z.input<typeof sandboxLogsRequestSchema>;
export const sandboxLogsResponseSchema = z.object({ sandboxId: z.string(), lines: z.array(sandboxLogLineSchema), dropped: z.number().int().min(0) });
export type SandboxLogsResponse = z.infer<typeof sandboxLogsResponseSchema>;

/** Per-phase cold-start latency on the worker, milliseconds. */
export const breakdownSchema = z.strictObject({
  fetchMs: z.number().min(0),
  startMs: z.number().min(0),
  readyMs: z.number().min(0),
  totalMs: z.number().min(0),
  /** Container runtime: image layers unpacked into the shared base (first use of an image on a worker). */
  unpackMs: z.number().min(0).optional(),
  /** Container runtime: OCI bundle (config.json, mount points) written. */
  bundleMs: z.number().min(0).optional(),
  /** Container runtime: a network namespace taken from the pool (or made, when the pool was empty). */
  networkMs: z.number().min(0).optional(),
});
export type CreationBreakdown = z.infer<typeof breakdownSchema>;

/**
 * Why a sandbox stopped on its own or failed to start: `exit` (it exited, code in `exitCode`),
 * `signal` (killed by a signal), `oom` (killed for passing its memory limit), `start-timeout` (not
 * ready within the worker's `readyTimeoutMs`), `start-error` (could not be started at all).
 */
export const FAILURE_REASONS = ['exit', 'signal', 'oom', 'start-timeout', 'start-error'] as const;
export type FailureReason = (typeof FAILURE_REASONS)[number];

export const sandboxEventSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('ready'), sandboxId: id, address: z.string(), breakdown: breakdownSchema }),
  z.strictObject({ type: z.literal('failed'), sandboxId: id, code: z.string(), message: z.string(), reason: z.enum(FAILURE_REASONS).optional() }),
  z.strictObject({
    type: z.literal('exited'), sandboxId: id, exitCode: z.number().int().nullable(), signal: z.string().nullable(),
    reason: z.enum(FAILURE_REASONS).optional(),
  }),
]);
export type SandboxEvent = z.infer<typeof sandboxEventSchema>;

export const sandboxEventsRequestSchema = z.strictObject({ workerId: id, events: z.array(sandboxEventSchema).max(100_000) });
export type SandboxEventsRequest = z.infer<typeof sandboxEventsRequestSchema>;

export const sandboxEventBatchesRequestSchema = z.strictObject({ batches: z.array(sandboxEventsRequestSchema).max(10_000) });
export type SandboxEventBatchesRequest = z.infer<typeof sandboxEventBatchesRequestSchema>;
/** Workers the control plane does not know (their events were not applied; each must register again). */
export const sandboxEventBatchesResponseSchema = z.strictObject({ unknownWorkers: z.array(z.string()) });
export type SandboxEventBatchesResponse = z.infer<typeof sandboxEventBatchesResponseSchema>;

export const capacitySchema = z.strictObject({
  cpuMilli: z.number().int().min(1),
  memoryMiB: z.number().int().min(1),
});
export type Capacity = z.infer<typeof capacitySchema>;

export const registerWorkerRequestSchema = z.strictObject({
  workerId: id,
  /** Base URL of the worker's internal API, e.g. `http://127.0.0.1:10010`. */
  url: z.url(),
  /**
   * Base URL of the process this worker runs in, when several workers share one process (emulated
   * workers): the control plane then sends the creations and deletions of all of them in one request.
   */
  processUrl: z.url().optional(),
  capacity: capacitySchema,
  runtimes: z.array(z.enum(RUNTIMES)).min(1),
  /** What the worker runs right now (after cleaning up a previous run): the control plane reconciles against it. */
  sandboxes: z.array(sandboxInfoSchema),
});
export type RegisterWorkerRequest = z.infer<typeof registerWorkerRequestSchema>;
export const registerWorkerResponseSchema = z.strictObject({
  heartbeatIntervalMs: z.number().int().min(1),
  /** The answering leader's epoch: the worker refuses commands from lower ones from then on. */
  leaderEpoch: z.number().int().min(0).optional(),
});
export type RegisterWorkerResponse = z.infer<typeof registerWorkerResponseSchema>;

export const heartbeatRequestSchema = z.strictObject({ workerId: id });
export type HeartbeatRequest = z.infer<typeof heartbeatRequestSchema>;

export const processSandboxesRequestSchema = z.strictObject({
  creates: z.array(z.strictObject({ workerId: id, sandboxId: id, function: sandboxFunctionSchema })).max(10_000),
  deletes: z.array(z.strictObject({ workerId: id, sandboxId: id })).max(10_000),
  /** The epoch of the leader lease of the control plane that sends it (fencing: a lower one than the worker has seen is refused, ERR_STALE_EPOCH). Absent counts as 0. */
  leaderEpoch: z.number().int().min(0).optional(),
});
export type ProcessSandboxesRequest = z.infer<typeof processSandboxesRequestSchema>;
/** `unknownWorkers`: ids this process does not run (their items were ignored). */
export const processSandboxesResponseSchema = z.strictObject({ accepted: z.number().int().min(0), unknownWorkers: z.array(z.string()) });
export type ProcessSandboxesResponse = z.infer<typeof processSandboxesResponseSchema>;
