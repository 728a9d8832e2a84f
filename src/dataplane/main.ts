import { serveRpc } from '../transport/rpc-server.ts';
import { controlPlaneToDataplane } from '../api/contracts.ts';
import { systemClock, wallTimePreciseMs, wallTimeMs } from '../core/clock.ts';
import { randomInt, randomUUID } from 'node:crypto';
import path from 'node:path';
import { Pool } from 'undici';
import { createIntercept } from './api-extensions.ts';
import { AsyncApi } from './async/async-api.ts';
import { ASYNC_DEFAULTS, type AsyncConfig } from './async/async-event.ts';
import { AsyncInvocations } from './async/async-invocations.ts';
import { registerAsyncMetrics } from './async/async-metrics.ts';
import { createDeliver } from './async/delivery-client.ts';
import { generateToken, hashToken } from '../api/tokens.ts';
import { EmbeddedStore } from './async/embedded-store.ts';
import { RedisStore } from './async/redis-store.ts';
import { Redis } from 'ioredis';
import { SegmentLog } from './async/segment-log.ts';
import { LambdaApi } from './lambda/lambda-api.ts';
import { SigV4Verifier } from './lambda/sigv4-verifier.ts';
import { createRandom } from '../core/random.ts';
import { createLoadBalancer, parseLoadBalancingPolicy } from '../policy/load-balancing/index.ts';
import { createLogger, type Logger } from '../observability/logger.ts';
import { createRegistry } from '../observability/metrics.ts';
import type { LoadBalancer } from '../policy/load-balancing/types.ts';
import { serveCleartextHttp2 } from '../transport/h2c.ts';
import { createLimitedServer } from '../transport/http-limits.ts';
import { LeaderClient } from '../transport/leader-client.ts';
import { clientTlsOptions, serverTlsOptions } from '../transport/tls.ts';
import { EpochFence } from '../core/fencing.ts';
import { closeServer, httpUrl, listen } from '../transport/listen.ts';
import { type AccessLevel, bearer, CredentialSet, InternalGuard, newCommandToken, readLinkCredentials } from '../transport/internal-auth.ts';
import type { DataplaneConfig } from './config.ts';
import { ControlPlaneLink } from './control-plane-link.ts';
import { DemandReporter } from './demand-reporter.ts';
import { DataplaneMetrics, type FunctionGaugeRow } from './metrics.ts';
import { InvocationProxy } from './proxy.ts';
import { createInternalRouter } from './routes.ts';
import { UpstreamPools } from './upstream-pools.ts';
import type { CertRole } from '../core/certs.ts';

export interface DataplaneOptions {
  readonly logger?: Logger;
  /**
   * Makes the load balancer of one function from the configured policy name; throws
   * ERR_INVALID_CONFIG for an unknown name. Default: the policies of `src/policy/load-balancing`.
   */
  readonly createLoadBalancer?: (name: string, fn: string) => LoadBalancer;
}

export interface RunningDataplane {
  /** Base URL clients invoke functions on (the real port when configured with 0). */
  readonly proxyUrl: string;
  /** Base URL of the internal API. */
  readonly url: string;
  /** Graceful stop: 503 for new invocations, queued ones fail, in-flight ones finish (bounded by `shutdownGraceMs`). */
  close(): Promise<void>;
}

/** The default factory: every policy of `src/policy/load-balancing`, one balancer per function. */
export function defaultLoadBalancerFactory(name: string): LoadBalancer {
  return createLoadBalancer(parseLoadBalancingPolicy(name), { random: createRandom(randomInt(2 ** 31)) });
}

/**
 * The data plane's composition root: the only place that opens sockets, creates the root logger
 * and the metrics registry, and uses the real clock. Starts the invocation server, the internal
 * API, the demand reporter and the control-plane link (registering the real URLs).
 */
export async function startDataplane(config: DataplaneConfig, options: DataplaneOptions = {}): Promise<RunningDataplane> {
  const logger = options.logger ?? createLogger({ name: 'dataplane', level: config.logLevel });
  const makeBalancer = options.createLoadBalancer ?? defaultLoadBalancerFactory;
  makeBalancer(config.loadBalancingPolicy, '(config check)');
  const clock = systemClock;
  const { joinKey, tls } = readLinkCredentials(config, logger);
  // Routing updates and drain waits are accepted only with this, given to the control plane at registration.
  const commandToken = joinKey === undefined ? undefined : newCommandToken();
  const registry = createRegistry('dataplane');
  const client = new LeaderClient({
    urls: config.controlPlaneUrls ?? [config.controlPlaneUrl], timeoutMs: 5_000, connections: 4, isRpc: config.internalTransport === 'rpc', tls,
    ...(joinKey === undefined ? {} : { authorization: bearer(joinKey) }),
  });
  let link: ControlPlaneLink | undefined;
  const reporter = new DemandReporter({
    dataplaneId: config.dataplaneId,
    intervalMs: config.demandReportIntervalMs,
    clock,
    logger: logger.child({ component: 'demand' }),
    // Not an async function, which would keep `report` until the answer (see JsonClient.call).
    send: (report) => (link === undefined ? Promise.resolve() : link.sendDemand(report).then((ack) => {
      for (const name of ack?.noCapacity ?? []) proxy.rejectForNoCapacity(name);
    })),
  });
  const pools = new UpstreamPools();
  const metrics: DataplaneMetrics = new DataplaneMetrics(registry, (): Iterable<FunctionGaugeRow> => proxy.gaugeRows());
  let intercept: ReturnType<typeof createIntercept> | undefined;
  const proxy: InvocationProxy = new InvocationProxy({
    clock,
    logger: logger.child({ component: 'proxy' }),
    metrics,
    reporter,
    pools,
    queueCapacity: config.queueCapacity,
    queueTimeoutMs: config.queueTimeoutMs,
    overloadQueuePerSlot: config.overloadQueuePerSlot,
    maxConcurrentInvocations: config.maxConcurrentInvocations,
    invocationBodyMaxBytes: config.invocationBodyMaxBytes,
    createLoadBalancer: (fn) => makeBalancer(config.loadBalancingPolicy, fn),
    intercept: (req, res, route, scanned) => intercept?.(req, res, route, scanned) ?? false,
    onFunctionAdded: (name) => invocations.poke(name),
  });
  // Asynchronous invocations: the durable queue, delivered back through this data plane's own invocation port.
  const segmentLog = new SegmentLog({ dir: path.join(config.dataDir, 'async'), clock, groupCommitMs: config.asyncGroupCommitMs, segmentMaxBytes: config.asyncSegmentMaxBytes });
  const asyncLogger = logger.child({ component: 'async' });
  let selfPool: Pool | undefined;
  const onOutcome = registerAsyncMetrics(registry, () => invocations, () => segmentLog.fsyncs);
  const invocations: AsyncInvocations = new AsyncInvocations({
    store: config.asyncStore === 'redis'
      ? new RedisStore(redisClient(config.asyncRedisUrl, asyncLogger), `baton:async:${config.dataplaneId}:`, config.dataplaneId, asyncLogger)
      : new EmbeddedStore(segmentLog, asyncLogger),
    clock,
    wallNow: wallTimePreciseMs,
    random: createRandom(randomInt(2 ** 31)),
    logger: asyncLogger,
    deliver: (event) => (selfPool === undefined ? Promise.resolve({ outcome: 'throttled', status: 0 }) : deliver(event)),
    configOf: (fn) => asyncConfigOf(proxy, fn),
    capacity: config.asyncQueueCapacity,
    maxBytes: config.asyncQueueMaxBytes,
    deliveryConcurrency: config.asyncDeliveryConcurrency,
    resultRetentionMs: config.asyncResultRetentionMs,
    resultRetentionMax: config.asyncResultRetentionMax,
    deadLetterRetentionMs: config.asyncDeadLetterRetentionMs,
    throttleBackoffMs: config.asyncThrottleBackoffMs,
    onOutcome,
  });
  let deliver: ReturnType<typeof createDeliver> = () => Promise.resolve({ outcome: 'throttled', status: 0 });
  const lambdaApi = new LambdaApi({
    proxy,
    acceptor: invocations,
    verifier: new SigV4Verifier(config.lambdaAccessKeys, wallTimeMs),
    syncPayloadMaxBytes: config.lambdaSyncPayloadMaxBytes,
    asyncPayloadMaxBytes: config.asyncPayloadMaxBytes,
    newId: randomUUID,
  });
  const asyncApi = new AsyncApi({
    invocations, payloadMaxBytes: config.asyncPayloadMaxBytes, newId: randomUUID,
    authorize: (fn, authorization) => (proxy.table.getFunction(fn)?.spec.auth === 'token' ? proxy.table.tokens.check(authorization, fn, wallTimeMs()) : undefined),
  });
  intercept = createIntercept(lambdaApi, asyncApi);
  const recovered = await invocations.start();
  if (recovered.recovered > 0 || recovered.corrupt > 0) logger.info(recovered, 'async invocations recovered');

  const internalRouter = createInternalRouter({ proxy, registry, dataplaneId: config.dataplaneId, logger: logger.child({ component: 'internal' }), fence: new EpochFence() });

  const headerLimits = { maxHeaderBytes: config.maxHeaderBytes, maxHeaderCount: config.maxHeaderCount };
  // With TLS the invocation port is HTTPS (HTTP/1.1; callers need no certificate) and the internal
  // port HTTPS that only holders of a certificate from the cluster CA reach.
  const proxyServer = createLimitedServer(headerLimits, proxy.handle, {
    keepAliveTimeout: 65_000, ...(tls === undefined ? {} : { tls: { cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' } }),
  });
  const guard = joinKey === undefined || commandToken === undefined ? undefined : new InternalGuard({
    member: new CredentialSet([joinKey, commandToken]), controlPlane: new CredentialSet([commandToken]),
    levelOf: dataplaneAccessLevel, rpcLevel: 'control-plane',
    // With TLS, commands need the control plane's certificate, not only the cluster's.
    ...(tls === undefined ? {} : { certRolesOf: (method: string, pathname: string) => (dataplaneAccessLevel(method, pathname) === 'control-plane' ? CONTROL_PLANE_ROLE : undefined), rpcCertRoles: CONTROL_PLANE_ROLE }),
    log: logger.child({ component: 'internal' }),
  });
  const internalServer = createLimitedServer(headerLimits, guard === undefined ? internalRouter.handle : (req, res) => {
    if (guard.admit(req, res)) internalRouter.handle(req, res);
  }, tls === undefined ? {} : { tls: serverTlsOptions(tls, 'required') });
  const rpcServer = serveRpc(internalServer, internalRouter.dispatch, {
    onProtocolError: (err) => logger.warn({ err: err.message }, 'an RPC connection broke the protocol; closed'),
    ...(guard === undefined ? {} : { admit: (req, socket) => guard.admitUpgrade(req, socket) }),
  });
  // HTTP/2 cleartext (prior knowledge) on the same port: gRPC clients and h2c callers. Not under
  // TLS, where the port serves HTTP/1.1 only (docs/security.md).
  const proxyHttp2 = tls !== undefined ? undefined : serveCleartextHttp2(proxyServer, proxy.handleHttp2, { limits: headerLimits, maxConcurrentStreams: 1000, idleTimeoutMs: 65_000, firstBytesTimeoutMs: 65_000 });
  let proxyPort: number;
  let internalPort: number;
  try {
    proxyPort = (await listen(proxyServer, { host: config.host, port: config.port })).port;
    internalPort = (await listen(internalServer, { host: config.host, port: config.internalPort })).port;
  } catch (err) {
    proxyServer.close();
    internalServer.close();
    await client.close();
    await invocations.close(0);
    throw err;
  }
  const proxyUrl = httpUrl(config.advertiseHost, proxyPort, tls !== undefined);
  const url = httpUrl(config.advertiseHost, internalPort, tls !== undefined);
  // Asynchronous deliveries go through this data plane's own invocation port, on loopback when it listens on every address.
  const selfHost = config.host === '0.0.0.0' ? '127.0.0.1' : config.host === '::' ? '::1' : config.host;
  selfPool = new Pool(httpUrl(selfHost, proxyPort, tls !== undefined), {
    connections: config.asyncDeliveryConcurrency, pipelining: 1, ...(tls === undefined ? {} : { connect: clientTlsOptions(tls) }),
  });
  // Asynchronous invocations of functions with `auth: token` were checked when accepted; their
  // attempts come back to this port with a token only this process knows.
  const own = generateToken();
  proxy.table.tokens.trustOwn(own.token, own.id, hashToken(own.token));
  const ownAuthorization = `Bearer ${own.token}`;
  deliver = createDeliver(selfPool, config.asyncResponseMaxBytes, (fn) => (proxy.table.getFunction(fn)?.spec.auth === 'token' ? ownAuthorization : undefined));

  link = new ControlPlaneLink({
    client,
    clock,
    logger: logger.child({ component: 'control-plane-link' }),
    registration: { dataplaneId: config.dataplaneId, url, proxyUrl, ...(commandToken === undefined ? {} : { commandToken }) },
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    // A control plane that restarted never heard the pokes sent while it was away.
    onRegistered: () => reporter.pokeQueued(),
  });
  link.start();
  logger.info({ dataplaneId: config.dataplaneId, proxyUrl, url, controlPlaneUrls: config.controlPlaneUrls ?? [config.controlPlaneUrl] }, 'data plane started');

  let closing: Promise<void> | undefined;
  const close = async (): Promise<void> => {
    logger.info({ inflight: proxy.inflight }, 'data plane closing');
    // Async attempts in flight finish first (they need the proxy); unfinished events stay in the log.
    await invocations.close(config.shutdownGraceMs);
    await selfPool?.close().catch(() => undefined);
    const stopAccepting = closeServer(proxyServer);
    proxyServer.closeIdleConnections();
    proxyHttp2?.closeIdle();
    await proxy.close(config.shutdownGraceMs);
    proxyServer.closeAllConnections();
    proxyHttp2?.destroyAll();
    await stopAccepting;
    reporter.close();
    link?.close();
    await pools.closeAll(true);
    rpcServer.close();
    internalServer.closeAllConnections();
    await closeServer(internalServer);
    await client.close().catch(() => undefined);
    logger.info('data plane closed');
  };
  return { proxyUrl, url, close: () => (closing ??= close()) };
}

/**
 * What a call to the internal port needs (docs/security.md): `/healthz` and `/metrics` nothing, the
 * routing view (GET) a member's credential, routing updates and drain waits the control plane's.
 */
function dataplaneAccessLevel(method: string, pathname: string): AccessLevel {
  if (!pathname.startsWith('/internal/')) return 'open';
  return method === 'GET' && pathname === controlPlaneToDataplane.updateEndpoints.path ? 'member' : 'control-plane';
}

/** The async queue's Redis connection; its errors are logged (ioredis reconnects by itself). */
function redisClient(url: string, logger: Logger): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: 3 });
  redis.on('error', (err: Error) => logger.warn({ err: err.message }, 'Redis connection error'));
  return redis;
}

/** A function's async settings from the routing table (defaults when its spec has none); undefined for an unknown function. */
function asyncConfigOf(proxy: InvocationProxy, fn: string): AsyncConfig | undefined {
  const entry = proxy.table.getFunction(fn);
  if (entry === undefined) return undefined;
  return entry.spec.async ?? ASYNC_DEFAULTS;
}

const CONTROL_PLANE_ROLE: readonly CertRole[] = ['controlplane'];
