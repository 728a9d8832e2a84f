import { z } from 'zod';

/**
 * The user-facing function spec (what `POST /v1/functions` and `baton.yaml` accept) and its
 * compiled, fully-defaulted internal form. Units are in the names: `…Ms`, `…MiB`, `…Milli`.
 */

export const FUNCTION_NAME_PATTERN = /^[a-z][a-z0-9-]{0,62}$/;
export const DIGEST_PATTERN = /^sha256:[0-9a-f]{64}$/;
/** `file.export`, e.g. `index.handler` or `lib/main.handle`: a module path without extension, then the export. */
export const HANDLER_PATTERN = /^(?!\/)(?!.*(?:^|\/)\.\.(?:\/|\.))[A-Za-z0-9_\-/.]*[A-Za-z0-9_-]\.[A-Za-z_$][A-Za-z0-9_$]*$/;
const ENV_KEY_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * `process`: the sandbox is an OS process started from the function's artifact (a handler module or
 * a command). `emulated`: no code at all; the worker pretends to create a sandbox (a configurable
 * latency) and answers invocations itself after the requested execution time. It exists to
 * measure the control and data planes at cluster scale on one machine. `container`: the sandbox is
 * an OCI container run by crun from the function's artifact, an OCI image archive (own namespaces,
 * an unprivileged user, a read-only root, enforced memory, CPU and pids limits).
 */
export const RUNTIMES = ['process', 'emulated', 'container'] as const;
export type RuntimeName = (typeof RUNTIMES)[number];

export const SCALING_DEFAULTS = {
  minScale: 0,
  maxScale: 100,
  targetUtilization: 0.7,
  stableWindowMs: 60_000,
  panicWindowMs: 6_000,
  panicThreshold: 2,
  maxScaleUpRate: 1000,
  maxScaleDownRate: 2,
  scaleToZeroGraceMs: 30_000,
} as const;

export const RESOURCE_DEFAULTS = { cpuMilli: 100, memoryMiB: 128, maxPids: 256 } as const;
/** What a container may reach: `none` (only the data plane reaches it) or `egress` (it may also open connections out). */
export const NETWORK_MODES = ['none', 'egress'] as const;
export type NetworkMode = (typeof NETWORK_MODES)[number];
export const DEFAULT_TIMEOUT_MS = 60_000;
/**
 * How the data plane talks to the function's sandboxes: `http1` (HTTP/1.1, pooled keep-alive
 * connections) or `h2c` (HTTP/2 cleartext with prior knowledge, one session per sandbox, one stream
 * per invocation) — what a gRPC server needs. Clients may use either towards the data plane.
 */
export const PROTOCOLS = ['http1', 'h2c'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

const int = (min: number, max: number) => z.number().int().min(min).max(max);

export const scalingSchema = z.strictObject({
  minScale: int(0, 10_000).default(SCALING_DEFAULTS.minScale),
  maxScale: int(1, 10_000).default(SCALING_DEFAULTS.maxScale),
  targetUtilization: z.number().gt(0).max(1).default(SCALING_DEFAULTS.targetUtilization),
  stableWindowMs: int(100, 3_600_000).default(SCALING_DEFAULTS.stableWindowMs),
  panicWindowMs: int(100, 3_600_000).default(SCALING_DEFAULTS.panicWindowMs),
  panicThreshold: z.number().gt(1).max(10).default(SCALING_DEFAULTS.panicThreshold),
  maxScaleUpRate: z.number().gt(1).default(SCALING_DEFAULTS.maxScaleUpRate),
  maxScaleDownRate: z.number().gt(1).default(SCALING_DEFAULTS.maxScaleDownRate),
  scaleToZeroGraceMs: int(0, 3_600_000).default(SCALING_DEFAULTS.scaleToZeroGraceMs),
});

export const resourcesSchema = z.strictObject({
  cpuMilli: int(1, 1_000_000).default(RESOURCE_DEFAULTS.cpuMilli),
  memoryMiB: int(1, 1_048_576).default(RESOURCE_DEFAULTS.memoryMiB),
  /** Most processes (and threads) a sandbox may run at once; enforced where the runtime has a pids cgroup. */
  maxPids: int(1, 65_536).default(RESOURCE_DEFAULTS.maxPids),
  /** Size of a container's writable layer (its tmpfs `/tmp`), MiB; unset = the memory limit bounds it. */
  diskMiB: int(1, 1_048_576).optional(),
});

/**
 * Asynchronous invocations of the function (see docs/async.md): Lambda's settings and defaults.
 * `retryBackoffMs` is the first retry's base delay (doubling per attempt, jittered ×[0.5, 1.5));
 * `maxConcurrency` bounds this function's async attempts in flight per data plane; `onFailure`
 * sends an event that keeps failing to the function's dead-letter queue or to another function.
 */
export const asyncSpecSchema = z.strictObject({
  maxRetryAttempts: int(0, 2).default(2),
  maxEventAgeMs: int(1000, 21_600_000).default(21_600_000),
  retryBackoffMs: int(1, 3_600_000).default(60_000),
  maxConcurrency: int(1, 10_000).default(100),
  onFailure: z.discriminatedUnion('type', [
    z.strictObject({ type: z.literal('dlq') }),
    z.strictObject({ type: z.literal('function'), name: z.string().regex(FUNCTION_NAME_PATTERN, 'must match ^[a-z][a-z0-9-]{0,62}$') }),
  ]).default(() => ({ type: 'dlq' as const })),
});
export type AsyncSpec = z.output<typeof asyncSpecSchema>;

const envSchema = z.record(
  z.string().regex(ENV_KEY_PATTERN, 'must be a shell-style variable name')
    .refine((k) => k !== 'PORT' && !k.startsWith('BATON_'), 'PORT and BATON_* are set by Baton'),
  z.string().max(32_768),
).refine((env) => Object.keys(env).length <= 256, 'at most 256 variables');

export const functionSpecSchema = z.strictObject({
  name: z.string().regex(FUNCTION_NAME_PATTERN, 'must match ^[a-z][a-z0-9-]{0,62}$'),
  runtime: z.enum(RUNTIMES).default('process'),
  /** Required for `process` (and must have been uploaded); optional and ignored for `emulated` (never checked or fetched). */
  artifact: z.string().regex(DIGEST_PATTERN, 'must be sha256:<64 lowercase hex>').optional(),
  handler: z.string().max(256).regex(HANDLER_PATTERN, 'must be FILE.EXPORT inside the artifact, e.g. index.handler').optional(),
  command: z.array(z.string().min(1).max(4096)).min(1).max(256).optional(),
  /**
   * A command function built for a Lambda custom runtime: the worker serves the Lambda Runtime API
   * beside it (`AWS_LAMBDA_RUNTIME_API`) instead of expecting it to serve HTTP on `$PORT`.
   */
  lambdaRuntimeApi: z.boolean().optional(),
  concurrency: int(1, 1000).default(1),
  /**
   * Most invocations of the function in flight at once over all its sandboxes (as Lambda's reserved
   * concurrency), counted by each data plane over what it admitted (running or waiting for a cold
   * start); one more is refused at once with 429 ERR_TOO_MANY_REQUESTS. Unset: no limit beyond
   * `scaling.maxScale × concurrency`.
   */
  maxConcurrency: int(1, 1_000_000).optional(),
  /** Largest invocation body, bytes; unset: the data plane's `invocationBodyMaxBytes` (6 MiB). 413 ERR_PAYLOAD_TOO_LARGE beyond. */
  maxBodyBytes: int(1, 1024 ** 3).optional(),
  scaling: scalingSchema.default(() => scalingSchema.parse({})),
  resources: resourcesSchema.default(() => resourcesSchema.parse({})),
  timeoutMs: int(1, 900_000).default(DEFAULT_TIMEOUT_MS),
  /**
   * A request header whose value is the load-balancing key (used by the `ch-bl` policy: invocations
   * with the same value go to the same sandbox while its load stays within the bound). Without it,
   * or when a request lacks the header, the key is the function's name.
   */
  affinityHeader: z.string().regex(/^[a-z0-9!#$%&'*+.^_`|~-]{1,64}$/, 'must be a lower-case HTTP header name').optional(),
  env: envSchema.default(() => ({})),
  /** Asynchronous invocation settings; without it, the defaults of `asyncSpecSchema`. */
  async: asyncSpecSchema.optional(),
  /** Runtime `container` only: `none` (default) or `egress`. */
  network: z.enum(NETWORK_MODES).default('none'),
  /** `http1` (default) or `h2c`: see PROTOCOLS. */
  protocol: z.enum(PROTOCOLS).default('http1'),
}).superRefine((spec, ctx) => {
  checkCode(spec, ctx);
  if (spec.scaling.minScale > spec.scaling.maxScale) {
    ctx.addIssue({ code: 'custom', path: ['scaling', 'minScale'], message: 'must not exceed scaling.maxScale' });
  }
  if (spec.scaling.panicWindowMs > spec.scaling.stableWindowMs) {
    ctx.addIssue({ code: 'custom', path: ['scaling', 'panicWindowMs'], message: 'must not exceed scaling.stableWindowMs' });
  }
});

/**
 * What a function's code is, by runtime:
 *   process   artifact required, and exactly one of handler or command;
 *   container artifact (an OCI image archive) required; handler and command optional (the image's
 *             Entrypoint/Cmd run when both are absent), never both;
 *   emulated  neither handler nor command (there is nothing to run); artifact optional and ignored.
 */
function checkCode(
  spec: { runtime: RuntimeName; artifact?: string | undefined; handler?: string | undefined; command?: string[] | undefined; lambdaRuntimeApi?: boolean | undefined; protocol: Protocol },
  ctx: z.RefinementCtx,
): void {
  switch (spec.runtime) {
    case 'process':
      if (spec.artifact === undefined) ctx.addIssue({ code: 'custom', path: ['artifact'], message: 'is required for runtime process' });
      if ((spec.handler === undefined) === (spec.command === undefined)) {
        ctx.addIssue({ code: 'custom', path: ['handler'], message: 'exactly one of handler or command is required' });
      }
      if (spec.lambdaRuntimeApi === true && spec.command === undefined) {
        ctx.addIssue({ code: 'custom', path: ['lambdaRuntimeApi'], message: 'is only for command functions' });
      }
      if (spec.lambdaRuntimeApi === true && spec.protocol === 'h2c') {
        ctx.addIssue({ code: 'custom', path: ['protocol'], message: 'h2c is not available with lambdaRuntimeApi (the Runtime API answers HTTP/1.1)' });
      }
      return;
    case 'container':
      if (spec.artifact === undefined) ctx.addIssue({ code: 'custom', path: ['artifact'], message: 'is required for runtime container (an OCI image archive)' });
      if (spec.handler !== undefined && spec.command !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['handler'], message: 'at most one of handler or command is allowed' });
      }
      // The worker serves the Runtime API on its own loopback, which a container's network namespace does not reach.
      if (spec.lambdaRuntimeApi === true) ctx.addIssue({ code: 'custom', path: ['lambdaRuntimeApi'], message: 'is only for runtime process (a container cannot reach the worker\'s Runtime API)' });
      return;
    case 'emulated':
      if (spec.protocol === 'h2c') ctx.addIssue({ code: 'custom', path: ['protocol'], message: 'h2c is not available for runtime emulated (its sandboxes answer HTTP/1.1)' });
      if (spec.lambdaRuntimeApi === true) ctx.addIssue({ code: 'custom', path: ['lambdaRuntimeApi'], message: 'is only for runtime process' });
      if (spec.handler !== undefined) ctx.addIssue({ code: 'custom', path: ['handler'], message: 'is not allowed for runtime emulated (it runs no code)' });
      if (spec.command !== undefined) ctx.addIssue({ code: 'custom', path: ['command'], message: 'is not allowed for runtime emulated (it runs no code)' });
      return;
  }
}

/** What a user may send: every field but name (and, for runtime process, artifact and handler or command) is optional. */
export type FunctionSpecInput = z.input<typeof functionSpecSchema>;
/** The compiled form: every default applied. */
export type FunctionSpec = z.output<typeof functionSpecSchema>;
export type ScalingSpec = FunctionSpec['scaling'];
export type ResourceSpec = FunctionSpec['resources'];

/** A registered function as the control plane stores and serves it. */
export interface FunctionRecord {
  readonly spec: FunctionSpec;
  /** Bumped on every update; sandboxes of older generations are drained and replaced. */
  readonly generation: number;
  readonly createdAt: string;
  readonly updatedAt: string;
}
