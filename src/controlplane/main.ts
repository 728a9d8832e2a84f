import { createServer } from 'node:http';
import { Gauge } from 'prom-client';
import { RpcConnections } from '../transport/rpc-client.ts';
import { serveRpc } from '../transport/rpc-server.ts';
import { randomInt } from 'node:crypto';
import { systemClock, type Clock } from '../core/clock.ts';
import { createRandom } from '../core/random.ts';
import { createLogger, type Logger } from '../observability/logger.ts';
import { createRegistry } from '../observability/metrics.ts';
import { createEvictionPolicy } from '../policy/eviction/index.ts';
import { createPlacementPolicy } from '../policy/placement/index.ts';
import { FileStore } from '../store/file-store.ts';
import type { Store } from '../store/store.ts';
import { JsonRouter } from '../transport/json-router.ts';
import { listen } from '../transport/listen.ts';
import { controlPlaneToDataplane } from '../api/contracts.ts';
import { JsonClient } from '../transport/json-client.ts';
import { Autoscaler } from './autoscaler.ts';
import type { ControlPlaneConfig } from './config.ts';
import { DataplaneMembership, type DataplaneChannel } from './dataplane-membership.ts';
import { DemandIntake } from './demand-intake.ts';
import { DrainBatcher } from './drain-batcher.ts';
import { FunctionRegistry } from './function-registry.ts';
import { addAutoscalerGauges, createControlPlaneMetrics } from './metrics.ts';
import { PlanExecutor } from './plan-executor.ts';
import { Reconciler } from './reconciler.ts';
import { RoutingFanout } from './routing-fanout.ts';
import { RoutingPublisher } from './routing-publisher.ts';
import { createRoutes } from './routes.ts';
import { SandboxTable } from './sandbox-table.ts';
import { httpProcessClient, httpWorkerClient, ProcessBatcher, WorkerBatcher, type SandboxBatcher, type WorkerClient } from './worker-client.ts';
import { WorkerMembership } from './worker-membership.ts';
import { Agent } from 'undici';
import type { RegisterWorkerRequest } from '../api/worker.ts';
import type { RoutingEndpoint, RoutingFunction } from '../api/dataplane.ts';

export interface RunningControlPlane {
  /** Base URL of the API, e.g. `http://127.0.0.1:9090`. */
  readonly url: string;
  close(): Promise<void>;
}

export interface ControlPlaneDeps {
  readonly logger?: Logger;
  readonly clock?: Clock;
  readonly store?: Store;
  readonly workerClientFactory?: (url: string) => WorkerClient;
}

/** The control plane's composition root: store, state, policies, loops and the HTTP server. */
export async function startControlPlane(config: ControlPlaneConfig, deps: ControlPlaneDeps = {}): Promise<RunningControlPlane> {
  const log = deps.logger ?? createLogger({ name: 'controlplane', level: config.logLevel });
  const clock = deps.clock ?? systemClock;
  const store = deps.store ?? await FileStore.open(config.dataDir);
  const random = createRandom(config.randomSeed === 0 ? randomInt(2 ** 31) : config.randomSeed);
  // One connection pool per worker origin, shared by every worker client.
  const workerAgent = new Agent({ connections: 64, keepAliveTimeout: 30_000 });
  // With the RPC transport every worker and data plane origin gets one stream connection, shared by
  // the clients of the workers behind it.
  const rpc = config.internalTransport === 'rpc' ? new RpcConnections() : undefined;
  const metricsRegistry = createRegistry('controlplane');

  // The components, each the one owner of its state: the registry (functions), the worker and
  // data-plane memberships (workers, data planes and the channels to them), the autoscaler (demand
  // and desired scale), the plan executor (sandboxes). Their references to each other are
  // resolved when first called, so the order below is free.
  const sandboxes = new SandboxTable();
  const connectWorker = workerConnector({ clock, workerAgent, rpc, workerClientFactory: deps.workerClientFactory, onCreateFailed: (ids, err) => executor.onCreateUnreachable(ids, err) });
  const dataplanes: DataplaneMembership = new DataplaneMembership({
    store, clock, log, heartbeatIntervalMs: config.heartbeatIntervalMs, heartbeatMissLimit: config.heartbeatMissLimit,
    connect: (url, dataplaneId) => connectDataplane(url, { clock, log: log.child({ dataplane: dataplaneId }), drainTimeoutMs: config.drainTimeoutMs, rpc, snapshot: () => routing.snapshot() }),
  });
  const registry: FunctionRegistry = new FunctionRegistry({
    store, log, routing: { publish: (change) => routing.publish(change) },
    autoscaler: { ensureActive: (fn) => autoscaler.ensureActive(fn), onUpdated: (fn) => autoscaler.onUpdated(fn), forget: (fn) => autoscaler.forget(fn) },
    removeSandboxes: (fn) => executor.removeAll(fn),
    limits: { maxPackedBytes: config.maxArtifactBytes, maxUnpackedBytes: config.maxUnpackedBytes, maxEntries: 100_000 },
  });
  const routing: RoutingFanout = new RoutingFanout({ functions: registry, sandboxes, channels: () => dataplanes.channels() });
  const metrics = createControlPlaneMetrics(metricsRegistry, { sandboxes, functions: registry, workers: { values: () => workers.values() } });
  const executor: PlanExecutor = new PlanExecutor({
    sandboxes, routing, drains: dataplanes, clock, log, metrics, createTimeoutMs: config.sandboxCreateTimeoutMs,
    workers: { get: (id) => workers.get(id), batcher: (id) => workers.batcher(id) },
    onChanged: (fn) => reconciler.converge(fn),
  });
  const workers: WorkerMembership = new WorkerMembership({
    store, clock, log, heartbeatIntervalMs: config.heartbeatIntervalMs, heartbeatMissLimit: config.heartbeatMissLimit,
    functions: { get: (name) => registry.find(name) }, sandboxes: executor,
    onRecovered: (fn) => autoscaler.ensureActive(fn, { isRecovered: true }),
    connect: connectWorker,
  });
  const autoscaler: Autoscaler = new Autoscaler({
    clock, bucketMs: config.autoscalerBucketMs, tickMs: config.autoscalerTickMs,
    onDecision: (fn) => reconciler.converge(fn),
    onDecisions: (count) => metrics.scaleDecisions.inc(count),
    onError: (fn, err) => log.error({ err, fn: fn.name }, 'scaling a function failed; the others go on'),
  });
  addAutoscalerGauges(metricsRegistry, autoscaler);
  const reconciler: Reconciler = new Reconciler({
    policies: { placement: createPlacementPolicy(config.placementPolicy, { random }), eviction: createEvictionPolicy(config.evictionPolicy, { random }) },
    executor, desiredScale: (fn) => autoscaler.desiredScale(fn), workers: () => workers.list(), log,
  });
  const demand = new DemandIntake({
    clock, functions: { get: (name) => registry.find(name) }, requireDataplane: (id) => dataplanes.require(id),
    autoscaler, markUsed: (fn, ids, nowMs) => executor.markUsed(fn, ids, nowMs),
  });
  await registry.load();
  await workers.load();
  await dataplanes.load();

  let isClosing = false;
  const router = createRoutes(
    { registry, workers, dataplanes, demand, autoscaler, executor, clock, metrics: metricsRegistry, maxArtifactBytes: config.maxArtifactBytes, isClosing: () => isClosing },
    new JsonRouter({ onError: (err, where) => { if (err.status >= 500) log.error({ err, path: where.path }, 'request failed'); } }),
  );
  const server = createServer({ keepAliveTimeout: 65_000 }, router.handle);
  const rpcServer = serveRpc(server, router.dispatch, { onProtocolError: (err) => log.warn({ err: err.message }, 'an RPC connection broke the protocol; closed') });
  new Gauge({
    name: 'baton_controlplane_rpc_connections', help: 'RPC stream connections from workers and data planes', registers: [metricsRegistry],
    collect() { this.set(rpcServer.connections); },
  });
  const { url } = await listen(server, config);
  workers.start();
  dataplanes.start();
  log.info({ url, functions: registry.size, workers: workers.size }, 'control plane listening');

  return {
    url,
    async close() {
      if (isClosing) return;
      isClosing = true;
      autoscaler.close();
      executor.close();
      workers.close();
      dataplanes.close();
      rpc?.close();
      rpcServer.close();
      server.closeIdleConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await workerAgent.close();
      await store.close();
    },
  };
}

/**
 * Makes the batchers that carry creations and deletions to workers: one per worker, or one per
 * process for workers that share one (`processUrl`, emulated workers), over HTTP or the RPC stream.
 */
function workerConnector(o: {
  clock: Clock; workerAgent: Agent; rpc: RpcConnections | undefined;
  workerClientFactory: ((url: string) => WorkerClient) | undefined;
  onCreateFailed: (sandboxIds: readonly string[], err: unknown) => void;
}): (registration: RegisterWorkerRequest) => SandboxBatcher {
  const processBatchers = new Map<string, ProcessBatcher>();
  return (registration) => {
    const client = o.workerClientFactory?.(registration.url) ?? httpWorkerClient(registration.url, o.workerAgent, o.rpc?.for(registration.url));
    const { processUrl } = registration;
    if (processUrl === undefined) return new WorkerBatcher(client, o.clock, o.onCreateFailed);
    let batcher = processBatchers.get(processUrl);
    if (batcher === undefined) {
      const post = httpProcessClient(processUrl, o.workerAgent, o.rpc?.for(processUrl)).post;
      batcher = new ProcessBatcher(post, o.clock, o.onCreateFailed);
      processBatchers.set(processUrl, batcher);
    }
    return batcher.forWorker(registration.workerId, client);
  };
}

/** Opens the channel to one data plane: its routing publisher and its drain waits. */
function connectDataplane(url: string, o: {
  clock: Clock; log: Logger; drainTimeoutMs: number; rpc: RpcConnections | undefined;
  snapshot: () => { functions: RoutingFunction[]; endpoints: RoutingEndpoint[] };
}): DataplaneChannel {
  const rpc = o.rpc?.for(url);
  const client = new JsonClient(url, { timeoutMs: 10_000, connections: 1, ...(rpc === undefined ? {} : { rpc }) });
  // Drain waits may last up to drainTimeoutMs: over HTTP they get connections of their own, so
  // that they never hold up routing updates (on the RPC stream calls do not wait for each other).
  const drainClient = new JsonClient(url, { timeoutMs: o.drainTimeoutMs + 5_000, connections: 4, ...(rpc === undefined ? {} : { rpc }) });
  const drains = new DrainBatcher(async (sandboxIds, timeoutMs) => {
    try {
      await drainClient.invoke(controlPlaneToDataplane.drainSandboxes, { sandboxIds, timeoutMs });
    } catch (err) {
      o.log.warn({ err, sandboxes: sandboxIds.length }, 'drain wait failed; deleting anyway');
    }
  }, o.drainTimeoutMs, o.clock);
  const publisher = new RoutingPublisher({ send: (update) => client.invoke(controlPlaneToDataplane.updateEndpoints, update) }, { snapshot: o.snapshot }, o.clock, o.log);
  return {
    publisher,
    drainWait: (sandboxIds) => drains.wait(sandboxIds),
    close: () => {
      publisher.close();
      client.destroy();
      drainClient.destroy();
      o.rpc?.forget(url);
    },
  };
}
