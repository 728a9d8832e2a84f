import type { Registry } from 'prom-client';
import { dataplaneToControlPlane, workerToControlPlane } from '../api/contracts.ts';
import { redactRecord } from '../api/function-spec.ts';
import type { SandboxLogLine } from '../api/worker.ts';
import type { Clock } from '../core/clock.ts';
import { JsonRouter, reply, type Reply, type RouteContext } from '../transport/json-router.ts';
import type { Autoscaler } from './autoscaler.ts';
import type { DataplaneMembership } from './dataplane-membership.ts';
import type { DemandIntake } from './demand-intake.ts';
import type { FunctionRegistry } from './function-registry.ts';
import { countSandboxes, type FunctionEntry } from './model.ts';
import type { PlanExecutor } from './plan-executor.ts';
import type { WorkerMembership } from './worker-membership.ts';

export interface RouteDeps {
  readonly registry: FunctionRegistry;
  readonly workers: WorkerMembership;
  readonly dataplanes: DataplaneMembership;
  readonly demand: DemandIntake;
  readonly autoscaler: Autoscaler;
  readonly executor: PlanExecutor;
  readonly clock: Clock;
  readonly metrics: Registry;
  readonly maxArtifactBytes: number;
  readonly isClosing: () => boolean;
}

const MAX_LOG_TAIL = 10_000;

/** The management REST API (`/v1/...`) and the internal API for workers and data planes. */
export function createRoutes(deps: RouteDeps, router: JsonRouter): JsonRouter {
  const { registry, workers, dataplanes } = deps;

  router.on('GET', '/healthz', () => (deps.isClosing() ? reply(503, { status: 'closing' }) : { status: 'ok' }));
  router.on('GET', '/metrics', async () => ({ status: 200, raw: { data: await deps.metrics.metrics(), contentType: deps.metrics.contentType } }));

  router.on('PUT', '/v1/artifacts', async (ctx) => {
    const { digest, isNew } = await registry.putArtifact(await ctx.body(deps.maxArtifactBytes));
    return reply(isNew ? 201 : 200, { digest });
  });
  const getArtifact = async (ctx: RouteContext): Promise<Reply> => ({
    status: 200, raw: { data: await registry.getArtifact(ctx.params.digest ?? ''), contentType: 'application/gzip' },
  });
  router.on('GET', '/v1/artifacts/:digest', getArtifact);
  // Workers fetch the code they run over the internal link (the join key), not the management API;
  // raw bytes, which no JSON contract describes.
  // eslint-disable-next-line no-restricted-syntax
  router.on('GET', '/internal/v1/artifacts/:digest', getArtifact);

  // Answers show secretEnv's names only (redactRecord).
  router.on('POST', '/v1/functions', async (ctx) => reply(201, redactRecord(await registry.create(await ctx.json()))));
  router.on('GET', '/v1/functions', () => ({ functions: registry.list().map((fn) => describeFunction(fn, deps)) }));
  router.on('GET', '/v1/functions/:name', (ctx) => describeFunction(registry.get(ctx.params.name ?? ''), deps));
  router.on('PUT', '/v1/functions/:name', async (ctx) => redactRecord(await registry.update(ctx.params.name ?? '', await ctx.json())));
  router.on('DELETE', '/v1/functions/:name', async (ctx) => {
    await registry.delete(ctx.params.name ?? '');
    return { deleted: ctx.params.name };
  });
  router.on('GET', '/v1/functions/:name/sandboxes', (ctx) => {
    const fn = registry.get(ctx.params.name ?? '');
    return { sandboxes: [...fn.sandboxes.values()].map((s) => ({
      sandboxId: s.id, workerId: s.worker.id, generation: s.generation, state: s.phase,
      ...(s.address === undefined ? {} : { address: s.address }),
      createdAt: new Date(s.createdAtWallMs).toISOString(),
      ...(s.readyAtWallMs === undefined ? {} : { readyAt: new Date(s.readyAtWallMs).toISOString() }),
      ...(s.breakdown === undefined ? {} : { breakdown: s.breakdown }),
    })) };
  });
  router.on('GET', '/v1/functions/:name/logs', async (ctx) => {
    const fn = registry.get(ctx.params.name ?? '');
    const tail = Math.min(MAX_LOG_TAIL, Math.max(1, Number(ctx.query.get('tail') ?? 100) || 100));
    return { lines: await collectLogs(fn, tail, workers) };
  });
  router.on('GET', '/v1/workers', () => ({
    workers: [...workers.values()].map((w) => ({
      workerId: w.id, url: w.url, state: w.state, capacity: w.capacity, allocated: { ...w.allocated },
      runtimes: w.runtimes, sandboxes: w.sandboxes.size, lastHeartbeatAgoMs: Math.round(deps.clock.now() - w.lastHeartbeatMs),
    })),
  }));
  router.on('GET', '/v1/dataplanes', () => ({
    dataplanes: [...dataplanes.values()].map((d) => ({
      dataplaneId: d.id, url: d.url, proxyUrl: d.proxyUrl, state: d.state,
      routingVersion: d.channel?.publisher.version ?? 0, isSynced: d.channel?.publisher.isSynced ?? false,
      lastHeartbeatAgoMs: Math.round(deps.clock.now() - d.lastHeartbeatMs),
    })),
  }));

  router.serve(workerToControlPlane.registerWorker, (request) => workers.register(request));
  router.serve(workerToControlPlane.workerHeartbeat, (request) => {
    workers.heartbeat(request.workerId);
    return {};
  });
  router.serve(workerToControlPlane.leaveWorker, async (request) => {
    await workers.leave(request.workerId);
    return {};
  });
  router.serve(workerToControlPlane.sandboxEvents, (request) => {
    const worker = workers.require(request.workerId);
    for (const event of request.events) deps.executor.onEvent(worker, event);
    return {};
  });
  router.serve(workerToControlPlane.sandboxEventBatches, (request) => {
    const unknownWorkers: string[] = [];
    for (const batch of request.batches) {
      const worker = workers.find(batch.workerId);
      if (worker === undefined) {
        unknownWorkers.push(batch.workerId);
        continue;
      }
      for (const event of batch.events) deps.executor.onEvent(worker, event);
    }
    return { unknownWorkers };
  });
  router.serve(dataplaneToControlPlane.registerDataplane, async (request) => {
    await dataplanes.register(request);
    return {};
  });
  router.serve(dataplaneToControlPlane.dataplaneHeartbeat, (request) => {
    dataplanes.heartbeat(request.dataplaneId);
    return {};
  });
  router.serve(dataplaneToControlPlane.reportDemand, (request) => deps.demand.report(request));
  return router;
}

function describeFunction(fn: FunctionEntry, deps: RouteDeps): unknown {
  const counts = countSandboxes(fn);
  const scaling = deps.autoscaler.describe(fn);
  return {
    ...redactRecord(fn.record),
    status: {
      desired: deps.autoscaler.desiredScale(fn), ready: counts.ready, starting: counts.starting, draining: counts.draining,
      outdated: counts.outdatedReady, isPanicking: scaling?.isPanicking ?? false, reason: scaling?.reason ?? 'idle',
    },
    recentColdStarts: fn.sandboxes.recentColdStarts.entries().map((c) => ({ sandboxId: c.sandboxId, workerId: c.workerId, at: new Date(c.readyAtWallMs).toISOString(), breakdown: c.breakdown })),
    recentFailures: fn.sandboxes.recentFailures.entries(),
  };
}

async function collectLogs(fn: FunctionEntry, tail: number, workers: WorkerMembership): Promise<(SandboxLogLine & { sandboxId: string })[]> {
  const all: (SandboxLogLine & { sandboxId: string })[] = [];
  await Promise.all([...fn.sandboxes.values()].map(async (sandbox) => {
    const batcher = workers.batcher(sandbox.worker.id);
    if (batcher === undefined) return;
    try {
      const { lines } = await batcher.client.logs(sandbox.id, tail);
      for (const line of lines) all.push({ ...line, sandboxId: sandbox.id });
    } catch {
      // A sandbox that just went away has no logs to give; the others still do.
    }
  }));
  all.sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0));
  return all.slice(-tail);
}
