import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { FunctionSpecInput } from '../../api/function-spec.ts';
import { packDirectory } from '../../core/archive.ts';
import { buildImage } from '../image/image-builder.ts';
import { BatonError } from '../../core/errors.ts';
import { formatInvitroCsv } from '../../loadgen/invitro-csv.ts';
import type { ResultsFormat } from '../../loadgen/invitro-csv.ts';
import { H2CClient, Pool, type Dispatcher } from 'undici';
import { GrpcDispatcher } from '../../loadgen/grpc-dispatcher.ts';
import { isOk } from '../../loadgen/records.ts';
import { DEFAULT_CONNECTIONS, runPlan } from '../../loadgen/runner.ts';
import type { Routing, RunProgress, RunResult } from '../../loadgen/runner.ts';
import { planColdStartSweep, planFixedRate } from '../../loadgen/schedule.ts';
import type { Plan } from '../../loadgen/schedule.ts';
import { parseScheduleCsv } from '../../loadgen/schedule-csv.ts';
import type { BatonClient } from '../client.ts';
import { intFlag, stringFlag, UsageError, type CliIo, type Command, type CommandContext, type FlagValues } from '../command.ts';
import { planFromTraceFlags, TRACE_PLAN_OPTIONS, TRACE_PLAN_USAGE } from './loadgen.ts';

/** Where `--deploy --runtime process` takes its code from: the trace function of this repository. */
export const TRACE_FUNCTION_DIR = resolve(import.meta.dirname, '../../../examples/trace-function');

const RUNTIMES = ['emulated', 'process', 'container'] as const;
const TRANSPORTS = ['http1', 'h2c', 'grpc'] as const;

export const loadgenRunCommand: Command = {
  name: 'loadgen run',
  summary: 'replay a trace, a schedule or a fixed rate against a target, open loop, and record every invocation',
  usage: `baton loadgen run (TRACE_DIR | --schedule FILE | --rps R [--cold-sweep]) --target URL [flags] -o results.csv

Sends every invocation at its time whether or not earlier ones have answered (drift-corrected),
only to --target, and writes one row per invocation: Invitro's columns in Invitro's order (µs);
--format baton adds scheduledTime, sendLag, status and errorCode. A progress bar on a terminal,
a line every 10 s otherwise; Ctrl-C stops, writes what was recorded, and cleans up.

what to send:
  TRACE_DIR             a trace in the Azure 2019 format, planned with:
${TRACE_PLAN_USAGE.replace(/^/gm, '  ')}
  --schedule FILE       a schedule written by 'baton loadgen plan'
  --rps R               R invocations/s to one warm function (--function, default warm-function)
  --cold-sweep          with --rps: Dirigent's cold-start sweep, ceil(R × cooldown) functions
                        cold-function-<i>, each invoked once per --cooldown-s, every call a cold start
  --seconds S           length of an --rps run (default 60)
  --cooldown-s S        cold-sweep period per function (default 10)
  --exec-ms N           execution time per --rps invocation (default 10)
  --memory MiB          memory per --rps invocation (default 0: none)

where and how:
  --target URL          the data plane (or anything speaking HTTP), e.g. http://127.0.0.1:8080
  --routing host|path   Host: <name> to / (default, Dirigent's and Invitro's way) or /fn/<name>/
  --transport T         http1 (default) | h2c (HTTP/2 cleartext, prior knowledge) | grpc (Invitro's
                        faas.Executor/Execute, the function named by the call's authority; needs
                        --routing host and a gRPC function: --deploy makes one with protocol h2c)
  --deploy              register every function through the control plane (--url) first, and
                        delete them afterwards unless --keep; an existing name is refused
  --runtime R           emulated (default) | process (examples/trace-function) | container (its image, built from this machine's node)
  --timeout-ms N        per-invocation deadline (default 15000)
  --connections N       client connections (default 4096; an invocation finding all busy waits in the client, and is counted)
  --max-invocations N   refuse larger plans (default 1000000)
  --max-seconds N       refuse plans lasting longer (default 3600)
  --format F            invitro (default) | baton
  -o FILE               the results CSV`,
  options: {
    ...TRACE_PLAN_OPTIONS,
    schedule: { type: 'string' },
    rps: { type: 'string' },
    'cold-sweep': { type: 'boolean' },
    seconds: { type: 'string' },
    'cooldown-s': { type: 'string' },
    'exec-ms': { type: 'string' },
    memory: { type: 'string' },
    function: { type: 'string' },
    target: { type: 'string' },
    routing: { type: 'string' },
    transport: { type: 'string' },
    deploy: { type: 'boolean' },
    keep: { type: 'boolean' },
    runtime: { type: 'string' },
    'timeout-ms': { type: 'string' },
    connections: { type: 'string' },
    'max-invocations': { type: 'string' },
    'max-seconds': { type: 'string' },
    format: { type: 'string' },
    output: { type: 'string', short: 'o' },
  },
  positionals: { min: 0, max: 1, names: 'TRACE_DIR' },
  run: runLoad,
};

type Mode = 'trace' | 'schedule' | 'rps' | 'cold-sweep';

interface Planned {
  readonly mode: Mode;
  readonly plan: Plan;
  /** Trace minutes marked phase 1 (Invitro's warm-up) in the results. */
  readonly warmupMinutes: number;
}

function oneOf<T extends string>(values: FlagValues, name: string, allowed: readonly T[], fallback: T): T {
  const value = stringFlag(values, name) ?? fallback;
  if (!allowed.includes(value as T)) throw new UsageError(`--${name} must be one of ${allowed.join(', ')} (got '${value}')`);
  return value as T;
}

function positiveNumber(values: FlagValues, name: string, fallback: number): number {
  const raw = stringFlag(values, name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new UsageError(`--${name} must be a positive number (got '${raw}')`);
  return value;
}

async function buildPlan(ctx: CommandContext): Promise<Planned> {
  const { values, positionals, io } = ctx;
  const schedule = stringFlag(values, 'schedule');
  const rps = stringFlag(values, 'rps');
  const sources = [positionals.length > 0, schedule !== undefined, rps !== undefined].filter(Boolean).length;
  if (sources !== 1) throw new UsageError('give exactly one of TRACE_DIR, --schedule FILE or --rps R');
  if (values['cold-sweep'] === true && rps === undefined) throw new UsageError('--cold-sweep needs --rps R');
  const maxInvocations = intFlag(values, 'max-invocations', 1) ?? 1_000_000;
  if (positionals.length > 0) {
    const { plan, warmupMinutes } = await planFromTraceFlags(io, positionals[0] as string, values);
    return { mode: 'trace', plan, warmupMinutes };
  }
  if (schedule !== undefined) {
    const text = await readFile(resolve(io.cwd, schedule), 'utf8');
    return { mode: 'schedule', plan: parseScheduleCsv(text, schedule), warmupMinutes: intFlag(values, 'warmup-minutes', 0) ?? 0 };
  }
  const rate = positiveNumber(values, 'rps', 1);
  const seconds = positiveNumber(values, 'seconds', 60);
  const execMs = intFlag(values, 'exec-ms', 0) ?? 10;
  const memoryMiB = intFlag(values, 'memory', 0) ?? 0;
  if (values['cold-sweep'] === true) {
    const cooldownS = positiveNumber(values, 'cooldown-s', 10);
    return { mode: 'cold-sweep', plan: planColdStartSweep({ rate, seconds, cooldownS, execMs, memoryMiB, functionPrefix: 'cold-function-', maxInvocations }), warmupMinutes: 0 };
  }
  return { mode: 'rps', plan: planFixedRate({ rate, seconds, execMs, memoryMiB, function: stringFlag(values, 'function') ?? 'warm-function', maxInvocations }), warmupMinutes: 0 };
}

/** The largest memory any invocation of each function asks for, MiB. */
function memoryPerFunction(plan: Plan): number[] {
  const most = plan.functions.map(() => 0);
  for (let i = 0; i < plan.length; i++) {
    const f = plan.functionIndex[i] ?? 0;
    most[f] = Math.max(most[f] ?? 0, plan.memoryMiB[i] ?? 0);
  }
  return most;
}

/**
 * The spec `--deploy` registers per function. Memory request of an emulated function: a tenth of
 * the largest memory the function's invocations ask for (Invitro's overcommit ratio of 10), at least
 * 1 MiB. A process function's memory is also its limit (a cgroup's, on a root worker), and the trace
 * function touches what it is asked for on top of Node's own: the largest ask plus 64 MiB, at least
 * 128 MiB. CPU 100 m (Invitro's 1 vCPU / 10). Cold-sweep functions scale as Dirigent's `cold_start_sweep` (one sandbox at most,
 * torn down as soon as idle); the warm RPS function keeps one sandbox. `protocol` is how the data
 * plane reaches the sandboxes (`h2c` for --transport h2c and grpc; the trace function serves both).
 */
export function deploySpec(name: string, mode: Mode, runtime: 'emulated' | 'process' | 'container', memoryMiB: number, artifact: string | undefined, timeoutMs: number, protocol: 'http1' | 'h2c' = 'http1'): FunctionSpecInput {
  const isReal = runtime !== 'emulated';
  const base: FunctionSpecInput = {
    name, runtime, concurrency: 1, timeoutMs: Math.min(900_000, Math.max(1, timeoutMs)),
    ...(protocol === 'h2c' ? { protocol } : {}),
    resources: { cpuMilli: 100, memoryMiB: isReal ? Math.max(128, Math.ceil(memoryMiB) + 64) : Math.max(1, Math.ceil(memoryMiB / 10)) },
    // A container's image runs `node server.js` (its Cmd); a process sandbox is told so.
    ...(runtime === 'process' ? { artifact, command: ['node', 'server.js'] } : runtime === 'container' ? { artifact } : {}),
  };
  if (mode === 'cold-sweep') return { ...base, scaling: { minScale: 0, maxScale: 1, stableWindowMs: 6_000, panicWindowMs: 2_000, scaleToZeroGraceMs: 0 } };
  if (mode === 'rps') return { ...base, scaling: { minScale: 1, maxScale: 1_024 } };
  // Trace functions scale as far as their load asks, as Invitro's do on Knative (no max scale by
  // default): Baton's default ceiling of 100 would turn a busy trace function's load into refusals.
  return { ...base, scaling: { maxScale: TRACE_MAX_SCALE } };
}

const DEPLOY_PARALLELISM = 16;
/** The highest `scaling.maxScale` a spec may have. */
const TRACE_MAX_SCALE = 10_000;

async function eachParallel<T>(items: readonly T[], work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) await work(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(DEPLOY_PARALLELISM, items.length) }, lane));
}

/** Registers the plan's functions; none is created when a name is taken. Returns the created names. */
async function deployFunctions(client: BatonClient, planned: Planned, runtime: 'emulated' | 'process' | 'container', timeoutMs: number, protocol: 'http1' | 'h2c', io: CliIo): Promise<string[]> {
  const { plan } = planned;
  const call = io.signal === undefined ? {} : { signal: io.signal };
  const existing = new Set((await client.listFunctions(call)).map((f) => f.spec.name));
  const taken = plan.functions.filter((name) => existing.has(name));
  if (taken.length > 0) {
    throw new BatonError('ERR_FUNCTION_EXISTS', `${taken.length} of the functions to deploy exist already (${taken.slice(0, 5).join(', ')}${taken.length > 5 ? ', …' : ''}); delete them or run without --deploy`, { details: { names: taken } });
  }
  let artifact: string | undefined;
  if (runtime === 'process') artifact = (await client.uploadArtifact(await packDirectory(TRACE_FUNCTION_DIR), call)).digest;
  // An OCI image of the trace function, built from this machine's Node.js as `baton image build` does.
  if (runtime === 'container') artifact = (await client.uploadArtifact(await buildImage({ dir: TRACE_FUNCTION_DIR, base: 'node', command: ['node', 'server.js'] }), call)).digest;
  const memory = memoryPerFunction(plan);
  const created: string[] = [];
  try {
    await eachParallel(plan.functions.map((name, i) => ({ name, memoryMiB: memory[i] ?? 0 })), async ({ name, memoryMiB }) => {
      await client.createFunction(deploySpec(name, planned.mode, runtime, memoryMiB, artifact, timeoutMs, protocol), call);
      created.push(name);
    });
  } catch (err) {
    await removeFunctions(client, created, io);
    throw err;
  }
  return created;
}

async function removeFunctions(client: BatonClient, names: readonly string[], io: CliIo): Promise<void> {
  const failed: string[] = [];
  await eachParallel(names, async (name) => {
    await client.deleteFunction(name).catch((err: unknown) => {
      if (!(err instanceof BatonError && err.code === 'ERR_FUNCTION_NOT_FOUND')) failed.push(`${name} (${String((err as Error).message)})`);
    });
  });
  if (failed.length > 0) io.stderr.write(`could not delete ${failed.length} functions: ${failed.slice(0, 5).join(', ')}\n`);
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(0)}s`;

/** The progress bar (a terminal) or line (otherwise) for one report. */
export function formatProgress(p: RunProgress, isTty: boolean): string {
  const share = p.totalMs <= 0 ? 1 : Math.min(1, p.elapsedMs / p.totalMs);
  const stats = `${seconds(p.elapsedMs)}/${seconds(p.totalMs)} sent ${p.sent}/${p.planned} in flight ${p.inFlight} errors ${p.errors} rate ${p.rate.toFixed(1)}/s`;
  if (!isTty) return `${stats}\n`;
  const width = 24;
  const filled = Math.round(share * width);
  return `\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${stats}\x1b[K`;
}

/** HTTP/2 cleartext with prior knowledge (Invitro's `http2.Transport{AllowHTTP: true}`): connections of 100 streams each. */
function h2cDispatcher(target: string, connections: number, timeoutMs: number): Dispatcher {
  let origin: string;
  try {
    origin = new URL(target).origin;
  } catch {
    throw new UsageError(`--target '${target}' is not a URL`);
  }
  const streams = 100;
  return new Pool(origin, {
    connections: Math.max(1, Math.ceil(connections / streams)),
    factory: (o, options) => new H2CClient(o, { ...options, maxConcurrentStreams: streams, pipelining: streams }),
    headersTimeout: timeoutMs + 1_000, bodyTimeout: timeoutMs + 1_000,
  });
}

/** gRPC calls through @grpc/grpc-js, one channel per function (see GrpcDispatcher). */
function grpcDispatcher(target: string, timeoutMs: number): Dispatcher {
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    throw new UsageError(`--target '${target}' is not a URL`);
  }
  if (url.protocol !== 'http:') throw new UsageError(`--transport grpc needs an http:// target (cleartext), got '${target}'`);
  return new GrpcDispatcher(url.host, join(TRACE_FUNCTION_DIR, 'faas.proto'), timeoutMs + 1_000);
}

async function runLoad(ctx: CommandContext): Promise<number> {
  const { values, io } = ctx;
  const target = stringFlag(values, 'target');
  if (target === undefined) throw new UsageError('--target URL is required (the data plane, e.g. http://127.0.0.1:8080)');
  const output = stringFlag(values, 'output');
  if (output === undefined) throw new UsageError('-o results.csv is required');
  const runtime = oneOf(values, 'runtime', RUNTIMES, 'emulated');
  const transport = oneOf(values, 'transport', TRANSPORTS, 'http1');
  const routing = oneOf<Routing>(values, 'routing', ['host', 'path'], 'host');
  if (transport === 'grpc' && routing !== 'host') throw new UsageError('--transport grpc names the function by the call\'s authority: it needs --routing host');
  if (transport === 'grpc' && runtime === 'emulated' && values['deploy'] === true) throw new UsageError('--transport grpc --deploy needs --runtime process or container (an emulated sandbox answers HTTP/1.1 only)');
  const format = oneOf<ResultsFormat>(values, 'format', ['invitro', 'baton'], 'invitro');
  const timeoutMs = intFlag(values, 'timeout-ms', 1) ?? 15_000;
  const connections = intFlag(values, 'connections', 1) ?? DEFAULT_CONNECTIONS;
  const maxInvocations = intFlag(values, 'max-invocations', 1) ?? 1_000_000;
  const maxDurationMs = (intFlag(values, 'max-seconds', 1) ?? 3_600) * 1000;
  if (values['keep'] === true && values['deploy'] !== true) throw new UsageError('--keep needs --deploy');

  const planned = await buildPlan(ctx);
  const { plan } = planned;
  // Refuse what the runner would refuse before deploying anything.
  if (plan.length > maxInvocations) throw new BatonError('ERR_INVALID_REQUEST', `the plan has ${plan.length} invocations, more than --max-invocations ${maxInvocations}`);
  const lastMs = plan.length === 0 ? 0 : plan.atMs[plan.length - 1] ?? 0;
  if (lastMs > maxDurationMs) throw new BatonError('ERR_INVALID_REQUEST', `the plan lasts ${Math.ceil(lastMs / 1000)} s, more than --max-seconds ${maxDurationMs / 1000}`);

  const deployed = values['deploy'] === true ? await deployFunctions(ctx.client(), planned, runtime, timeoutMs, transport !== 'http1' && runtime !== 'emulated' ? 'h2c' : 'http1', io) : [];
  if (deployed.length > 0) io.stderr.write(`deployed ${deployed.length} functions (runtime ${runtime})\n`);
  let result: RunResult;
  const dispatcher = transport === 'h2c' ? h2cDispatcher(target, connections, timeoutMs) : transport === 'grpc' ? grpcDispatcher(target, timeoutMs) : undefined;
  try {
    const isTty = io.stderr.isTTY === true;
    result = await runPlan(plan, {
      ...(dispatcher === undefined ? {} : { dispatcher }),
      baseUrl: target, routing, connections, timeoutMs, maxInvocations, maxDurationMs, invitroHeaders: true,
      ...(io.signal === undefined ? {} : { signal: io.signal }),
      progressIntervalMs: isTty ? 500 : 10_000,
      onProgress: (p) => io.stderr.write(formatProgress(p, isTty)),
    });
    if (isTty) io.stderr.write('\n');
    const path = resolve(io.cwd, output);
    await writeFile(path, formatInvitroCsv(result, { startWallMs: result.startWallMs, warmupMinutes: planned.warmupMinutes, format }));
    let ok = 0;
    for (let i = 0; i < result.length; i++) if (isOk(result, i)) ok++;
    const summary = {
      results: path, stopReason: result.stopReason, planned: result.planned, sent: result.length, ok,
      failed: result.length - ok, durationMs: Math.round(result.durationMs), sendLagP99Ms: result.sendLagP99Ms, maxInFlight: result.maxInFlight,
      connectionWaits: result.connectionWaits,
    };
    if (ctx.isJson) ctx.printJson(summary);
    else {
      ctx.print(`${result.stopReason === 'aborted' ? 'stopped' : 'done'}: sent ${result.length} of ${result.planned} invocations, ${ok} ok, ${result.length - ok} failed, send lag p99 ${result.sendLagP99Ms.toFixed(1)} ms`);
      ctx.print(`wrote ${path}`);
    }
    if (result.connectionWaits > 0) {
      io.stderr.write(`warning: ${result.connectionWaits} invocations found all ${connections} connections busy and waited in the client (${result.maxInFlight} were in flight at most); their latency includes that wait: raise --connections\n`);
    }
  } finally {
    await dispatcher?.close();
    if (deployed.length > 0 && values['keep'] !== true) {
      await removeFunctions(ctx.client(), deployed, io);
      io.stderr.write(`deleted ${deployed.length} functions\n`);
    }
  }
  return result.stopReason === 'aborted' ? 130 : 0;
}
