import type { Registry } from 'prom-client';
import { ARTIFACT_FETCH_PATH, dataplaneToControlPlane, workerToControlPlane } from '../api/contracts.ts';
import { redactRecord } from '../api/function-spec.ts';
import type { SandboxLogLine } from '../api/worker.ts';
import type { Clock } from '../core/clock.ts';
import { BatonError, toBatonError } from '../core/errors.ts';
import { JsonRouter, reply, type Handler, type RouteContext } from '../transport/json-router.ts';
import type { AuditTrail } from './audit-log.ts';
import type { Autoscaler } from './autoscaler.ts';
import type { DataplaneMembership } from './dataplane-membership.ts';
import type { DemandIntake } from './demand-intake.ts';
import type { FunctionRegistry } from './function-registry.ts';
import { countSandboxes, type FunctionEntry } from './model.ts';
import { requireScope, type Access, type ManagementAuth } from './management-auth.ts';
import type { PlanExecutor } from './plan-executor.ts';
import type { QuotaRegistry } from './quota-registry.ts';
import type { Principal, TokenRegistry } from './token-registry.ts';
import type { WorkerMembership } from './worker-membership.ts';

export interface RouteDeps {
  readonly registry: FunctionRegistry;
  readonly tokens: TokenRegistry;
  readonly quotas: QuotaRegistry;
  /**
   * Resolves once the data planes have what was published so far (bounded, never rejects): a quota
   * change is answered once the functions it capped or released have their new maxScale there.
   */
  readonly routingDelivered: () => Promise<void>;
  readonly auth: ManagementAuth;
  readonly audit: AuditTrail;
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
const MAX_AUDIT_LINES = 10_000;

/**
 * The management REST API (`/v1/...`) and the internal API for workers and data planes. Every
 * management call is authenticated and authorised first (management-auth.ts: 401, 403, 429),
 * its function name checked against the token's scope before anything is looked up, and every
 * change — allowed or refused — written to the audit log. `/healthz` is open; the internal routes
 * are for the planes.
 */
export function createRoutes(deps: RouteDeps, router: JsonRouter): JsonRouter {
  const { registry, workers, dataplanes, tokens } = deps;
  const inScopeFunction = (ctx: RouteContext, who: Principal): FunctionEntry => {
    const name = ctx.params.name ?? '';
    requireScope(who, name);
    return registry.get(name);
  };

  router.on('GET', '/healthz', () => (deps.isClosing() ? reply(503, { status: 'closing' }) : { status: 'ok' }));
  // Metrics name every function: a read token without a scope (Prometheus sends it as `authorization: credentials`).
  router.on('GET', '/metrics', managed(deps, 'read', undefined, async (_ctx, who) => {
    if (!who.isUnscoped) throw new BatonError('ERR_FORBIDDEN', 'a scoped token may not read the metrics (they name every function)');
    return { status: 200, raw: { data: await deps.metrics.metrics(), contentType: deps.metrics.contentType } };
  }));

  router.on('PUT', '/v1/artifacts', managed(deps, 'deploy', 'artifact.upload', async (ctx, _who, audit) => {
    const { digest, isNew } = await registry.putArtifact(await ctx.body(deps.maxArtifactBytes));
    audit.target = digest;
    return reply(isNew ? 201 : 200, { digest });
  }));
  router.on('GET', '/v1/artifacts/:digest', managed(deps, 'deploy', undefined, async (ctx) => ({
    status: 200, raw: { data: await registry.getArtifact(ctx.params.digest ?? ''), contentType: 'application/gzip' },
  })));

  router.on('POST', '/v1/functions', managed(deps, 'deploy', 'function.create', async (ctx, who, audit) => {
    const body = await ctx.json();
    const name = (body as { name?: unknown } | null)?.name;
    if (typeof name === 'string') {
      audit.target = name;
      requireScope(who, name);
    } else if (!who.isUnscoped) {
      requireScope(who, '');
    }
    // Answers show secretEnv's names only (redactRecord).
    return reply(201, redactRecord(await registry.create(body)));
  }));
  router.on('GET', '/v1/functions', managed(deps, 'read', undefined, (_ctx, who) => ({
    functions: registry.list().filter((fn) => who.inScope(fn.name)).map((fn) => describeFunction(fn, deps)),
  })));
  router.on('GET', '/v1/functions/:name', managed(deps, 'read', undefined, (ctx, who) => describeFunction(inScopeFunction(ctx, who), deps)));
  router.on('PUT', '/v1/functions/:name', managed(deps, 'deploy', 'function.update', async (ctx, who) => {
    requireScope(who, ctx.params.name ?? '');
    return redactRecord(await registry.update(ctx.params.name ?? '', await ctx.json()));
  }));
  router.on('DELETE', '/v1/functions/:name', managed(deps, 'deploy', 'function.delete', async (ctx, who) => {
    requireScope(who, ctx.params.name ?? '');
    await registry.delete(ctx.params.name ?? '');
    return { deleted: ctx.params.name };
  }));
  router.on('GET', '/v1/functions/:name/sandboxes', managed(deps, 'read', undefined, (ctx, who) => {
    const fn = inScopeFunction(ctx, who);
    return { sandboxes: [...fn.sandboxes.values()].map((s) => ({
      sandboxId: s.id, workerId: s.worker.id, generation: s.generation, state: s.phase,
      ...(s.address === undefined ? {} : { address: s.address }),
      createdAt: new Date(s.createdAtWallMs).toISOString(),
      ...(s.readyAtWallMs === undefined ? {} : { readyAt: new Date(s.readyAtWallMs).toISOString() }),
      ...(s.breakdown === undefined ? {} : { breakdown: s.breakdown }),
    })) };
  }));
  router.on('GET', '/v1/functions/:name/logs', managed(deps, 'read', undefined, async (ctx, who) => {
    const fn = inScopeFunction(ctx, who);
    const tail = Math.min(MAX_LOG_TAIL, Math.max(1, Number(ctx.query.get('tail') ?? 100) || 100));
    return { lines: await collectLogs(fn, tail, workers) };
  }));
  router.on('GET', '/v1/workers', managed(deps, 'read', undefined, () => ({
    workers: [...workers.values()].map((w) => ({
      workerId: w.id, url: w.url, state: w.state, capacity: w.capacity, allocated: { ...w.allocated },
      runtimes: w.runtimes, sandboxes: w.sandboxes.size, lastHeartbeatAgoMs: Math.round(deps.clock.now() - w.lastHeartbeatMs),
    })),
  })));
  router.on('GET', '/v1/dataplanes', managed(deps, 'read', undefined, () => ({
    dataplanes: [...dataplanes.values()].map((d) => ({
      dataplaneId: d.id, url: d.url, proxyUrl: d.proxyUrl, state: d.state,
      routingVersion: d.channel?.publisher.version ?? 0, isSynced: d.channel?.publisher.isSynced ?? false,
      lastHeartbeatAgoMs: Math.round(deps.clock.now() - d.lastHeartbeatMs),
    })),
  })));

  router.on('POST', '/v1/tokens', managed(deps, 'admin', 'token.create', async (ctx, who, audit) => {
    const { token, record } = await tokens.create(await ctx.json(), who);
    audit.target = record.id;
    const { hash: _hash, ...shown } = record;
    return reply(201, { token, ...shown });
  }));
  router.on('GET', '/v1/tokens', managed(deps, 'admin', undefined, () => ({ tokens: tokens.list() })));
  router.on('DELETE', '/v1/tokens/:id', managed(deps, 'admin', 'token.revoke', async (ctx, who) => tokens.revoke(ctx.params.id ?? '', who)));
  // Quotas name scopes across teams: set and deleted by admins, read by unscoped tokens.
  router.on('PUT', '/v1/quotas/:scope', managed(deps, 'admin', 'quota.set', async (ctx) => {
    const quota = await deps.quotas.set(ctx.params.scope ?? '', await ctx.json());
    await quotaDelivered(deps);
    return quota;
  }));
  router.on('GET', '/v1/quotas', managed(deps, 'read', undefined, (_ctx, who) => {
    if (!who.isUnscoped) throw new BatonError('ERR_FORBIDDEN', 'a scoped token may not list the quotas (they name every scope)');
    return { quotas: deps.quotas.list() };
  }));
  router.on('DELETE', '/v1/quotas/:scope', managed(deps, 'admin', 'quota.delete', async (ctx) => {
    await deps.quotas.delete(ctx.params.scope ?? '');
    await quotaDelivered(deps);
    return { deleted: ctx.params.scope };
  }));
  router.on('GET', '/v1/audit', managed(deps, 'admin', undefined, async (ctx) => {
    const afterSeq = Math.max(0, Math.floor(Number(ctx.query.get('after') ?? 0)) || 0);
    const limit = Math.min(MAX_AUDIT_LINES, Math.max(1, Math.floor(Number(ctx.query.get('limit') ?? 100)) || 100));
    return { entries: await deps.audit.read({ afterSeq, limit }) };
  }));

  // Workers fetch the artifacts of the sandboxes they start here (an internal route, as the others below).
  router.on('GET', `${ARTIFACT_FETCH_PATH}:digest`, async (ctx) => ({
    status: 200, raw: { data: await registry.getArtifact(ctx.params.digest ?? ''), contentType: 'application/gzip' },
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

/**
 * A management route: the caller checked for `access` first; with an `action` (a change) the
 * outcome is written to the audit log — `audit.target` as the handler sets it, by default the
 * path's `name`, `id` or `scope` — before the answer is sent.
 */
export function managed(
  deps: Pick<RouteDeps, 'auth' | 'audit'>, access: Access, action: string | undefined,
  handler: (ctx: RouteContext, who: Principal, audit: { target: string | null }) => unknown,
): Handler {
  return async (ctx) => {
    const audit = { target: ctx.params['name'] ?? ctx.params['id'] ?? ctx.params['scope'] ?? null };
    let who: Principal | undefined;
    try {
      who = deps.auth.check(ctx.headers, access);
      const result = await handler(ctx, who, audit);
      if (action !== undefined) await deps.audit.record({ tokenId: who.tokenId ?? null, action, target: audit.target, status: statusOf(result) });
      return result;
    } catch (err) {
      if (action !== undefined) {
        const e = toBatonError(err);
        await deps.audit.record({ tokenId: who?.tokenId ?? null, action, target: audit.target, status: e.status, code: e.code });
      }
      throw err;
    }
  };
}

/** The functions a quota change released are planned on a microtask (quota-registry.ts): let it run, then wait for the data planes. */
async function quotaDelivered(deps: Pick<RouteDeps, 'routingDelivered'>): Promise<void> {
  await new Promise<void>((resolve) => queueMicrotask(resolve));
  await deps.routingDelivered();
}

function statusOf(result: unknown): number {
  const status = (result as { status?: unknown } | null)?.status;
  return typeof status === 'number' ? status : 200;
}

function describeFunction(fn: FunctionEntry, deps: RouteDeps): unknown {
  const counts = countSandboxes(fn);
  const scaling = deps.autoscaler.describe(fn);
  const heldBy = deps.quotas.heldBy(fn);
  return {
    ...redactRecord(fn.record),
    status: {
      desired: deps.autoscaler.desiredScale(fn), ready: counts.ready, starting: counts.starting, draining: counts.draining,
      outdated: counts.outdatedReady, isPanicking: scaling?.isPanicking ?? false, reason: scaling?.reason ?? 'idle',
      ...(heldBy === undefined ? {} : { heldByQuota: heldBy }),
    },
    quotas: deps.quotas.of(fn),
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
