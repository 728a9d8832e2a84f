import type { Registry } from 'prom-client';
import { controlPlaneToWorker } from '../api/contracts.ts';
import type { CreateSandboxesResponse } from '../api/worker.ts';
import type { BatonError } from '../core/errors.ts';
import { EpochFence } from '../core/fencing.ts';
import { JsonRouter, reply } from '../transport/json-router.ts';
import type { Worker } from './worker.ts';

/**
 * The worker's internal API (see src/api/worker.ts) plus `/healthz` and `/metrics`. Bodies are
 * validated with the contract's schemas; a bad one is 400 ERR_INVALID_REQUEST naming the field.
 * Creations and deletions pass `fence` first: one from a deposed leader (a lower leader epoch
 * than the highest seen) is refused with 409 ERR_STALE_EPOCH and changes nothing.
 */
export function createWorkerRouter(worker: Worker, registry: Registry, options: { fence?: EpochFence; onError?: (err: BatonError) => void } = {}): JsonRouter {
  const router = new JsonRouter({ maxBodyBytes: 64 * 1024 * 1024, ...(options.onError === undefined ? {} : { onError: options.onError }) });
  const fence = options.fence ?? new EpochFence();
  router.serve(controlPlaneToWorker.createSandboxes, (request) => {
    fence.admit(request.leaderEpoch ?? 0, 'sandbox creation');
    const response: CreateSandboxesResponse = { accepted: worker.create(request.sandboxes) };
    return reply(202, response);
  });
  router.serve(controlPlaneToWorker.deleteSandboxes, (request) => {
    fence.admit(request.leaderEpoch ?? 0, 'sandbox deletion');
    return worker.delete(request.sandboxIds);
  });
  router.serve(controlPlaneToWorker.listSandboxes, () => ({ sandboxes: worker.list() }));
  router.serve(controlPlaneToWorker.sandboxLogs, (request) => worker.logs(request.sandboxId, request.tail));
  router.on('GET', '/healthz', () => reply(200, { status: 'ok', leaderEpoch: fence.highest }));
  router.on('GET', '/metrics', async () => ({ status: 200, raw: { data: await registry.metrics(), contentType: registry.contentType } }));
  return router;
}
