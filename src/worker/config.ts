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
   * A worker has exactly one: an emulated worker's capacity is make-believe, and real sandboxes
   * placed against it would overcommit the machine.
   */
  runtime: z.enum(RUNTIMES).optional(),
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
  /** Seed of the emulated latency samples (logical worker i: this + i); 0 = from the crypto source. */
  randomSeed: z.number().int().min(0).default(0),
}).superRefine((config, ctx) => {
  if (config.emulate > 0 && config.runtime === 'process') {
    ctx.addIssue({ code: 'custom', path: ['runtime'], message: 'must be emulated (or unset) when emulate > 0' });
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

/** The worker's one runtime: `runtime`, or `emulated` when `emulate` > 0, else `process`. */
export function workerRuntimeOf(config: WorkerConfig): RuntimeName {
  return config.runtime ?? (config.emulate > 0 ? 'emulated' : 'process');
}

/** `<hostname>-<port>`, with characters an id may not hold replaced by `-`. */
export function defaultWorkerId(port: number): string {
  const host = os.hostname().replace(/[^A-Za-z0-9_.:-]/g, '-').replace(/^[^A-Za-z0-9]+/, '') || 'worker';
  return `${host.slice(0, 100)}-${port}`;
}
