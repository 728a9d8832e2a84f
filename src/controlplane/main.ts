import { createServer, type Server } from 'node:http';
import { Gauge } from 'prom-client';
import { RpcConnections } from '../transport/rpc-client.ts';
import { serveRpc } from '../transport/rpc-server.ts';
import { randomInt } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { systemClock, type Clock } from '../core/clock.ts';
import { createRandom } from '../core/random.ts';
import { createLogger, type Logger } from '../observability/logger.ts';
import { createRegistry } from '../observability/metrics.ts';
import { createEvictionPolicy } from '../policy/eviction/index.ts';
import { createPlacementPolicy } from '../policy/placement/index.ts';
import { FileStore } from '../store/file-store.ts';
import { RedisStore } from '../store/redis-store.ts';
import type { Store } from '../store/store.ts';
import { Redis } from 'ioredis';
import { JsonRouter } from '../transport/json-router.ts';
import { Autoscaler } from './autoscaler.ts';
import { ClusterState } from './cluster-state.ts';
import type { ControlPlaneConfig } from './config.ts';
import { FunctionRegistry } from './function-registry.ts';
import { Membership } from './membership.ts';
import { addAutoscalerGauges, createControlPlaneMetrics } from './metrics.ts';
import { createRoutes } from './routes.ts';
import { guardRoutes, RecoveryGate } from './recovery-gate.ts';
import { SandboxManager } from './sandbox-manager.ts';
import { httpProcessClient, httpWorkerClient, type WorkerClient } from './worker-client.ts';
import { Agent } from 'undici';

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
  const store = deps.store ?? await openStore(config, log);
  const random = createRandom(config.randomSeed === 0 ? randomInt(2 ** 31) : config.randomSeed);
  const state = new ClusterState();
  // One connection pool per worker origin, shared by every worker client.
  const workerAgent = new Agent({ connections: 64, keepAliveTimeout: 30_000 });
  // With the RPC transport every worker and data plane origin gets one stream connection, shared by
  // the clients of the workers behind it.
  const rpc = config.internalTransport === 'rpc' ? new RpcConnections() : undefined;
  const metricsRegistry = createRegistry('controlplane');
  const metrics = createControlPlaneMetrics(metricsRegistry, state);

  const sandboxManager = new SandboxManager({
    state, clock, log, metrics,
    placement: createPlacementPolicy(config.placementPolicy, { random }),
    eviction: createEvictionPolicy(config.evictionPolicy, { random }),
    createTimeoutMs: config.sandboxCreateTimeoutMs,
  });
  const autoscaler = new Autoscaler({
    clock, bucketMs: config.autoscalerBucketMs, tickMs: config.autoscalerTickMs,
    onDecision: (fn) => sandboxManager.reconcile(fn),
    onDecisions: (count) => metrics.scaleDecisions.inc(count),
    onError: (fn, err) => log.error({ err, fn: fn.record.spec.name }, 'scaling a function failed; the others go on'),
  });
  addAutoscalerGauges(metricsRegistry, autoscaler);
  const membership = new Membership({
    state, store, clock, log, sandboxes: sandboxManager, autoscaler,
    heartbeatIntervalMs: config.heartbeatIntervalMs, heartbeatMissLimit: config.heartbeatMissLimit, drainTimeoutMs: config.drainTimeoutMs,
    workerClientFactory: deps.workerClientFactory ?? ((workerUrl) => httpWorkerClient(workerUrl, workerAgent, rpc?.for(workerUrl))),
    processClientFactory: (processUrl) => httpProcessClient(processUrl, workerAgent, rpc?.for(processUrl)),
    ...(rpc === undefined ? {} : { rpc }),
  });
  const registry = new FunctionRegistry({
    state, store, log, sandboxes: sandboxManager, autoscaler,
    limits: { maxPackedBytes: config.maxArtifactBytes, maxUnpackedBytes: config.maxUnpackedBytes, maxEntries: 100_000 },
  });
  await registry.load();
  await membership.load();
  const recovery = new RecoveryGate({ state, clock, maxWaitMs: config.heartbeatIntervalMs * config.heartbeatMissLimit });

  let isClosing = false;
  const router = createRoutes(
    { state, registry, membership, autoscaler, sandboxManager, clock, metrics: metricsRegistry, maxArtifactBytes: config.maxArtifactBytes, isClosing: () => isClosing },
    new JsonRouter({ onError: (err, where) => { if (err.status >= 500) log.error({ err, path: where.path }, 'request failed'); } }),
  );
  const gated = guardRoutes(router, { recovery, isClosing: () => isClosing });
  const server = createServer({ keepAliveTimeout: 65_000 }, gated.handle);
  const rpcServer = serveRpc(server, gated.dispatch, { onProtocolError: (err) => log.warn({ err: err.message }, 'an RPC connection broke the protocol; closed') });
  new Gauge({
    name: 'baton_controlplane_rpc_connections', help: 'RPC stream connections from workers and data planes', registers: [metricsRegistry],
    collect() { this.set(rpcServer.connections); },
  });
  await listen(server, config.port, config.host);
  const { port } = server.address() as AddressInfo;
  const url = `http://${formatHost(config.host)}:${port}`;
  membership.start();
  log.info({ url, functions: state.functions.size, workers: state.workers.size }, 'control plane listening');

  return {
    url,
    async close() {
      if (isClosing) return;
      isClosing = true;
      autoscaler.close();
      sandboxManager.close();
      membership.close();
      rpc?.close();
      rpcServer.close();
      server.closeIdleConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
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

export function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

export function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}
