import type { Registry } from 'prom-client';
import { controlPlaneToDataplane } from '../api/contracts.ts';
import type { DrainWaitResponse, RoutingAck } from '../api/dataplane.ts';
import type { BatonError } from '../core/errors.ts';
import { EpochFence } from '../core/fencing.ts';
import type { Logger } from '../observability/logger.ts';
import { JsonRouter, reply, type RequestLine } from '../transport/json-router.ts';
import type { InvocationProxy } from './proxy.ts';

export interface InternalRoutesOptions {
  readonly proxy: InvocationProxy;
  readonly registry: Registry;
  readonly dataplaneId: string;
  readonly logger: Logger;
  /** The highest leader epoch seen; routing updates from lower ones are refused. */
  readonly fence?: EpochFence;
}

/**
 * The internal API on :8081, for the control plane and for operators:
 *   POST /internal/v1/routing     RoutingUpdate → RoutingAck | 409 ERR_VERSION_GAP | 409 ERR_STALE_EPOCH (from a deposed leader; nothing changes)
 *   POST /internal/v1/drain/wait  DrainWaitRequest → DrainWaitResponse
 *   GET  /internal/v1/routing     the routing view: epoch, version, functions, endpoints with in-flight counts
 *   GET  /healthz                 status, epoch and version of the routing view
 *   GET  /metrics                 Prometheus text
 */
export function createInternalRouter(options: InternalRoutesOptions): JsonRouter {
  const { proxy, registry, logger } = options;
  const fence = options.fence ?? new EpochFence();
  const onError = (err: BatonError, where: RequestLine): void => {
    logger.debug({ code: err.code, method: where.method, url: where.path }, 'internal request failed');
  };
  return new JsonRouter({ maxBodyBytes: 64 * 1024 * 1024, onError })
    .serve(controlPlaneToDataplane.updateEndpoints, (update): RoutingAck => {
      try {
        fence.admit(update.leaderEpoch ?? 0, 'routing update');
      } catch (err) {
        logger.warn({ leaderEpoch: update.leaderEpoch, highest: fence.highest }, 'refused a routing update from a deposed leader');
        throw err;
      }
      // Applied at once after parsing, with no other await: updates that arrive in order apply in
      // order, which the control plane relies on when it pipelines deltas on one connection.
      const ack = proxy.table.apply(update);
      if (update.kind === 'snapshot') {
        logger.info({ epoch: ack.epoch, version: ack.version, functions: update.functions.length, endpoints: update.endpoints.length }, 'routing snapshot applied');
      } else {
        if (logger.isLevelEnabled('debug')) logger.debug({ epoch: ack.epoch, version: ack.version, changes: update.changes.length }, 'routing delta applied');
      }
      return ack;
    })
    .serve(controlPlaneToDataplane.drainSandboxes, (request): Promise<DrainWaitResponse> => proxy.drainWait(request.sandboxIds, request.timeoutMs))
    // The routing view with in-flight counts, for people and tests; no plane calls it.
    // eslint-disable-next-line no-restricted-syntax
    .on('GET', '/internal/v1/routing', () => {
      const functions = [];
      const endpoints = [];
      for (const fn of proxy.table.functions()) {
        functions.push({ ...fn.spec });
        for (const e of fn.endpoints) endpoints.push({ sandboxId: e.sandboxId, function: e.function, address: e.address, isDraining: e.isDraining, isRefused: e.isRefused, inflight: e.inflight });
      }
      return { epoch: proxy.table.epoch, version: proxy.table.version, functions, endpoints };
    })
    .on('GET', '/healthz', () => {
      const body = { status: proxy.state === 'open' ? 'ok' : proxy.state, dataplaneId: options.dataplaneId, epoch: proxy.table.epoch, version: proxy.table.version, leaderEpoch: fence.highest };
      return reply(proxy.state === 'open' ? 200 : 503, body);
    })
    .on('GET', '/metrics', async () => ({ status: 200, raw: { data: await registry.metrics(), contentType: registry.contentType } }));
}
