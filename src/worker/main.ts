import { mkdir } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { RegisterWorkerResponse } from '../api/worker.ts';
import { systemClock } from '../core/clock.ts';
import { BatonError } from '../core/errors.ts';
import { createLogger, type Logger } from '../observability/logger.ts';
import { createRegistry } from '../observability/metrics.ts';
import { JsonClient } from '../transport/json-client.ts';
import { sendJson } from '../transport/json-router.ts';
import { ArtifactCache } from './artifact-cache.ts';
import { defaultWorkerId, type WorkerConfig } from './config.ts';
import { ControlPlaneLink } from './control-plane-link.ts';
import { BatchingEventSink } from './event-sink.ts';
import { createWorkerMetrics } from './metrics.ts';
import { ProcessRuntime } from './process/process-runtime.ts';
import { createWorkerRouter } from './routes.ts';
import { Worker } from './worker.ts';

export interface RunningWorker {
  /** Base URL of the internal API, with the port actually bound. */
  readonly url: string;
  readonly workerId: string;
  /**
   * Stops heartbeats, stops every sandbox and closes the server. `keepSandboxes` leaves the
   * sandbox processes running (tests only: it stands in for a crash, to exercise leftover cleanup).
   */
  close(options?: { keepSandboxes?: boolean }): Promise<void>;
}

const ARTIFACT_FETCH_TIMEOUT_MS = 120_000;

/**
 * The worker's composition root: stops sandboxes a previous run left, loads the artifact cache,
 * serves the internal API, and registers with the control plane (retrying until it answers).
 * Signal handling belongs to the CLI, not here.
 */
export async function startWorker(config: WorkerConfig, options: { logger?: Logger } = {}): Promise<RunningWorker> {
  const logger = options.logger ?? createLogger({ name: 'worker', level: config.logLevel });
  const clock = systemClock;
  const dataDir = path.resolve(config.dataDir);
  await mkdir(dataDir, { recursive: true });

  const runtime = new ProcessRuntime({
    dataDir, sandboxHost: config.sandboxHost, readyTimeoutMs: config.readyTimeoutMs, stopGraceMs: config.stopGraceMs,
    logBufferLines: config.logBufferLines, clock, logger: logger.child({ component: 'process-runtime' }),
  });
  const leftovers = await runtime.cleanupLeftovers();
  if (leftovers > 0) logger.info({ count: leftovers }, 'stopped sandboxes left by a previous run');

  const client = new JsonClient(config.controlPlaneUrl);
  const limits = { maxPackedBytes: config.maxArtifactBytes, maxUnpackedBytes: config.maxUnpackedBytes, maxEntries: config.maxArtifactEntries };
  const artifacts = new ArtifactCache({
    dir: path.join(dataDir, 'artifacts'), limits, clock, logger: logger.child({ component: 'artifact-cache' }),
    source: { fetch: (digest, o) => client.getBytes(`/v1/artifacts/${digest}`, { ...o, timeoutMs: ARTIFACT_FETCH_TIMEOUT_MS }) },
  });
  await artifacts.load();

  let handle: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const server = createServer((req, res) => {
    if (handle !== undefined) handle(req, res);
    else sendJson(res, 503, new BatonError('ERR_UNAVAILABLE', 'the worker is starting').toBody());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  const workerId = config.workerId ?? defaultWorkerId(port);
  const log = logger.child({ workerId });

  let link: ControlPlaneLink | undefined;
  const events = new BatchingEventSink({
    workerId, clock, logger: log,
    send: (request, signal) => client.post<unknown>('/internal/v1/workers/events', request, { signal }).then(() => undefined),
    onUnknownWorker: () => link?.requestRegistration(),
  });
  const registry = createRegistry('worker');
  let worker: Worker | undefined;
  const metrics = createWorkerMetrics(registry, () => worker?.countByState() ?? { starting: 0, ready: 0, stopping: 0 });
  worker = new Worker({ runtimes: [runtime], artifacts, events, clock, logger: log, metrics, maxConcurrentStarts: config.maxConcurrentStarts });
  const running = worker;
  handle = createWorkerRouter(running, registry, {
    onError: (err) => { if (err.status >= 500) log.error({ code: err.code, err: err.message }, 'request failed'); },
  }).handle;

  link = new ControlPlaneLink({
    workerId, url, clock, logger: log,
    capacity: { cpuMilli: config.cpuMilli, memoryMiB: config.memoryMiB },
    runtimes: running.runtimeNames,
    listSandboxes: () => running.list(),
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    calls: {
      register: (request, signal) => client.post<RegisterWorkerResponse>('/internal/v1/workers/register', request, { signal }),
      heartbeat: (request, signal) => client.post<unknown>('/internal/v1/workers/heartbeat', request, { signal }).then(() => undefined),
    },
  });
  link.start();
  log.info({ url, dataDir, controlPlaneUrl: config.controlPlaneUrl }, 'worker started');

  let closing: Promise<void> | undefined;
  const close = (closeOptions: { keepSandboxes?: boolean } = {}): Promise<void> => {
    closing ??= (async () => {
      await link?.close();
      await running.close(closeOptions);
      await events.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await client.close();
      log.info('worker stopped');
    })();
    return closing;
  };
  return { url, workerId, close };
}
