import { z } from 'zod';
import { PLACEMENT_POLICIES } from '../policy/placement/types.ts';
import { EVICTION_POLICIES } from '../policy/eviction/types.ts';

/** Control-plane configuration: file → environment (BATON_CONTROLPLANE_*) → flags. Unknown keys are errors. */
export const controlPlaneConfigSchema = z.strictObject({
  host: z.string().default('127.0.0.1'),
  /** REST API, internal API, /metrics and /healthz. 0 picks a free port. */
  port: z.number().int().min(0).max(65535).default(9090),
  /** Dirigent's registration server (`POST /registerService`, `POST /`); unset: only on `port`. 0 picks a free port. */
  registrationPort: z.number().int().min(0).max(65535).optional(),
  /** Embedded file store (functions, workers, data planes, artifact blobs), when `store` is `file`. */
  dataDir: z.string().default('./.baton/controlplane'),
  /** Where slow-changing state lives: `file` (embedded, under `dataDir`) or `redis` (shared, at `redisUrl`). */
  store: z.enum(['file', 'redis']).default('file'),
  /** The Redis server of `store: redis`. */
  redisUrl: z.string().regex(/^rediss?:\/\/[^\s]+$/, 'must be a redis:// or rediss:// URL').default('redis://127.0.0.1:6379'),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  placementPolicy: z.enum(PLACEMENT_POLICIES).default('least-allocated'),
  evictionPolicy: z.enum(EVICTION_POLICIES).default('oldest'),
  /** Interval at which workers and data planes heartbeat. */
  heartbeatIntervalMs: z.number().int().min(10).default(1000),
  /** Missed heartbeats before a worker is unschedulable and its endpoints are withdrawn. */
  heartbeatMissLimit: z.number().int().min(1).default(3),
  /** Width of one autoscaler metric bucket (Knative: 1 s). */
  autoscalerBucketMs: z.number().int().min(10).default(1000),
  /** How often each active function's scale is decided (Knative: 2 s). */
  autoscalerTickMs: z.number().int().min(10).default(2000),
  /** A sandbox not ready this long after its creation was asked is given up and deleted. */
  sandboxCreateTimeoutMs: z.number().int().min(100).default(30_000),
  /** TTL of the leader lease: only its holder acts; a follower takes over about this long after the leader is gone. */
  leaderLeaseMs: z.number().int().min(300).max(60_000).default(1500),
  /** This control plane's URL for its peers (the leader lease's holder, the leader followers name); default the URL it listens on. */
  advertiseUrl: z.url().optional(),
  /** Longest a scale-down waits for in-flight invocations before deleting the sandbox. */
  drainTimeoutMs: z.number().int().min(0).default(30_000),
  maxArtifactBytes: z.number().int().min(1024).default(64 * 1024 * 1024),
  maxUnpackedBytes: z.number().int().min(1024).default(512 * 1024 * 1024),
  /** Largest request header section; 431 ERR_HEADERS_TOO_LARGE beyond. */
  maxHeaderBytes: z.number().int().min(1024).max(1024 ** 2).default(16 * 1024),
  /** Most header fields of a request; 431 ERR_HEADERS_TOO_LARGE beyond. */
  maxHeaderCount: z.number().int().min(1).max(10_000).default(100),
  /** How this daemon calls its peers: `rpc` (one upgraded connection per peer, framed calls) or `http` (a request per call). */
  internalTransport: z.enum(['rpc', 'http']).default('rpc'),
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
  /**
   * `token`: every management call needs an API token (`Authorization: Bearer …`; see
   * docs/security.md). `none`: no check at all — for tests and benchmarks on a trusted machine.
   */
  authMode: z.enum(['token', 'none']).default('token'),
  /**
   * A file holding the bootstrap admin token, registered when this control plane leads and no token
   * of its id is known; created (mode 0600) with a new token when missing. Default `<dataDir>/admin-token`.
   */
  adminTokenFile: z.string().optional(),
  /** Management calls per second each token may make on average (a token bucket); 0: no limit. 429 ERR_TOO_MANY_REQUESTS beyond. */
  managementRatePerSecond: z.number().min(0).max(100_000).default(50),
  /** Management calls a token may make at once after being idle (the bucket's size). */
  managementRateBurst: z.number().int().min(1).max(100_000).default(100),
  /** Size at which the audit log (`<dataDir>/audit.log`) is rotated to `audit.log.1`; the log keeps at most twice this. */
  auditLogMaxBytes: z.number().int().min(4096).default(16 * 1024 * 1024),
  auditLogMaxEntries: z.number().int().min(100).max(100_000_000).default(1_000_000),
  /** Seed for the placement and eviction policies' randomness (0 = from the crypto source). */
  randomSeed: z.number().int().min(0).default(0),
});

export type ControlPlaneConfig = z.output<typeof controlPlaneConfigSchema>;
