import { hostname } from 'node:os';
import { z } from 'zod';
import { parseOrThrow } from '../api/validate.ts';
import { ID_PATTERN } from '../api/ids.ts';

const port = z.number().int().min(0).max(65_535);
const intervalMs = z.number().int().min(10).max(3_600_000);

/**
 * The data plane's configuration: flat camelCase keys, every one defaulted. Unknown keys are
 * rejected (ERR_INVALID_CONFIG names the key). `dataplaneId` defaults to `<hostname>-<port>` and
 * `advertiseHost` to `host`; with `port: 0` set `dataplaneId` explicitly so that two data planes on
 * one machine do not share an id.
 */
export const dataplaneConfigKeysSchema = z.strictObject({
  /** Interface both servers listen on. */
  host: z.string().min(1).default('127.0.0.1'),
  /** Invocation port (0 = any free port). */
  port: port.default(8080),
  /** Internal API port for the control plane, `/metrics`, `/healthz` (0 = any free port). */
  internalPort: port.default(8081),
  dataplaneId: z.string().regex(ID_PATTERN, 'must match ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$').optional(),
  controlPlaneUrl: z.url().default('http://127.0.0.1:9090'),
  /** Every control plane of an HA cluster (any order); replaces `controlPlaneUrl`. Calls follow the leader. */
  controlPlaneUrls: z.array(z.url()).min(1).max(16).optional(),
  /** Checked by the load-balancer factory at start; an unknown name is a config error. */
  loadBalancingPolicy: z.string().min(1).default('least-inflight'),
  /** Max invocations waiting per function; one more answers 503 ERR_QUEUE_FULL at once. */
  queueCapacity: z.number().int().min(0).max(1_000_000).default(1000),
  /** How long a queued invocation may wait for a free sandbox before 504 ERR_COLD_START_TIMEOUT. */
  queueTimeoutMs: z.number().int().min(1).max(3_600_000).default(30_000),
  /**
   * A function at its `scaling.maxScale` with every slot busy may keep this many invocations waiting
   * per slot (endpoints × concurrency); one more is refused at once with 429 ERR_TOO_MANY_REQUESTS.
   * The long `queueTimeoutMs` applies only while sandboxes are still being added.
   */
  overloadQueuePerSlot: z.number().int().min(0).max(1000).default(2),
  /** Most invocations admitted at once over all functions (running or waiting); one more is 429. 0: no limit. */
  maxConcurrentInvocations: z.number().int().min(0).max(10_000_000).default(0),
  /** Largest invocation body of a function without `maxBodyBytes` (Lambda: 6 MB); 413 ERR_PAYLOAD_TOO_LARGE beyond. */
  invocationBodyMaxBytes: z.number().int().min(1).max(1024 ** 3).default(6 * 1024 ** 2),
  /** Largest request header section on both servers; 431 ERR_HEADERS_TOO_LARGE beyond. */
  maxHeaderBytes: z.number().int().min(1024).max(1024 ** 2).default(16 * 1024),
  /** Most header fields of a request on both servers; 431 ERR_HEADERS_TOO_LARGE beyond. */
  maxHeaderCount: z.number().int().min(1).max(10_000).default(100),
  demandReportIntervalMs: intervalMs.default(1000),
  heartbeatIntervalMs: intervalMs.default(1000),
  /** How this daemon calls its peers: `rpc` (one upgraded connection per peer, framed calls) or `http` (a request per call). */
  internalTransport: z.enum(['rpc', 'http']).default('rpc'),
  /** How long `close()` lets in-flight invocations finish before cutting them. */
  shutdownGraceMs: z.number().int().min(0).max(3_600_000).default(10_000),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Host put in the URLs registered with the control plane; defaults to `host`. */
  advertiseHost: z.string().min(1).optional(),
  /** Where asynchronous invocations are kept: `embedded` (a segment log in `dataDir`) or `redis` (Streams, at `asyncRedisUrl`). */
  asyncStore: z.enum(['embedded', 'redis']).default('embedded'),
  /** The Redis server of `asyncStore: redis`; keys are under `baton:async:<dataplaneId>:`. */
  asyncRedisUrl: z.url().default('redis://127.0.0.1:6379'),
  /** Holds the embedded async log (`async/seg-*.log`). */
  dataDir: z.string().min(1).default('./.baton/dataplane'),
  /** Most unfinished asynchronous invocations (queued, running, waiting to retry); one more is 503 ERR_ASYNC_QUEUE_FULL. */
  asyncQueueCapacity: z.number().int().min(1).max(10_000_000).default(100_000),
  /** Most bytes of their requests kept in memory (bodies + 512 bytes each). */
  asyncQueueMaxBytes: z.number().int().min(1024).max(64 * 1024 ** 3).default(256 * 1024 ** 2),
  /** Largest body of an asynchronous invocation (Lambda: 1 MB). */
  asyncPayloadMaxBytes: z.number().int().min(1).max(64 * 1024 ** 2).default(1024 ** 2),
  /** Async attempts in flight over all functions (each function also has `async.maxConcurrency`). */
  asyncDeliveryConcurrency: z.number().int().min(1).max(100_000).default(256),
  /**
   * How long the first record of a batch waits for others before one write and one fdatasync; 0:
   * no wait — a batch is what arrived while the previous fsync was in flight (natural group commit).
   */
  asyncGroupCommitMs: z.number().int().min(0).max(1000).default(0),
  /** A log segment is closed at this size and deleted once nothing in it is kept. */
  asyncSegmentMaxBytes: z.number().int().min(4096).max(4 * 1024 ** 3).default(64 * 1024 ** 2),
  /** How long a finished invocation's state and response can be fetched. */
  asyncResultRetentionMs: z.number().int().min(0).max(30 * 86_400_000).default(3_600_000),
  /** Most finished invocations kept (the oldest are forgotten first). */
  asyncResultRetentionMax: z.number().int().min(0).max(10_000_000).default(100_000),
  /** Bytes of a response body kept with a finished invocation (the rest is dropped; `isTruncated`). */
  asyncResponseMaxBytes: z.number().int().min(0).max(6 * 1024 ** 2).default(65_536),
  /** How long a dead letter is kept (until redriven). */
  asyncDeadLetterRetentionMs: z.number().int().min(0).max(365 * 86_400_000).default(14 * 86_400_000),
  /** First back-off after the data plane refused an attempt (queue full, no capacity); doubles up to 30 s. */
  asyncThrottleBackoffMs: z.number().int().min(1).max(60_000).default(100),
  /** Largest `RequestResponse` payload on the Lambda Invoke API (Lambda: 6 MB). */
  lambdaSyncPayloadMaxBytes: z.number().int().min(1).max(64 * 1024 ** 2).default(6 * 1024 ** 2),
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
  /** Access keys whose SigV4 signatures the Lambda Invoke API accepts; empty: signatures are not checked. */
  lambdaAccessKeys: z.array(z.strictObject({ accessKeyId: z.string().min(1).max(128), secretAccessKey: z.string().min(1).max(128) })).max(100).default(() => []),
});

/** Fills the keys derived from others. */
export function deriveDataplaneConfig(c: z.output<typeof dataplaneConfigKeysSchema>): DataplaneConfig {
  return Object.freeze({ ...c, dataplaneId: c.dataplaneId ?? `${hostname()}-${c.port}`, advertiseHost: c.advertiseHost ?? c.host });
}

export const dataplaneConfigSchema = dataplaneConfigKeysSchema.transform(deriveDataplaneConfig);

export type DataplaneConfigInput = z.input<typeof dataplaneConfigSchema>;
export type DataplaneConfig = Readonly<z.output<typeof dataplaneConfigKeysSchema> & { dataplaneId: string; advertiseHost: string }>;

/** Parses, defaults and freezes a configuration; throws ERR_INVALID_CONFIG naming the key and rule. */
export function parseDataplaneConfig(input: unknown): DataplaneConfig {
  return Object.freeze(parseOrThrow(dataplaneConfigSchema, input ?? {}, 'ERR_INVALID_CONFIG', 'data plane config'));
}
