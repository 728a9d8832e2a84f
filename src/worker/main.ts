import { createHash, randomInt } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { serveRpc, type RpcDispatch } from '../transport/rpc-server.ts';
import path from 'node:path';
import type { Registry } from 'prom-client';
import { ARTIFACT_FETCH_PATH, controlPlaneToWorker, workerToControlPlane } from '../api/contracts.ts';
import type { ProcessSandboxesRequest, ProcessSandboxesResponse, SandboxFunction, SandboxState } from '../api/worker.ts';
import { systemClock, type Clock } from '../core/clock.ts';
import { BatonError } from '../core/errors.ts';
import { createRandom } from '../core/random.ts';
import { createLogger, type Logger } from '../observability/logger.ts';
import { createRegistry } from '../observability/metrics.ts';
import { LeaderClient } from '../transport/leader-client.ts';
import { serverTlsOptions } from '../transport/tls.ts';
import { EpochFence } from '../core/fencing.ts';
import { closeServer, listen } from '../transport/listen.ts';
import { JsonRouter, reply, sendJson } from '../transport/json-router.ts';
import { type AccessLevel, bearer, CredentialSet, InternalGuard, newCommandToken, readLinkCredentials } from '../transport/internal-auth.ts';
import { ArtifactCache } from './artifact-cache.ts';
import { defaultWorkerId, workerRuntimeOf, workerRuntimesOf, type WorkerConfig } from './config.ts';
import { SandboxCgroups } from './container/cgroups.ts';
import { ContainerRuntime, type ContainerRuntimeOptions } from './container/container-runtime.ts';
import { HostRegistry } from './container/host-registry.ts';
import { execTool } from './container/exec.ts';
import { assertContainerPrerequisites } from './container/prerequisites.ts';
import { ControlPlaneLink, type HeartbeatTicker } from './control-plane-link.ts';
import { EmulatedRuntime } from './emulated/emulated-runtime.ts';
import { createResponder, type ResponderHandler } from './emulated/http-responder.ts';
import { createInvocationHandler } from './emulated/invocation-handler.ts';
import { BatchingEventSink } from './event-sink.ts';
import { EventCoalescer } from './event-coalescer.ts';
import { ClockHeartbeatTicker } from './heartbeat-ticker.ts';
import { createWorkerMetrics, type WorkerMetrics } from './metrics.ts';
import { processStartTime } from './process/proc-stat.ts';
import { ProcessRuntime, RUNNER_PATH, type SandboxUser } from './process/process-runtime.ts';
import { createWorkerRouter } from './routes.ts';
import type { SandboxRuntime } from './runtime.ts';
import { Worker, type WorkerDeps } from './worker.ts';
import type { CertRole } from '../core/certs.ts';

export interface RunningWorker {
  /** Base URL of the internal API, with the port actually bound. */
  readonly url: string;
  /** The worker's id; with `emulate` > 0, the prefix of the logical workers' ids. */
  readonly workerId: string;
  /** The workers this process is, as the control plane knows them: one, or `emulate` logical ones. */
  readonly workers: readonly { readonly workerId: string; readonly url: string }[];
  /**
   * Stops heartbeats, stops every sandbox and closes the servers. `keepSandboxes` leaves the
   * sandbox processes running (tests only: it stands in for a crash, to exercise leftover cleanup).
   */
  close(options?: { keepSandboxes?: boolean }): Promise<void>;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** One worker as the control plane sees it: an id, a URL, a sandbox table, a link and an event sink. */
interface WorkerNode {
  readonly workerId: string;
  readonly url: string;
  readonly worker: Worker;
  readonly link: ControlPlaneLink;
  readonly handle: Handler;
  readonly dispatch: RpcDispatch;
  close(options: { keepSandboxes?: boolean }): Promise<void>;
}

/** What every node of the process shares. */
interface Shared {
  readonly config: WorkerConfig;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly client: LeaderClient;
  readonly registry: Registry;
  readonly metrics: WorkerMetrics;
  readonly ticker?: HeartbeatTicker;
  /** With several workers in this process: their sandbox events leave in one request per turn. */
  readonly events?: EventCoalescer;
  /** With several workers in this process: its base URL, where their creations and deletions can go together. */
  readonly processUrl?: string;
  /** The highest leader epoch this process has seen: every worker of it refuses commands from lower ones. */
  readonly fence: EpochFence;
  /** The credential this process's workers accept commands with, given to the control plane at registration (none without a join secret). */
  readonly commandToken?: string;
}

const ARTIFACT_FETCH_TIMEOUT_MS = 120_000;

/**
 * The worker's composition root: serves the internal API and registers with the control plane
 * (retrying until it answers). With real runtimes (process, container) it first checks their
 * prerequisites, stops sandboxes a previous run left and loads the artifact cache. With the emulated runtime each worker also listens for the
 * invocations of its sandboxes; with `emulate: N` the process is N logical workers, each served
 * under `<url>/w/<i>` and registered on its own. Signal handling belongs to the CLI, not here.
 */
export async function startWorker(config: WorkerConfig, options: { logger?: Logger } = {}): Promise<RunningWorker> {
  const logger = options.logger ?? createLogger({ name: 'worker', level: config.logLevel });
  const clock = systemClock;
  const { joinKey, tls } = readLinkCredentials(config, logger);
  const commandToken = joinKey === undefined ? undefined : newCommandToken();
  const guard = joinKey === undefined || commandToken === undefined ? undefined : new InternalGuard({
    member: new CredentialSet([joinKey, commandToken]), controlPlane: new CredentialSet([commandToken]),
    levelOf: workerAccessLevel, rpcLevel: 'control-plane',
    // With TLS, commands need the control plane's certificate, not only the cluster's.
    ...(tls === undefined ? {} : { certRolesOf: (method: string, pathname: string) => (workerAccessLevel(method, pathname) === 'control-plane' ? CONTROL_PLANE_ROLE : undefined), rpcCertRoles: CONTROL_PLANE_ROLE }),
    log: logger,
  });
  let handle: Handler | undefined;
  let dispatch: RpcDispatch | undefined;
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    if (guard !== undefined && !guard.admit(req, res)) return;
    if (handle !== undefined) handle(req, res);
    else sendJson(res, 503, new BatonError('ERR_UNAVAILABLE', 'the worker is starting').toBody());
  };
  // With TLS only the cluster's daemons reach the port: a client without a certificate from the cluster CA fails the handshake.
  const server = tls === undefined ? createServer(onRequest) : createHttpsServer(serverTlsOptions(tls, 'required'), onRequest);
  const rpcServer = serveRpc(server, (method, path, body) => {
    if (dispatch !== undefined) return dispatch(method, path, body);
    const err = new BatonError('ERR_UNAVAILABLE', 'the worker is starting');
    return Promise.resolve({ status: err.status, body: err.toBody() });
  }, {
    onProtocolError: (err) => logger.warn({ err: err.message }, 'an RPC connection broke the protocol; closed'),
    ...(guard === undefined ? {} : { admit: (req, socket) => guard.admitUpgrade(req, socket) }),
  });
  const { port, url } = await listen(server, config);
  const workerId = config.workerId ?? defaultWorkerId(port);
  const client = new LeaderClient({
    urls: config.controlPlaneUrls ?? [config.controlPlaneUrl], connections: config.emulate > 0 ? 64 : 8, isRpc: config.internalTransport === 'rpc', tls,
    ...(joinKey === undefined ? {} : { authorization: bearer(joinKey) }),
  });
  const registry = createRegistry('worker');
  const nodes: WorkerNode[] = [];
  const metrics = createWorkerMetrics(registry, () => countByState(nodes));
  const ticker = config.emulate > 0 ? new ClockHeartbeatTicker(clock, config.heartbeatIntervalMs) : undefined;
  const events = config.emulate > 0
    ? new EventCoalescer((request, signal) => client.invoke(workerToControlPlane.sandboxEventBatches, request, { signal }), clock)
    : undefined;
  const shared: Shared = {
    config, clock, logger, client, registry, metrics, fence: new EpochFence(),
    ...(ticker === undefined ? {} : { ticker }), ...(events === undefined ? {} : { events }),
    ...(config.emulate > 0 ? { processUrl: url } : {}),
    ...(commandToken === undefined ? {} : { commandToken }),
  };

  try {
    if (workerRuntimeOf(config) !== 'emulated') {
      nodes.push(await createRealNode(shared, workerId, url));
    } else if (config.emulate === 0) {
      nodes.push(await createEmulatedNode(shared, workerId, url, 0, seedOf(config)));
    } else {
      const seed = seedOf(config);
      for (let i = 0; i < config.emulate; i++) nodes.push(await createEmulatedNode(shared, `${workerId}-${i}`, `${url}/w/${i}`, i, seed));
    }
  } catch (err) {
    await Promise.all(nodes.map((node) => node.close({})));
    rpcServer.close();
    await closeServer(server, { isClosingConnections: true });
    await client.close();
    throw err;
  }
  if (config.emulate === 0) {
    handle = (nodes[0] as WorkerNode).handle;
    dispatch = (nodes[0] as WorkerNode).dispatch;
  } else {
    ({ handle, dispatch } = routeByWorker(nodes, registry, shared.fence));
  }
  for (const node of nodes) node.link.start();
  logger.info({ url, workerId, workers: nodes.length, runtimes: workerRuntimesOf(config), controlPlaneUrls: config.controlPlaneUrls ?? [config.controlPlaneUrl] }, 'worker started');

  /**
   * Before its sandboxes are stopped, the control plane drains them (out of every data plane's
   * routing, in-flight invocations finished, replaced on other workers): a graceful stop loses no
   * invocation. A control plane that cannot be reached leaves that to its failure detection.
   */
  const leave = async (id: string): Promise<void> => {
    try {
      await client.invoke(workerToControlPlane.leaveWorker, { workerId: id }, { timeoutMs: config.shutdownGraceMs });
      logger.info({ workerId: id }, 'sandboxes drained by the control plane');
    } catch (err) {
      logger.warn({ workerId: id, err: (err as Error).message }, 'the control plane did not drain the sandboxes; stopping them anyway');
    }
  };
  let closing: Promise<void> | undefined;
  const close = (closeOptions: { keepSandboxes?: boolean } = {}): Promise<void> => {
    closing ??= (async () => {
      await Promise.all(nodes.map((node) => node.link.close()));
      ticker?.close();
      if (closeOptions.keepSandboxes !== true && config.shutdownGraceMs > 0) await Promise.all(nodes.map((node) => leave(node.workerId)));
      await Promise.all(nodes.map((node) => node.close(closeOptions)));
      events?.close();
      rpcServer.close();
      await closeServer(server, { isClosingConnections: true });
        await client.close();
      logger.info({ workerId }, 'worker stopped');
    })();
    return closing;
  };
  return { url, workerId, workers: nodes.map((n) => ({ workerId: n.workerId, url: n.url })), close };
}

/**
 * The one worker of a process with real runtimes (process and/or container): prerequisites
 * checked, leftovers of a previous run stopped, artifact cache loaded.
 */
async function createRealNode(shared: Shared, workerId: string, url: string): Promise<WorkerNode> {
  const { config, clock, logger, client } = shared;
  const dataDir = path.resolve(config.dataDir);
  await mkdir(dataDir, { recursive: true });
  const runtimes: (ProcessRuntime | ContainerRuntime)[] = [];
  let user: SandboxUser | undefined;
  // What sandboxes reach (process sandboxes' code, scratch directories and the runner; containers'
  // images through their mapped ids): the data dir, unless unprivileged ids cannot reach it (see sandboxRootOf).
  const sandboxRoot = await sandboxRootOf(config, dataDir, containerTagOf(workerId, dataDir), logger);
  /** The container runtime's options: this worker's, or (its directory, tag and cgroups) a dead worker's to clean up after. */
  const containerOptions = (own: Pick<ContainerRuntimeOptions, 'dataDir' | 'tag' | 'ociRuntime' | 'subnet' | 'procSelfCgroup'>): ContainerRuntimeOptions => ({
    ...own, netnsPoolSize: config.containerNetnsPool, egress: config.containerEgress, uid: config.containerUid, gid: config.containerGid,
    userNamespace: config.containerUserNamespace, idMapBase: config.containerIdMapBase,
    imageLimits: { maxBytes: config.maxImageBytes, maxEntries: config.maxImageEntries },
    readyTimeoutMs: config.readyTimeoutMs, stopGraceMs: config.stopGraceMs, logBufferLines: config.logBufferLines,
    clock, logger: logger.child({ component: 'container-runtime' }), exec: execTool,
  });
  for (const name of workerRuntimesOf(config)) {
    if (name === 'process') {
      const cgroups = await processCgroupsOf(config, `${containerTagOf(workerId, dataDir)}p`, logger);
      user = await sandboxUserOf(config, sandboxRoot, cgroups !== undefined, logger);
      runtimes.push(new ProcessRuntime({
        dataDir: sandboxRoot, sandboxHost: config.sandboxHost, readyTimeoutMs: config.readyTimeoutMs, stopGraceMs: config.stopGraceMs,
        logBufferLines: config.logBufferLines, clock, logger: logger.child({ component: 'process-runtime' }),
        ...(cgroups === undefined ? {} : { cgroups }), ...(user === undefined ? {} : { user, runnerPath: path.join(sandboxRoot, 'runner', 'handler-runner.cjs') }),
      }));
    } else if (name === 'container') {
      await assertContainerPrerequisites(execTool, config.ociRuntime);
      runtimes.push(new ContainerRuntime(containerOptions({
        dataDir: path.join(sandboxRoot, 'container'), tag: containerTagOf(workerId, dataDir), ociRuntime: config.ociRuntime, subnet: config.containerSubnet,
      })));
    }
  }
  const hostRegistry = runtimes.some((r) => r instanceof ContainerRuntime) ? new HostRegistry(config.hostRegistryDir) : undefined;
  if (hostRegistry !== undefined) await cleanupDeadWorkers(hostRegistry, containerTagOf(workerId, dataDir), containerOptions, logger);
  for (const runtime of runtimes) {
    const leftovers = await runtime.cleanupLeftovers();
    if (leftovers > 0) logger.info({ runtime: runtime.name, count: leftovers }, 'stopped sandboxes left by a previous run');
    if (runtime instanceof ContainerRuntime) {
      // Recorded before the bridge, table and namespaces exist: a worker killed from here on is found.
      const startTime = await processStartTime(process.pid);
      if (hostRegistry !== undefined && startTime !== undefined) {
        await hostRegistry.register({
          workerId, pid: process.pid, startTime, tag: containerTagOf(workerId, dataDir), containerDir: path.join(sandboxRoot, 'container'),
          ociRuntime: config.ociRuntime, subnet: config.containerSubnet, procCgroup: await readFile('/proc/self/cgroup', 'utf8'),
        });
      }
      await runtime.start();
    }
  }
  // Images and bundles are the container runtime's (crun reaches them as root, or as the sandboxes'
  // mapped root through its group, see ContainerRuntime): out of a process sandbox's reach.
  if (user !== undefined && runtimes.some((r) => r instanceof ContainerRuntime && r.host.idMap === undefined)) await chmod(path.join(sandboxRoot, 'container'), 0o700);
  const limits = { maxPackedBytes: config.maxArtifactBytes, maxUnpackedBytes: config.maxUnpackedBytes, maxEntries: config.maxArtifactEntries };
  const artifacts = new ArtifactCache({
    dir: path.join(sandboxRoot, 'artifacts'), limits, clock, logger: logger.child({ component: 'artifact-cache' }),
    source: { fetch: (digest, o) => client.getBytes(`${ARTIFACT_FETCH_PATH}${digest}`, { ...o, timeoutMs: ARTIFACT_FETCH_TIMEOUT_MS }) },
  });
  await artifacts.load();
  logger.info({ dataDir, runtimes: runtimes.map((r) => r.name) }, 'runtimes ready');
  // Stopped with its sandboxes gone, the worker leaves nothing for a record to describe.
  return createNode(shared, workerId, url, runtimes, artifacts, async (options) => {
    if (options?.keepSandboxes !== true) await hostRegistry?.unregister(containerTagOf(workerId, dataDir));
  });
}

/**
 * Who process sandboxes run as: with the worker root, `sandboxUid`/`sandboxGid`. Their code must be
 * reachable (every directory down to the data dir searchable by them; the handler runner is copied
 * into it), and nothing else of the worker's: the data dir, its artifact cache and its scratch
 * root are made searchable but not listable (0711), the worker's own files in it are 0600, and
 * each sandbox's HOME is its own (0700). Not root, or a data dir out of the sandbox user's reach
 * (under a 0700 home directory): the worker's own user, said loudly once.
 * @throws BatonError ERR_PREREQUISITE_MISSING when cgroup limits are on and `setpriv` is missing
 */
async function sandboxUserOf(config: WorkerConfig, dataDir: string, hasCgroups: boolean, logger: Logger): Promise<SandboxUser | undefined> {
  const uid = process.getuid?.();
  if (uid !== 0) {
    logger.warn({ uid }, 'process sandboxes run as the worker\'s own user: only a worker running as root runs them as sandboxUid/sandboxGid');
    return undefined;
  }
  const user = { uid: config.sandboxUid, gid: config.sandboxGid };
  const blocked = await unsearchableAncestor(dataDir, user);
  if (blocked !== undefined) {
    logger.warn({ sandboxUid: user.uid, directory: blocked.directory, mode: blocked.mode },
      `PROCESS SANDBOXES RUN AS ROOT: uid ${user.uid} cannot reach the data dir (${blocked.directory} is mode ${blocked.mode}); chmod o+x ${blocked.directory}, or choose a dataDir that others may reach`);
    return undefined;
  }
  const setpriv = ['/usr/bin/setpriv', '/bin/setpriv', '/usr/sbin/setpriv'].find((file) => existsSync(file));
  if (hasCgroups && setpriv === undefined) {
    throw new BatonError('ERR_PREREQUISITE_MISSING', 'process sandboxes with cgroup limits drop to sandboxUid through setpriv, which is not installed: sudo apt-get install util-linux (or set processLimits: false)');
  }
  for (const dir of [dataDir, path.join(dataDir, 'artifacts'), path.join(dataDir, 'sandboxes'), path.join(dataDir, 'runner')]) {
    await mkdir(dir, { recursive: true });
    await chmod(dir, 0o711);
  }
  // Baton's own files may be out of the sandbox user's reach (a checkout under /root): a copy it can read.
  const runner = path.join(dataDir, 'runner', 'handler-runner.cjs');
  await copyFile(RUNNER_PATH, runner);
  await chmod(runner, 0o644);
  logger.info(user, 'process sandboxes run unprivileged');
  return { ...user, ...(setpriv === undefined ? {} : { setpriv }) };
}

/** The first directory from `/` down to `dir` that `user` cannot search, if any (`dir` itself is made 0711 later). */
/** Where a root worker keeps its process sandboxes' files when they cannot be under its data dir. */
export const FALLBACK_SANDBOX_ROOT = '/var/lib/baton';

/**
 * The directory process sandboxes' files live under: `sandboxDir` when set; else the data dir when
 * the sandbox user can reach it; else (a data dir below a directory closed to others, such as a
 * 0700 /root) `/var/lib/baton/<tag>`, so that sandboxes still run unprivileged. A worker that is
 * not root keeps everything in its data dir.
 * @throws BatonError ERR_PREREQUISITE_MISSING when `sandboxDir` is set and the sandbox user cannot reach it
 */
async function sandboxRootOf(config: WorkerConfig, dataDir: string, tag: string, logger: Logger): Promise<string> {
  if (process.getuid?.() !== 0) return dataDir;
  const user = { uid: config.sandboxUid, gid: config.sandboxGid };
  if (config.sandboxDir !== undefined) {
    const dir = path.resolve(config.sandboxDir);
    const blocked = await unsearchableAncestor(dir, user);
    if (blocked !== undefined) {
      throw new BatonError('ERR_PREREQUISITE_MISSING', `sandboxDir ${dir} is out of uid ${user.uid}'s reach: ${blocked.directory} is mode ${blocked.mode}; chmod o+x ${blocked.directory} or choose another sandboxDir`);
    }
    return dir;
  }
  const blocked = await unsearchableAncestor(dataDir, user);
  if (blocked === undefined) return dataDir;
  const fallback = path.join(FALLBACK_SANDBOX_ROOT, tag);
  if (await unsearchableAncestor(fallback, user) !== undefined) return dataDir;
  await mkdir(fallback, { recursive: true });
  await chmod(FALLBACK_SANDBOX_ROOT, 0o711);
  logger.info({ sandboxDir: fallback, directory: blocked.directory, mode: blocked.mode },
    `sandboxes' files (process sandboxes' code and scratch directories, the container runtime's directory) are under ${fallback}: uid ${user.uid} cannot reach the data dir (${blocked.directory} is mode ${blocked.mode})`);
  return fallback;
}

async function unsearchableAncestor(dir: string, user: { uid: number; gid: number }): Promise<{ directory: string; mode: string } | undefined> {
  const parts = path.resolve(dir).split(path.sep).filter(Boolean);
  for (let i = 0; i < parts.length; i++) {
    const at = path.sep + parts.slice(0, i).join(path.sep);
    const found = await stat(at).catch(() => undefined);
    // Not there yet: made by the worker (mkdir), searchable.
    if (found === undefined) return undefined;
    const { mode, uid, gid } = found;
    const isSearchable = (mode & 0o001) !== 0 || (uid === user.uid && (mode & 0o100) !== 0) || (gid === user.gid && (mode & 0o010) !== 0);
    if (!isSearchable) return { directory: at, mode: (mode & 0o777).toString(8) };
  }
  return undefined;
}

/**
 * The process runtime's cgroups when `processLimits` is on and this worker can make them (root,
 * a writable hierarchy — tried once with a probe group); otherwise none, said once in the log.
 */
async function processCgroupsOf(config: WorkerConfig, tag: string, logger: Logger): Promise<SandboxCgroups | undefined> {
  if (!config.processLimits) return undefined;
  const without = (why: string): undefined => {
    logger.warn({ why }, 'process sandboxes run without cgroup limits: resources count for placement only');
    return undefined;
  };
  if (process.getuid?.() !== 0) return without('the worker is not root (set processLimits: false to silence this)');
  try {
    const cgroups = new SandboxCgroups(tag);
    await cgroups.create('probe', { memoryMiB: 64, cpuMilli: 100, maxPids: 16, cpu: 'weight' });
    await cgroups.remove('probe');
    return cgroups;
  } catch (err) {
    return without(`making a cgroup failed: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * Removes what dead container workers of this host left (see HostRegistry): for each record of a
 * worker that no longer runs, a container runtime on its directory, tag and cgroups removes its
 * containers, cgroups, namespaces, veths, bridge and table; the record goes once that is done.
 * A failure is logged and leaves the record for the next worker to try again.
 */
async function cleanupDeadWorkers(
  registry: HostRegistry, ownTag: string,
  options: (own: Pick<ContainerRuntimeOptions, 'dataDir' | 'tag' | 'ociRuntime' | 'subnet' | 'procSelfCgroup'>) => ContainerRuntimeOptions, logger: Logger,
): Promise<void> {
  for (const dead of await registry.claimDead(ownTag)) {
    const { record } = dead;
    const about = { deadWorkerId: record.workerId, pid: record.pid, tag: record.tag };
    try {
      const runtime = new ContainerRuntime(options({
        dataDir: record.containerDir, tag: record.tag, ociRuntime: record.ociRuntime, subnet: record.subnet, procSelfCgroup: record.procCgroup,
      }));
      const removed = await runtime.cleanupDeadWorker();
      await dead.done();
      const level = removed.containers + removed.cgroups + removed.netns > 0 ? 'info' : 'debug';
      logger[level]({ ...about, ...removed }, 'removed what a dead worker of this host left (containers, cgroups, network namespaces, veths, bridge, nft table)');
    } catch (err) {
      await registry.register(record).catch(() => undefined);
      await dead.done();
      logger.warn({ ...about, err: err instanceof Error ? err.message : String(err) }, 'cleaning up after a dead worker failed; the next worker to start tries again');
    }
  }
}

/** Six hex digits naming this worker's host objects (cgroups, namespaces, bridge): the same across its restarts. */
function containerTagOf(workerId: string, dataDir: string): string {
  return createHash('sha256').update(`${workerId}\0${dataDir}`).digest('hex').slice(0, 6);
}

/** Emulated sandboxes fetch nothing (their runtime says so); this is never called. */
const NO_ARTIFACTS: WorkerDeps['artifacts'] = {
  ensure: () => Promise.reject(new BatonError('ERR_INTERNAL', 'an emulated worker fetches no artifacts')),
};

/**
 * An emulated worker: its sandboxes all share one address, a listener of its own on
 * `sandboxHost` (port `emulatedPort + index`, or any when 0) that answers every invocation.
 */
async function createEmulatedNode(shared: Shared, workerId: string, url: string, index: number, seed: number): Promise<WorkerNode> {
  const { config, clock } = shared;
  let handle: ResponderHandler | undefined;
  const server = createResponder((req, reply) => {
    if (handle !== undefined) handle(req, reply);
    else reply.send(503, JSON.stringify(new BatonError('ERR_UNAVAILABLE', 'the worker is starting').toBody()));
  });
  const port = await server.listen(config.emulatedPort === 0 ? 0 : config.emulatedPort + index, config.sandboxHost);
  const runtime = new EmulatedRuntime({
    address: `${config.sandboxHost}:${port}`, latency: config.emulatedCreateLatency, random: createRandom(seed + index), clock,
  });
  const invocations = createInvocationHandler({ workerId, runtime, clock });
  handle = invocations.handle;
  return createNode(shared, workerId, url, [runtime], NO_ARTIFACTS, async () => {
    invocations.close();
    await server.close();
  });
}

function createNode(
  shared: Shared, workerId: string, url: string, runtimes: readonly SandboxRuntime[], artifacts: WorkerDeps['artifacts'],
  closeRuntimeServer: (options?: { keepSandboxes?: boolean }) => Promise<void>,
): WorkerNode {
  const { config, clock, client, registry, metrics, ticker } = shared;
  const log = shared.logger.child({ workerId });
  let link: ControlPlaneLink | undefined;
  const events = new BatchingEventSink({
    workerId, clock, logger: log,
    send: shared.events?.send ?? ((request, signal) => client.invoke(workerToControlPlane.sandboxEvents, request, { signal }).then(() => undefined)),
    ...(shared.events === undefined ? {} : { defer: shared.events.defer }),
    onUnknownWorker: () => link?.requestRegistration(),
  });
  const worker = new Worker({ runtimes, artifacts, events, clock, logger: log, metrics, maxConcurrentStarts: config.maxConcurrentStarts });
  const router = createWorkerRouter(worker, registry, {
    fence: shared.fence,
    onError: (err) => {
      if (err.status >= 500) log.error({ code: err.code, err: err.message }, 'request failed');
      else if (err.code === 'ERR_STALE_EPOCH') log.warn({ err: err.message }, 'refused a command from a deposed leader');
    },
  });
  link = new ControlPlaneLink({
    workerId, url, clock, logger: log,
    ...(shared.processUrl === undefined ? {} : { processUrl: shared.processUrl }),
    ...(shared.commandToken === undefined ? {} : { commandToken: shared.commandToken }),
    capacity: { cpuMilli: config.cpuMilli, memoryMiB: config.memoryMiB },
    runtimes: worker.runtimeNames,
    listSandboxes: () => worker.list(),
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    ...(ticker === undefined ? {} : { ticker }),
    calls: {
      register: (request, signal) => client.invoke(workerToControlPlane.registerWorker, request, { signal }).then((response) => {
        shared.fence.observe(response.leaderEpoch);
        return response;
      }),
      heartbeat: (request, signal) => client.invoke(workerToControlPlane.workerHeartbeat, request, { signal }).then(() => undefined),
    },
  });
  const running = link;
  return {
    workerId, url, worker, link: running, handle: router.handle, dispatch: router.dispatch,
    async close(options) {
      await running.close();
      await worker.close(options);
      await events.close();
      await closeRuntimeServer(options);
    },
  };
}

/**
 * The internal API of `emulate` logical workers on one server: `/w/<i>/…` is logical worker i's
 * API with the prefix taken off; `/healthz` and `/metrics` (summed over all of them) are the
 * process's.
 */
/** Creations and deletions for the workers of this process, grouped per worker and handed to each. */
function applyProcessSandboxes(byId: ReadonlyMap<string, WorkerNode>, fence: EpochFence, request: ProcessSandboxesRequest): ProcessSandboxesResponse {
  fence.admit(request.leaderEpoch ?? 0, 'batch of sandbox creations and deletions');
  const unknown = new Set<string>();
  const creates = new Map<WorkerNode, { sandboxId: string; function: SandboxFunction }[]>();
  for (const item of request.creates) {
    const node = byId.get(item.workerId);
    if (node === undefined) unknown.add(item.workerId);
    else (creates.get(node) ?? creates.set(node, []).get(node) as { sandboxId: string; function: SandboxFunction }[]).push({ sandboxId: item.sandboxId, function: item.function });
  }
  const deletes = new Map<WorkerNode, string[]>();
  for (const item of request.deletes) {
    const node = byId.get(item.workerId);
    if (node === undefined) unknown.add(item.workerId);
    else (deletes.get(node) ?? deletes.set(node, []).get(node) as string[]).push(item.sandboxId);
  }
  let accepted = 0;
  for (const [node, items] of creates) accepted += node.worker.create(items);
  for (const [node, ids] of deletes) node.worker.delete(ids);
  return { accepted, unknownWorkers: [...unknown] };
}

function routeByWorker(nodes: readonly WorkerNode[], registry: Registry, fence: EpochFence): { handle: Handler; dispatch: RpcDispatch } {
  const byId = new Map(nodes.map((node) => [node.workerId, node]));
  const root = new JsonRouter()
    .serve(controlPlaneToWorker.processSandboxes, (request): ProcessSandboxesResponse => applyProcessSandboxes(byId, fence, request))
    .on('GET', '/healthz', () => reply(200, { status: 'ok' }))
    .on('GET', '/metrics', async () => ({ status: 200, raw: { data: await registry.metrics(), contentType: registry.contentType } }));
  const nodeOf = (path: string): { node: WorkerNode; rest: string } | undefined => {
    const match = /^\/w\/(\d+)(\/.*)?$/.exec(path);
    const node = match === null ? undefined : nodes[Number(match[1])];
    return match === null || node === undefined ? undefined : { node, rest: match[2] ?? '/' };
  };
  return {
    handle(req, res) {
      const found = nodeOf(req.url ?? '');
      if (found === undefined) {
        root.handle(req, res);
        return;
      }
      req.url = found.rest;
      found.node.handle(req, res);
    },
    dispatch(method, path, body) {
      const found = nodeOf(path);
      return found === undefined ? root.dispatch(method, path, body) : found.node.dispatch(method, found.rest, body);
    },
  };
}

/**
 * What a call to the worker's server needs (docs/security.md): `/healthz` and `/metrics` nothing;
 * the sandbox list a member's credential; every other internal call (creations, deletions, logs)
 * the control plane's. A logical worker's calls (`/w/<i>/…`) are judged without the prefix.
 */
function workerAccessLevel(method: string, pathname: string): AccessLevel {
  const rest = pathname.replace(/^\/w\/\d+(?=\/)/, '');
  if (!rest.startsWith('/internal/')) return 'open';
  return method === controlPlaneToWorker.listSandboxes.method && rest === controlPlaneToWorker.listSandboxes.path ? 'member' : 'control-plane';
}

function countByState(nodes: readonly WorkerNode[]): Record<SandboxState, number> {
  const total: Record<SandboxState, number> = { starting: 0, ready: 0, stopping: 0 };
  for (const node of nodes) {
    const counts = node.worker.countByState();
    total.starting += counts.starting;
    total.ready += counts.ready;
    total.stopping += counts.stopping;
  }
  return total;
}

function seedOf(config: WorkerConfig): number {
  return config.randomSeed === 0 ? randomInt(2 ** 31) : config.randomSeed;
}

const CONTROL_PLANE_ROLE: readonly CertRole[] = ['controlplane'];
