import type { Registry } from 'prom-client';
import { parseOrThrow } from '../api/validate.ts';
import {
  createSandboxesRequestSchema, deleteSandboxesRequestSchema,
  type CreateSandboxesResponse, type ListSandboxesResponse,
} from '../api/worker.ts';
import { BatonError } from '../core/errors.ts';
import { JsonRouter, reply } from '../transport/json-router.ts';
import type { Worker } from './worker.ts';

const DEFAULT_TAIL = 100;

/**
 * The worker's internal API (see src/api/worker.ts) plus `/healthz` and `/metrics`. Bodies are
 * validated with the contract's schemas; a bad one is 400 ERR_INVALID_REQUEST naming the field.
 */
export function createWorkerRouter(worker: Worker, registry: Registry, options: { onError?: (err: BatonError) => void } = {}): JsonRouter {
  const router = new JsonRouter({ maxBodyBytes: 64 * 1024 * 1024, ...(options.onError === undefined ? {} : { onError: options.onError }) });
  router.on('POST', '/internal/v1/sandboxes', async (ctx) => {
    const request = parseOrThrow(createSandboxesRequestSchema, await ctx.json(), 'ERR_INVALID_REQUEST', 'create request');
    const response: CreateSandboxesResponse = { accepted: worker.create(request.sandboxes) };
    return reply(202, response);
  });
  router.on('POST', '/internal/v1/sandboxes/delete', async (ctx) => {
    const request = parseOrThrow(deleteSandboxesRequestSchema, await ctx.json(), 'ERR_INVALID_REQUEST', 'delete request');
    return reply(200, worker.delete(request.sandboxIds));
  });
  router.on('GET', '/internal/v1/sandboxes', () => {
    const response: ListSandboxesResponse = { sandboxes: worker.list() };
    return reply(200, response);
  });
  router.on('GET', '/internal/v1/sandboxes/:id/logs', (ctx) => {
    const raw = ctx.query.get('tail');
    const tail = raw === null ? DEFAULT_TAIL : Number(raw);
    if (!Number.isInteger(tail) || tail < 0) throw new BatonError('ERR_INVALID_REQUEST', 'tail must be a non-negative integer');
    return reply(200, worker.logs(ctx.params['id'] ?? '', tail));
  });
  router.on('GET', '/healthz', () => reply(200, { status: 'ok' }));
  router.on('GET', '/metrics', async () => ({ status: 200, raw: { data: await registry.metrics(), contentType: registry.contentType } }));
  return router;
}
