import { randomInt } from 'node:crypto';
import { Gauge } from 'prom-client';
import { Agent } from 'undici';
import { controlPlaneToDataplane } from '../api/contracts.ts';
import { systemClock, type Clock } from '../core/clock.ts';
import { createRandom } from '../core/random.ts';
import { createLogger, type Logger } from '../observability/logger.ts';
import { createRegistry } from '../observability/metrics.ts';
import { FileStore } from '../store/file-store.ts';
import { RedisStore } from '../store/redis-store.ts';
import type { Store } from '../store/store.ts';
import { Redis } from 'ioredis';
import { JsonClient } from '../transport/json-client.ts';
import { JsonRouter } from '../transport/json-router.ts';
import { createLimitedServer } from '../transport/http-limits.ts';
import { listen } from '../transport/listen.ts';
import { RpcConnections } from '../transport/rpc-client.ts';
import { serveRpc } from '../transport/rpc-server.ts';
import type { ControlPlaneConfig } from './config.ts';
import { createControlPlaneCore, type DataplaneConnector, type WorkerConnector } from './core.ts';
import type { DataplaneChannel } from './dataplane-membership.ts';
import { DrainBatcher } from './drain-batcher.ts';
import { RoutingPublisher } from './routing-publisher.ts';
import { addDirigentRoutes, createRegistrationRouter } from './dirigent-routes.ts';
import { createRoutes } from './routes.ts';
import { guardRoutes, RecoveryGate } from './recovery-gate.ts';
import { httpProcessClient, httpWorkerClient, ProcessBatcher, WorkerBatcher, type WorkerClient } from './worker-client.ts';

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

/**
 * The control plane's composition root: the store, the clients and sockets (worker and data-plane
 * connectors, the RPC connections), the components (core.ts) and the HTTP server.
 */
export async function startControlPlane(config: ControlPlaneConfig, deps: ControlPlaneDeps = {}): Promise<RunningControlPlane> {
  const log = deps.logger ?? createLogger({ name: 'controlplane', level: config.logLevel });
  const clock = deps.clock ?? systemClock;
  const store = deps.store ?? await openStore(config, log);
  const random = createRandom(config.randomSeed === 0 ? randomInt(2 ** 31) : config.randomSeed);
  // One connection pool per worker origin, shared by every worker client.
  const workerAgent = new Agent({ connections: 64, keepAliveTimeout: 30_000 });
  // With the RPC transport every worker and data plane origin gets one stream connection, shared by
  // the clients of the workers behind it.
  const rpc = config.internalTransport === 'rpc' ? new RpcConnections() : undefined;
  const metricsRegistry = createRegistry('controlplane');

  const core = createControlPlaneCore({
    config, store, clock, log, random, metricsRegistry,
    connectWorker: workerConnector({ clock, workerAgent, rpc, workerClientFactory: deps.workerClientFactory }),
    connectDataplane: (url, dataplaneId, snapshot) => connectDataplane(url, { clock, log: log.child({ dataplane: dataplaneId }), drainTimeoutMs: config.drainTimeoutMs, rpc, snapshot }),
  });
  await core.load();
  const { registry, workers, dataplanes, demand, autoscaler, executor } = core;
  const recovery = new RecoveryGate({ workers, clock, maxWaitMs: config.heartbeatIntervalMs * config.heartbeatMissLimit });

  let isClosing = false;
  const router = createRoutes(
    { registry, workers, dataplanes, demand, autoscaler, executor, clock, metrics: metricsRegistry, maxArtifactBytes: config.maxArtifactBytes, isClosing: () => isClosing },
    new JsonRouter({ onError: (err, where) => { if (err.status >= 500) log.error({ err, path: where.path }, 'request failed'); } }),
  );
  addDirigentRoutes(router, { registry, dataplanes });
  const gated = guardRoutes(router, { recovery, isClosing: () => isClosing });
  const headerLimits = { maxHeaderBytes: config.maxHeaderBytes, maxHeaderCount: config.maxHeaderCount };
  const server = createLimitedServer(headerLimits, gated.handle, { keepAliveTimeout: 65_000 });
  const rpcServer = serveRpc(server, gated.dispatch, { onProtocolError: (err) => log.warn({ err: err.message }, 'an RPC connection broke the protocol; closed') });
  new Gauge({
    name: 'baton_controlplane_rpc_connections', help: 'RPC stream connections from workers and data planes', registers: [metricsRegistry],
    collect() { this.set(rpcServer.connections); },
  });
  const { url } = await listen(server, config);
  const registrationServer = config.registrationPort === undefined ? undefined : createLimitedServer(headerLimits, createRegistrationRouter({ registry, dataplanes }).handle, { keepAliveTimeout: 65_000 });
  const registrationUrl = registrationServer === undefined ? undefined : (await listen(registrationServer, { host: config.host, port: config.registrationPort ?? 0 })).url;
  core.start();
  log.info({ url, registrationUrl, functions: registry.size, workers: workers.size }, 'control plane listening');

  return {
    url,
    async close() {
      if (isClosing) return;
      isClosing = true;
      core.close();
      rpc?.close();
      rpcServer.close();
      server.closeIdleConnections();
      registrationServer?.closeIdleConnections();
      await Promise.all([server, registrationServer].map((s) => (s === undefined ? undefined : new Promise<void>((resolve) => s.close(() => resolve())))));
      await workerAgent.close();
      await store.close();
    },
  };
}

/** The configured store backend; Redis is connected (and checked to answer) before anything else starts. */
async function openStore(config: ControlPlaneConfig, log: Logger): Promise<Store> {
  if (config.store === 'file') return FileStore.open(config.dataDir);
  // Calls fail (ERR_UNAVAILABLE) after one retry instead of queueing while Redis is away;
  // reconnection goes on in the background, at most 2 s apart.
  const redis = new Redis(config.redisUrl, {
    lazyConnect: true, maxRetriesPerRequest: 1, commandTimeout: 5_000, connectTimeout: 5_000,
    retryStrategy: (attempt) => Math.min(attempt * 100, 2_000),
  });
  let isDown = false;
  const store = await RedisStore.open(redis, {
    onConnectionError: (err) => {
      if (!isDown) log.warn({ err: err.message, redisUrl: config.redisUrl }, 'the Redis store is unreachable; retrying');
      isDown = true;
    },
  });
  redis.on('ready', () => { isDown = false; });
  log.info({ redisUrl: config.redisUrl }, 'using the Redis store');
  return store;
}

/**
 * Makes the batchers that carry creations and deletions to workers: one per worker, or one per
 * process for workers that share one (`processUrl`, emulated workers), over HTTP or the RPC stream.
 */
function workerConnector(o: {
  clock: Clock; workerAgent: Agent; rpc: RpcConnections | undefined;
  workerClientFactory: ((url: string) => WorkerClient) | undefined;
}): WorkerConnector {
  const processBatchers = new Map<string, ProcessBatcher>();
  return (registration, onCreateFailed) => {
    const client = o.workerClientFactory?.(registration.url) ?? httpWorkerClient(registration.url, o.workerAgent, o.rpc?.for(registration.url));
    const { processUrl } = registration;
    if (processUrl === undefined) return new WorkerBatcher(client, o.clock, onCreateFailed);
    let batcher = processBatchers.get(processUrl);
    if (batcher === undefined) {
      const post = httpProcessClient(processUrl, o.workerAgent, o.rpc?.for(processUrl)).post;
      batcher = new ProcessBatcher(post, o.clock, onCreateFailed);
      processBatchers.set(processUrl, batcher);
    }
    return batcher.forWorker(registration.workerId, client);
  };
}

/** Opens the channel to one data plane: its routing publisher and its drain waits. */
function connectDataplane(url: string, o: {
  clock: Clock; log: Logger; drainTimeoutMs: number; rpc: RpcConnections | undefined;
  snapshot: Parameters<DataplaneConnector>[2];
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
