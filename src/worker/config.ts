import os from 'node:os';
import { z } from 'zod';
import { RUNTIMES, type RuntimeName } from '../api/function-spec.ts';
import { ID_PATTERN } from '../api/ids.ts';
import { parseOrThrow } from '../api/validate.ts';
import { BatonError } from '../core/errors.ts';
import { parseLatencySpec } from './emulated/latency-spec.ts';

const MIB = 1024 * 1024;

/**
 * The worker daemon's configuration: flat camelCase keys, every one defaulted, unknown keys
 * refused. `workerId` defaults to `<hostname>-<port>` using the port actually bound, so it is
 * resolved by `startWorker` (after listening) rather than here.
 */
export const workerConfigSchema = z.strictObject({
  /** Interface of the internal API. */
  host: z.string().min(1).default('127.0.0.1'),
  /** Port of the internal API; 0 picks a free one. */
  port: z.number().int().min(0).max(65_535).default(10_010),
  workerId: z.string().regex(ID_PATTERN).optional(),
  controlPlaneUrl: z.url().default('http://127.0.0.1:9090'),
  /** Every control plane of an HA cluster (any order); replaces `controlPlaneUrl`. Calls follow the leader. */
  controlPlaneUrls: z.array(z.url()).min(1).max(16).optional(),
  /** Cache of artifacts, sandbox scratch directories and the sandbox state file. */
  dataDir: z.string().min(1).default('./.baton/worker'),
  /** Capacity advertised to the control plane. */
  cpuMilli: z.number().int().min(1).default(() => os.availableParallelism() * 1000),
  memoryMiB: z.number().int().min(1).default(() => Math.floor(os.totalmem() / MIB)),
  /** Address sandboxes listen on and that is published to data planes. */
  sandboxHost: z.string().min(1).default('127.0.0.1'),
  /** How long a sandbox may take from spawn to ready before it is killed and reported failed. */
  readyTimeoutMs: z.number().int().min(1).default(10_000),
  heartbeatIntervalMs: z.number().int().min(10).default(1000),
  /** How this daemon calls its peers: `rpc` (one upgraded connection per peer, framed calls) or `http` (a request per call). */
  internalTransport: z.enum(['rpc', 'http']).default('rpc'),
  /**
   * On stop, how long the worker waits for the control plane to drain its sandboxes (out of every
   * data plane's routing, their in-flight invocations finished, replaced elsewhere) before it
   * stops whatever is left.
   */
  shutdownGraceMs: z.number().int().min(0).max(3_600_000).default(10_000),
  /** How long a deleted sandbox gets between SIGTERM and SIGKILL. */
  stopGraceMs: z.number().int().min(0).default(1000),
  /** Lines of stdout/stderr kept per sandbox. */
  logBufferLines: z.number().int().min(1).max(1_000_000).default(1000),
  /** Sandboxes started at once (fetch + spawn + readiness); the rest wait their turn. */
  maxConcurrentStarts: z.number().int().min(1).max(10_000).default(16),
  maxArtifactBytes: z.number().int().min(1).default(64 * MIB),
  maxUnpackedBytes: z.number().int().min(1).default(512 * MIB),
  maxArtifactEntries: z.number().int().min(1).default(100_000),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /**
   * The one runtime this worker offers. Unset: `emulated` when `emulate` > 0, else `process`.
   * An emulated worker offers nothing else: its capacity is make-believe, and real sandboxes
   * placed against it would overcommit the machine.
   */
  runtime: z.enum(RUNTIMES).optional(),
  /**
   * The real runtimes this worker offers at once, e.g. `[process, container]` (instead of
   * `runtime`); it registers all of them and placement sends it functions of either.
   */
  runtimes: z.array(z.enum(['process', 'container'])).min(1).max(2).optional(),
  /**
   * Process runtime: give each sandbox a cgroup with its memory limit (no swap; an OOM kill is
   * reported as `oom`), its pids limit and a CPU weight from `cpuMilli`, when the worker is root.
   */
  processLimits: z.boolean().default(true),
  /**
   * uid and gid process sandboxes run as when the worker runs as root (default 65534, `nobody`);
   * never 0. A worker that is not root runs them as its own user.
   */
  sandboxUid: z.number().int().min(1).max(4_294_967_294).default(65_534),
  sandboxGid: z.number().int().min(1).max(4_294_967_294).default(65_534),
  /**
   * Worker running as root: where what sandboxes reach lives — process sandboxes' code (the artifact
   * cache), scratch directories and the handler runner, the container runtime's directory — reachable
   * by sandboxUid (and so by containers' mapped ids). Default: `dataDir`, or
   * `/var/lib/baton/<tag>` when a directory above `dataDir` is closed to others.
   */
  sandboxDir: z.string().min(1).optional(),
  /** OCI runtime binary of the container runtime: `crun` (default) or `runc` (a name on PATH or a path). */
  ociRuntime: z.string().min(1).default('crun'),
  /** Worker-local IPv4 network of container sandboxes (`.1` is the worker's bridge); distinct per worker on a host. */
  containerSubnet: z.string().default('10.213.0.0/24'),
  /** Network namespaces kept ready for container sandboxes (made ahead, off the cold-start path). */
  containerNetnsPool: z.number().int().min(0).max(256).default(4),
  /**
   * Where container workers of this host record what they own (one file per worker: pid, start
   * time, tag, directories); a starting worker removes what dead workers recorded there left.
   */
  hostRegistryDir: z.string().min(1).default('/run/baton/workers'),
  /**
   * Whether container sandboxes of functions with `network: "egress"` may open connections beyond
   * the host (forwarded and masqueraded; IPv4 forwarding is turned on). Off: such sandboxes fail to
   * start with ERR_RUNTIME_UNAVAILABLE.
   */
  containerEgress: z.boolean().default(true),
  /**
   * uid and gid of container sandboxes whose image names no non-root user; never 0. In a user
   * namespace these are the container's ids (host ids `containerIdMapBase` + uid).
   */
  containerUid: z.number().int().min(1).max(4_294_967_294).default(64_000),
  containerGid: z.number().int().min(1).max(4_294_967_294).default(64_000),
  /**
   * Whether container sandboxes get a user namespace of their own: `auto` (when the kernel offers
   * them and every directory above the worker's container directory is searchable by others, else
   * off with a warning saying why), `on` (the worker refuses to start otherwise), `off`.
   */
  containerUserNamespace: z.enum(['auto', 'on', 'off']).default('auto'),
  /** In a user namespace, the host uid and gid the container's 0 is; its ids 0–65535 are host ids from here on. */
  containerIdMapBase: z.number().int().min(1).max(4_294_967_294 - 65_536).default(100_000),
  /** Largest unpacked image (sum of file sizes over its layers), bytes. */
  maxImageBytes: z.number().int().min(1).default(2048 * MIB),
  /** Most entries over an image's layers. */
  maxImageEntries: z.number().int().min(1).default(500_000),
  /**
   * Logical workers run by this process, each with its own id (`<workerId>-<i>`), capacity
   * (`cpuMilli`, `memoryMiB` each), registration, heartbeats and sandboxes, all emulated.
   * 0: this process is one worker.
   */
  emulate: z.number().int().min(0).max(10_000).default(0),
  /** Port of the emulated sandboxes' invocation listener (logical worker i: this + i); 0 picks free ones. */
  emulatedPort: z.number().int().min(0).max(65_535).default(0),
  /** Creation latency of an emulated sandbox: `0`, `40ms`, `uniform:20-60`, `lognormal:median=40,sigma=0.5` (ms). */
  emulatedCreateLatency: z.string().default('0').transform((text, ctx) => {
    try {
      return parseLatencySpec(text);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: err instanceof BatonError ? String((err.details as { rule: string }).rule) : String(err) });
      return z.NEVER;
    }
  }),
  /** The cluster's join secret (at least 16 characters): internal calls are authenticated with a key derived from it. Unset (and no `joinSecretFile`): the internal API is open, on loopback only. */
  joinSecret: z.string().min(16).optional(),
  /** A file holding the join secret (instead of `joinSecret`, which `ps` or a config dump could show). */
  joinSecretFile: z.string().min(1).optional(),
  /** This daemon's TLS certificate (PEM; `baton certs init` makes one per role). With tlsKeyFile and tlsCaFile: its ports serve TLS and it calls its peers over mutual TLS. */
  tlsCertFile: z.string().min(1).optional(),
  /** The private key of `tlsCertFile` (PEM). */
  tlsKeyFile: z.string().min(1).optional(),
  /** The cluster CA (PEM): the peers' certificates must be signed by it. */
  tlsCaFile: z.string().min(1).optional(),
  /** Seed of the emulated latency samples (logical worker i: this + i); 0 = from the crypto source. */
  randomSeed: z.number().int().min(0).default(0),
}).superRefine((config, ctx) => {
  if (config.emulate > 0 && config.runtime !== undefined && config.runtime !== 'emulated') {
    ctx.addIssue({ code: 'custom', path: ['runtime'], message: 'must be emulated (or unset) when emulate > 0' });
  }
  if (config.runtimes !== undefined && (config.emulate > 0 || config.runtime !== undefined)) {
    ctx.addIssue({ code: 'custom', path: ['runtimes'], message: 'cannot be combined with runtime or emulate' });
  }
  if (config.runtimes !== undefined && new Set(config.runtimes).size !== config.runtimes.length) {
    ctx.addIssue({ code: 'custom', path: ['runtimes'], message: 'must not repeat a runtime' });
  }
  if (config.emulatedPort > 0 && config.emulatedPort + Math.max(0, config.emulate - 1) > 65_535) {
    ctx.addIssue({ code: 'custom', path: ['emulatedPort'], message: `emulatedPort + emulate - 1 must be at most 65535 (one port per emulated worker)` });
  }
});

export type WorkerConfig = Readonly<z.output<typeof workerConfigSchema>>;
export type WorkerConfigInput = z.input<typeof workerConfigSchema>;

/** Parses and freezes a configuration. @throws BatonError ERR_INVALID_CONFIG naming the key and rule */
export function parseWorkerConfig(input: unknown): WorkerConfig {
  return Object.freeze(parseOrThrow(workerConfigSchema, input, 'ERR_INVALID_CONFIG', 'worker config'));
}

/** The worker's main runtime: `runtimes[0]`, `runtime`, or `emulated` when `emulate` > 0, else `process`. */
export function workerRuntimeOf(config: WorkerConfig): RuntimeName {
  return config.runtimes?.[0] ?? config.runtime ?? (config.emulate > 0 ? 'emulated' : 'process');
}

/** Every runtime the worker offers: `runtimes`, else its one runtime. */
export function workerRuntimesOf(config: WorkerConfig): RuntimeName[] {
  return config.runtimes !== undefined ? [...config.runtimes] : [workerRuntimeOf(config)];
}

/** `<hostname>-<port>`, with characters an id may not hold replaced by `-`. */
export function defaultWorkerId(port: number): string {
  const host = os.hostname().replace(/[^A-Za-z0-9_.:-]/g, '-').replace(/^[^A-Za-z0-9]+/, '') || 'worker';
  return `${host.slice(0, 100)}-${port}`;
}
