import { randomInt } from 'node:crypto';
import { mkdir, open, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { generateToken, tokenId } from '../api/tokens.ts';
import { BatonError } from '../core/errors.ts';
import { Gauge } from 'prom-client';
import { Agent } from 'undici';
import { ARTIFACT_FETCH_PATH, controlPlaneToDataplane, dataplaneToControlPlane, workerToControlPlane } from '../api/contracts.ts';
import type { CertRole } from '../core/certs.ts';
import { repeat, systemClock, type Clock } from '../core/clock.ts';
import { createRandom } from '../core/random.ts';
import { createLogger, type Logger } from '../observability/logger.ts';
import { createRegistry } from '../observability/metrics.ts';
import { FileStore } from '../store/file-store.ts';
import { LeaderLease } from '../store/leader-lease.ts';
import { RedisStore } from '../store/redis-store.ts';
import type { Store } from '../store/store.ts';
import { Redis } from 'ioredis';
import { JsonClient } from '../transport/json-client.ts';
import { JsonRouter } from '../transport/json-router.ts';
import { createLimitedServer } from '../transport/http-limits.ts';
import { listen } from '../transport/listen.ts';
import { RpcConnections } from '../transport/rpc-client.ts';
import { serveRpc } from '../transport/rpc-server.ts';
import { clientTlsOptions, serverTlsOptions, type TlsMaterial } from '../transport/tls.ts';
import { bearer, CredentialSet, InternalGuard, readLinkCredentials, unauthenticated } from '../transport/internal-auth.ts';
import { AuditLog, RedisAuditTrail, type AuditTrail } from './audit-log.ts';
import type { ControlPlaneConfig } from './config.ts';
import { ManagementAuth } from './management-auth.ts';
import { createControlPlaneCore, FUNCTION_DELIVERY_WAIT_MS, withinMs, type ControlPlaneCore, type DataplaneConnector, type WorkerConnector } from './core.ts';
import { followerRoutes, leaderRoutes } from './leadership.ts';
import type { DataplaneChannel } from './dataplane-membership.ts';
import { DrainBatcher } from './drain-batcher.ts';
import { RoutingPublisher } from './routing-publisher.ts';
import { addDirigentRoutes, createRegistrationRouter } from './dirigent-routes.ts';
import { createRoutes } from './routes.ts';
import { guardRoutes, RecoveryGate, type Routes } from './recovery-gate.ts';
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
 * The control plane's composition root: the store, the leader lease, the clients and sockets
 * (worker and data-plane connectors, the RPC connections), the HTTP server, and — while this
 * control plane leads — the components (core.ts).
 *
 * Only the holder of the leader lease acts. Each term of leadership is a core of its own, built
 * when the lease is won exactly as after a restart (state loaded from the store, every worker and
 * data plane registering again behind the recovery gate) and closed the moment the lease is lost
 * or runs out: nothing of a deposed term schedules, commands, publishes or writes. What a term
 * sends to workers and data planes carries its epoch, so a message of a term that was paused past
 * its lease is refused by them. Between terms the control plane follows (leadership.ts).
 */
export async function startControlPlane(config: ControlPlaneConfig, deps: ControlPlaneDeps = {}): Promise<RunningControlPlane> {
  const log = deps.logger ?? createLogger({ name: 'controlplane', level: config.logLevel });
  const clock = deps.clock ?? systemClock;
  const { joinKey, tls } = readLinkCredentials(config, log);
  // Internal calls (/internal/…, and the RPC stream, which carries only those) need the join key,
  // and with TLS a client certificate from the cluster CA too.
  const guard = joinKey === undefined ? undefined : new InternalGuard({
    member: new CredentialSet([joinKey]), rpcLevel: 'member', log, isClientCertRequired: tls !== undefined,
    levelOf: (_method, pathname) => (pathname.startsWith('/internal/') ? 'member' : 'open'),
    ...(tls === undefined ? {} : { certRolesOf: controlPlaneCertRoles, rpcCertRoles: ['worker', 'dataplane'] as const }),
  });
  const store = deps.store ?? await openStore(config, log);
  const random = createRandom(config.randomSeed === 0 ? randomInt(2 ** 31) : config.randomSeed);
  await mkdir(config.dataDir, { recursive: true });
  // With Redis, one audit stream for the cluster (every term's changes, in one order); else a file of this control plane's.
  const audit: AuditTrail = store instanceof RedisStore
    ? new RedisAuditTrail(store, { maxEntries: config.auditLogMaxEntries, onError: (err) => log.error({ err: (err as Error).message }, 'an audit entry could not be written to Redis') })
    : await AuditLog.open(config.dataDir, { maxBytes: config.auditLogMaxBytes });
  const adminToken = config.authMode === 'token' ? await readAdminToken(config.adminTokenFile ?? join(config.dataDir, 'admin-token'), log) : undefined;
  // One connection pool per worker origin, shared by every worker client.
  const workerAgent = new Agent({ connections: 64, keepAliveTimeout: 30_000, ...(tls === undefined ? {} : { connect: clientTlsOptions(tls) }) });
  // With the RPC transport every worker and data plane origin gets one stream connection, shared by
  // the clients of the workers behind it.
  const rpc = config.internalTransport === 'rpc' ? new RpcConnections({ tls }) : undefined;
  const processMetrics = createRegistry('controlplane');
  const isLeaderGauge = new Gauge({ name: 'baton_controlplane_is_leader', help: '1 while this control plane holds the leader lease', registers: [processMetrics] });

  let isClosing = false;
  let term: LeaderTerm | undefined;
  let takingOver: { epoch: number; done: Promise<void> } | undefined;
  let leaderUrl: string | undefined;
  let routes: Routes | undefined;
  const headerLimits = { maxHeaderBytes: config.maxHeaderBytes, maxHeaderCount: config.maxHeaderCount };
  // With TLS a client certificate is asked for but not required at the handshake: people with only
  // an API token reach the management API; internal calls need a verified one (the guard).
  const serverOptions = { keepAliveTimeout: 65_000, ...(tls === undefined ? {} : { tls: serverTlsOptions(tls, 'requested') }) };
  const server = createLimitedServer(headerLimits, (req, res) => {
    if (guard === undefined || guard.admit(req, res)) (routes as Routes).handle(req, res);
  }, serverOptions);
  const rpcServer = serveRpc(server, (method, path, body, upgrade) => {
    // The stream is the members' link: the management API is not reachable through it.
    if (!path.startsWith('/internal/')) {
      const err = new BatonError('ERR_NOT_FOUND', `${method} ${path.split('?')[0] ?? path} is not served on the RPC stream`);
      return Promise.resolve({ status: err.status, body: err.toBody() });
    }
    if (guard !== undefined && !guard.admitsOnStream(upgrade, method, path)) {
      const err = unauthenticated();
      return Promise.resolve({ status: err.status, body: err.toBody() });
    }
    return (routes as Routes).dispatch(method, path, body);
  }, {
    onProtocolError: (err) => log.warn({ err: err.message }, 'an RPC connection broke the protocol; closed'),
    ...(guard === undefined ? {} : { admit: (req, socket) => guard.admitUpgrade(req, socket) }),
  });
  const rpcGauge = new Gauge({
    name: 'baton_controlplane_rpc_connections', help: 'RPC stream connections from workers and data planes', registers: [processMetrics],
    collect() { this.set(rpcServer.connections); },
  });
  const listening = await listen(server, config);
  const selfUrl = (config.advertiseUrl ?? listening.url).replace(/\/+$/, '');
  const follower = followerRoutes({
    selfUrl, leaderUrl: () => leaderUrl, isTakingOver: () => takingOver !== undefined, isClosing: () => isClosing, metrics: processMetrics,
  });
  routes = follower;
  const registrationServer = config.registrationPort === undefined ? undefined : createLimitedServer(headerLimits, (req, res) => {
    if (term !== undefined) {
      term.registration.handle(req, res);
      return;
    }
    follower.handle(req, res);
  }, serverOptions);

  const lead = async (epoch: number): Promise<void> => {
    leaderUrl = selfUrl;
    const built = await buildTerm(epoch, {
      config, store, clock, log, random, workerAgent, rpc, tls, selfUrl, deps, audit, adminToken, isClosing: () => isClosing,
      isCurrent: () => lease.epoch === epoch && !isClosing, processGauges: [isLeaderGauge, rpcGauge],
    });
    if (takingOver?.epoch === epoch) takingOver = undefined;
    if (built === undefined) return;
    if (lease.epoch !== epoch || isClosing) {
      built.close();
      return;
    }
    term = built;
    routes = built.routes;
    isLeaderGauge.set(1);
    log.info({ epoch, url: selfUrl, functions: built.core.registry.size, workers: built.core.workers.size }, 'leading');
  };
  const stepDown = (epoch: number): void => {
    if (takingOver?.epoch === epoch) takingOver = undefined;
    if (term?.epoch !== epoch) return;
    const ended = term;
    term = undefined;
    routes = follower;
    leaderUrl = undefined;
    isLeaderGauge.set(0);
    ended.close();
    log.warn({ epoch }, 'stepped down: stopped scheduling, commanding workers and publishing routing views');
  };
  const lease: LeaderLease = new LeaderLease({
    // The file store's lease lives in this process and nobody else can take it: it is held for as
    // long as the process lives, however long the event loop stalls.
    leases: store.leases, clock, log, holder: selfUrl, ttlMs: config.store === 'file' ? FILE_LEASE_MS : config.leaderLeaseMs,
    onElected: (epoch) => { takingOver = { epoch, done: lead(epoch) }; },
    onDeposed: (epoch) => stepDown(epoch),
  });
  // Followers learn who leads from the lease, to name it to workers, data planes and clients.
  const watch = repeat(clock, Math.max(100, Math.floor(config.leaderLeaseMs / 3)), () => {
    if (lease.isLeader) return;
    store.leases.current(LEADER_LEASE).then((holding) => { if (!lease.isLeader) leaderUrl = holding?.holder; }, () => undefined);
  });
  // The first attempt before saying it listens: a lone control plane (or the first of a cluster)
  // is leading, its state loaded, when `startControlPlane` resolves.
  await lease.step();
  await takingOver?.done;
  if (!lease.isLeader) leaderUrl = (await store.leases.current(LEADER_LEASE).catch(() => undefined))?.holder;
  lease.start();
  const registrationUrl = registrationServer === undefined ? undefined : (await listen(registrationServer, { host: config.host, port: config.registrationPort ?? 0 })).url;
  log.info({ url: listening.url, advertiseUrl: selfUrl, registrationUrl, role: lease.isLeader ? 'leader' : 'follower', leaderUrl, epoch: lease.epoch, functions: term?.core.registry.size ?? 0, workers: term?.core.workers.size ?? 0 }, 'control plane listening');

  return {
    url: listening.url,
    async close() {
      if (isClosing) return;
      isClosing = true;
      watch.cancel();
      await takingOver?.done;
      term?.close();
      term = undefined;
      await lease.close();
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

const LEADER_LEASE = 'controlplane-leader';
const FILE_LEASE_MS = 3_600_000;

/** One term of leadership: the components and the routes that act on them. */
interface LeaderTerm {
  readonly epoch: number;
  readonly core: ControlPlaneCore;
  readonly routes: Routes;
  /** Dirigent's registration server's handler. */
  readonly registration: { handle: Routes['handle'] };
  close(): void;
}

/**
 * Builds the components of a term in `epoch` and loads the cluster's state from the store, trying
 * again while the term is current (a store that cannot be read now may be back in a moment).
 * Undefined when the term ended before its state could be loaded.
 */
async function buildTerm(epoch: number, o: {
  config: ControlPlaneConfig; store: Store; clock: Clock; log: Logger; random: ReturnType<typeof createRandom>;
  workerAgent: Agent; rpc: RpcConnections | undefined; tls: TlsMaterial | undefined; selfUrl: string; deps: ControlPlaneDeps;
  audit: AuditTrail; adminToken: string | undefined; isClosing: () => boolean; isCurrent: () => boolean; processGauges: readonly Gauge[];
}): Promise<LeaderTerm | undefined> {
  const { config, store, clock, log, random } = o;
  // A registry per term: a deposed term's gauges (reading its closed components) leave with it.
  const metricsRegistry = createRegistry('controlplane');
  for (const gauge of o.processGauges) metricsRegistry.registerMetric(gauge);
  const workerConnection = workerConnector({ clock, workerAgent: o.workerAgent, rpc: o.rpc, workerClientFactory: o.deps.workerClientFactory, leaderEpoch: epoch });
  const core = createControlPlaneCore({
    config, store, clock, log, random, metricsRegistry, leaderEpoch: epoch,
    connectWorker: workerConnection.connect,
    connectDataplane: (url, dataplaneId, snapshot, commandToken) => connectDataplane(url, {
      clock, log: log.child({ dataplane: dataplaneId }), drainTimeoutMs: config.drainTimeoutMs, rpc: o.rpc, tls: o.tls, snapshot, leaderEpoch: epoch,
      authorization: commandToken === undefined ? undefined : bearer(commandToken),
    }),
  });
  const close = (): void => {
    core.close();
    workerConnection.close();
  };
  for (let attempt = 1; ; attempt++) {
    if (!o.isCurrent()) {
      close();
      return undefined;
    }
    try {
      await core.load();
      if (o.adminToken !== undefined) await core.tokens.bootstrap(o.adminToken);
      break;
    } catch (err) {
      log.error({ err, epoch, attempt }, 'could not load the cluster\'s state from the store; trying again');
      await new Promise<void>((resolve) => { clock.setTimeout(resolve, Math.min(100 * attempt, 1_000)); });
    }
  }
  const { registry, workers, dataplanes, demand, autoscaler, executor } = core;
  const recovery = new RecoveryGate({ workers, clock, maxWaitMs: config.heartbeatIntervalMs * config.heartbeatMissLimit });
  const auth = new ManagementAuth({
    mode: config.authMode, tokens: core.tokens, clock, ratePerSecond: config.managementRatePerSecond, burst: config.managementRateBurst,
  });
  const { audit } = o;
  const router = createRoutes(
    { registry, tokens: core.tokens, quotas: core.quotas, routingDelivered: () => withinMs(clock, FUNCTION_DELIVERY_WAIT_MS, core.routing.flushed()), auth, audit, workers, dataplanes, demand, autoscaler, executor, clock, metrics: metricsRegistry, maxArtifactBytes: config.maxArtifactBytes, isClosing: o.isClosing },
    new JsonRouter({ onError: (err, where) => { if (err.status >= 500) log.error({ err, path: where.path }, 'request failed'); } }),
  );
  addDirigentRoutes(router, { registry, dataplanes, auth, audit });
  const gated = guardRoutes(router, { recovery, isClosing: o.isClosing });
  const registration = createRegistrationRouter({ registry, dataplanes, auth, audit });
  core.start();
  return {
    epoch, core, registration, close,
    routes: leaderRoutes(gated, { selfUrl: o.selfUrl, epoch, isClosing: o.isClosing }),
  };
}

/**
 * The bootstrap admin token from `file`; when there is none, a new one written there (mode 0600,
 * never over an existing file). The token itself is never logged — only the file and the id.
 */
async function readAdminToken(file: string, log: Logger): Promise<string> {
  let text: string | undefined;
  try {
    text = (await readFile(file, 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (text !== undefined) {
    if (tokenId(text) === undefined) throw new BatonError('ERR_INVALID_CONFIG', `adminTokenFile ${file} does not hold a Baton token (baton_<12 hex>_<43 base64url>)`);
    return text;
  }
  const { token, id } = generateToken();
  await mkdir(dirname(file), { recursive: true });
  const handle = await open(file, 'wx', 0o600);
  try {
    await handle.writeFile(`${token}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  log.info({ file, tokenId: id }, 'created an admin token; it is in the file (give it to the CLI as BATON_TOKEN or --token)');
  return token;
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
  workerClientFactory: ((url: string) => WorkerClient) | undefined; leaderEpoch: number;
}): { connect: WorkerConnector; close(): void } {
  const processBatchers = new Map<string, { batcher: ProcessBatcher; close(): void; authorization: string | undefined }>();
  const connect: WorkerConnector = (registration, onCreateFailed) => {
    // Commands carry the token the worker registered with: nobody else holds it.
    const authorization = registration.commandToken === undefined ? undefined : bearer(registration.commandToken);
    const client = o.workerClientFactory?.(registration.url)
      ?? httpWorkerClient(registration.url, { dispatcher: o.workerAgent, rpc: o.rpc?.for(registration.url, authorization), leaderEpoch: o.leaderEpoch, authorization });
    const { processUrl } = registration;
    if (processUrl === undefined) return new WorkerBatcher(client, o.clock, onCreateFailed);
    let entry = processBatchers.get(processUrl);
    if (entry !== undefined && entry.authorization !== authorization) {
      // The process restarted with a new token: its earlier batcher's credential is void.
      entry.close();
      entry = undefined;
    }
    if (entry === undefined) {
      const processClient = httpProcessClient(processUrl, { dispatcher: o.workerAgent, rpc: o.rpc?.for(processUrl, authorization), leaderEpoch: o.leaderEpoch, authorization });
      entry = { batcher: new ProcessBatcher(processClient.post, o.clock, onCreateFailed), close: processClient.close, authorization };
      processBatchers.set(processUrl, entry);
    }
    return entry.batcher.forWorker(registration.workerId, client);
  };
  return {
    connect,
    close: () => {
      for (const entry of processBatchers.values()) entry.close();
      processBatchers.clear();
    },
  };
}

/** Opens the channel to one data plane: its routing publisher and its drain waits. */
function connectDataplane(url: string, o: {
  clock: Clock; log: Logger; drainTimeoutMs: number; rpc: RpcConnections | undefined; tls: TlsMaterial | undefined;
  snapshot: Parameters<DataplaneConnector>[2]; leaderEpoch: number; authorization: string | undefined;
}): DataplaneChannel {
  const rpc = o.rpc?.for(url, o.authorization);
  const auth = o.authorization === undefined ? {} : { authorization: o.authorization };
  const client = new JsonClient(url, { timeoutMs: 10_000, connections: 1, tls: o.tls, ...(rpc === undefined ? {} : { rpc }), ...auth });
  // Drain waits may last up to drainTimeoutMs: over HTTP they get connections of their own, so
  // that they never hold up routing updates (on the RPC stream calls do not wait for each other).
  const drainClient = new JsonClient(url, { timeoutMs: o.drainTimeoutMs + 5_000, connections: 4, tls: o.tls, ...(rpc === undefined ? {} : { rpc }), ...auth });
  const drains = new DrainBatcher(async (sandboxIds, timeoutMs) => {
    try {
      await drainClient.invoke(controlPlaneToDataplane.drainSandboxes, { sandboxIds, timeoutMs });
    } catch (err) {
      o.log.warn({ err, sandboxes: sandboxIds.length }, 'drain wait failed; deleting anyway');
    }
  }, o.drainTimeoutMs, o.clock);
  const publisher = new RoutingPublisher({ send: (update) => client.invoke(controlPlaneToDataplane.updateEndpoints, { ...update, leaderEpoch: o.leaderEpoch }) }, { snapshot: o.snapshot }, o.clock, o.log);
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

/**
 * With TLS, whose certificate may make an internal call (docs/security.md): a worker's calls (its
 * registration, heartbeats, events, artifact fetches) need a worker's certificate, a data plane's a
 * data plane's, so that holding one plane's key and the join secret does not make one the other.
 */
function controlPlaneCertRoles(_method: string, pathname: string): readonly CertRole[] | undefined {
  if (WORKER_PATHS.has(pathname) || pathname.startsWith(ARTIFACT_FETCH_PATH)) return WORKER_ROLE;
  if (DATAPLANE_PATHS.has(pathname)) return DATAPLANE_ROLE;
  return undefined;
}

const WORKER_PATHS = new Set(Object.values(workerToControlPlane).map((c) => c.path));
const DATAPLANE_PATHS = new Set(Object.values(dataplaneToControlPlane).map((c) => c.path));
const WORKER_ROLE: readonly CertRole[] = ['worker'];
const DATAPLANE_ROLE: readonly CertRole[] = ['dataplane'];
