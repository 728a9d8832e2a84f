import { z } from 'zod';
import {
  demandAckSchema, demandReportSchema, drainWaitRequestSchema, drainWaitResponseSchema, dataplaneHeartbeatSchema,
  registerDataplaneRequestSchema, routingAckSchema, routingUpdateSchema,
} from './dataplane.ts';
import {
  createSandboxesRequestSchema, createSandboxesResponseSchema, deleteSandboxesRequestSchema, deleteSandboxesResponseSchema,
  heartbeatRequestSchema, listSandboxesResponseSchema, processSandboxesRequestSchema, processSandboxesResponseSchema,
  registerWorkerRequestSchema, registerWorkerResponseSchema, sandboxEventBatchesRequestSchema, sandboxEventBatchesResponseSchema,
  sandboxEventsRequestSchema, sandboxLogsRequestSchema, sandboxLogsResponseSchema,
} from './worker.ts';

/**
 * One internal call between the planes: its method, path and the schemas of its request and of its
 * answer, used by both ends — the receiver's router parses the request with `request`, the caller
 * checks the answer with `response` — so that a path or a body shape cannot differ between the two.
 *
 * A path segment `:name` is a parameter filled from the request's field of that name; the other
 * fields of a GET's request travel as the query string (`request` coerces them from strings).
 */
export interface Contract<Req extends z.ZodType = z.ZodType, Res extends z.ZodType = z.ZodType> {
  /** Dirigent's vocabulary where it fits (RegisterWorker, CreateSandbox, UpdateEndpoints, …): for messages and logs. */
  readonly name: string;
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly request: Req;
  readonly response: Res;
}

/** A value the sender does not change: its arrays and objects may be read-only. */
export type Immutable<T> = T extends readonly (infer U)[] ? readonly Immutable<U>[] : T extends object ? { readonly [K in keyof T]: Immutable<T[K]> } : T;

/** What a caller sends (before the receiver's defaults and coercions). */
export type RequestOf<C extends Contract> = Immutable<z.input<C['request']>>;
/** What the receiver's handler gets, parsed. */
export type ParsedRequestOf<C extends Contract> = z.output<C['request']>;
export type ResponseOf<C extends Contract> = z.output<C['response']>;

/** An answer with nothing in it. The answers are strict, as the requests are, so that both are checked in place (api/in-place-check.ts). */
const empty = z.strictObject({});
/** A GET with no parameters (whatever query it carries is ignored). */
const noParameters = z.object({});

function contract<Req extends z.ZodType, Res extends z.ZodType>(c: Contract<Req, Res>): Contract<Req, Res> {
  return Object.freeze(c);
}

/** Worker → control plane. */
export const workerToControlPlane = {
  registerWorker: contract({ name: 'RegisterWorker', method: 'POST', path: '/internal/v1/workers/register', request: registerWorkerRequestSchema, response: registerWorkerResponseSchema }),
  workerHeartbeat: contract({ name: 'WorkerHeartbeat', method: 'POST', path: '/internal/v1/workers/heartbeat', request: heartbeatRequestSchema, response: empty }),
  sandboxEvents: contract({ name: 'SandboxEvents', method: 'POST', path: '/internal/v1/workers/events', request: sandboxEventsRequestSchema, response: empty }),
  /** The events of several workers that share a process, in one request. */
  sandboxEventBatches: contract({ name: 'SandboxEventBatches', method: 'POST', path: '/internal/v1/workers/events/batch', request: sandboxEventBatchesRequestSchema, response: sandboxEventBatchesResponseSchema }),
} as const;

/** Data plane → control plane. */
export const dataplaneToControlPlane = {
  registerDataplane: contract({ name: 'RegisterDataplane', method: 'POST', path: '/internal/v1/dataplanes/register', request: registerDataplaneRequestSchema, response: empty }),
  dataplaneHeartbeat: contract({ name: 'DataplaneHeartbeat', method: 'POST', path: '/internal/v1/dataplanes/heartbeat', request: dataplaneHeartbeatSchema, response: empty }),
  reportDemand: contract({ name: 'ReportDemand', method: 'POST', path: '/internal/v1/demand', request: demandReportSchema, response: demandAckSchema }),
} as const;

/** Control plane → data plane (its internal port). */
export const controlPlaneToDataplane = {
  updateEndpoints: contract({ name: 'UpdateEndpoints', method: 'POST', path: '/internal/v1/routing', request: routingUpdateSchema, response: routingAckSchema }),
  drainSandboxes: contract({ name: 'DrainSandboxes', method: 'POST', path: '/internal/v1/drain/wait', request: drainWaitRequestSchema, response: drainWaitResponseSchema }),
} as const;

/** Control plane → worker. */
export const controlPlaneToWorker = {
  createSandboxes: contract({ name: 'CreateSandboxes', method: 'POST', path: '/internal/v1/sandboxes', request: createSandboxesRequestSchema, response: createSandboxesResponseSchema }),
  deleteSandboxes: contract({ name: 'DeleteSandboxes', method: 'POST', path: '/internal/v1/sandboxes/delete', request: deleteSandboxesRequestSchema, response: deleteSandboxesResponseSchema }),
  listSandboxes: contract({ name: 'ListSandboxes', method: 'GET', path: '/internal/v1/sandboxes', request: noParameters, response: listSandboxesResponseSchema }),
  sandboxLogs: contract({ name: 'SandboxLogs', method: 'GET', path: '/internal/v1/sandboxes/:sandboxId/logs', request: sandboxLogsRequestSchema, response: sandboxLogsResponseSchema }),
  /** Creations and deletions for every worker that shares a process, sent to the `processUrl` it registered. */
  processSandboxes: contract({ name: 'ProcessSandboxes', method: 'POST', path: '/internal/v1/process/sandboxes', request: processSandboxesRequestSchema, response: processSandboxesResponseSchema }),
} as const;

/** Every internal call, for tests and docs. */
export const INTERNAL_CONTRACTS: readonly Contract[] = [
  ...Object.values(workerToControlPlane), ...Object.values(dataplaneToControlPlane),
  ...Object.values(controlPlaneToDataplane), ...Object.values(controlPlaneToWorker),
];

/**
 * The path of a call: parameters filled from the request, and for a GET the other fields as the
 * query string. Worked example: sandboxLogs with { sandboxId: 'f-1', tail: 50 } →
 * `/internal/v1/sandboxes/f-1/logs?tail=50`.
 */
export function pathOf(c: Contract, request: unknown): string {
  const fields: Record<string, unknown> = typeof request === 'object' && request !== null ? { ...request } : {};
  const path = c.path.split('/').map((segment) => {
    if (!segment.startsWith(':')) return segment;
    const name = segment.slice(1);
    const value = fields[name];
    delete fields[name];
    return encodeURIComponent(String(value));
  }).join('/');
  if (c.method !== 'GET') return path;
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(fields)) if (value !== undefined) query.set(key, String(value));
  const text = query.toString();
  return text === '' ? path : `${path}?${text}`;
}

/**
 * Where a worker fetches an artifact's bytes from the control plane: `GET` this prefix and the
 * digest → 200 application/gzip (raw bytes, so not a JSON contract). The management API's
 * `GET /v1/artifacts/{digest}` is the same for people, with a deployer token.
 */
export const ARTIFACT_FETCH_PATH = '/internal/v1/artifacts/';
