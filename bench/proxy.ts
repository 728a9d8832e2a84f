/**
 * Proxy benchmark: warm invocations of `hello` through Baton's data plane, compared in the same run
 * with the same function process called directly and with HAProxy in front of it.
 *
 *   npm run bench:proxy -- [--duration 10] [--connections 50] [--rounds 1] [--warmup 2]
 *                          [--concurrency 1000] [--cpu-prof DIR] [--out bench/results/proxy.json]
 *                          [--paths direct,haproxy,dataplane] [--baseline DIR] [--light-connections 1]
 *                          [--h2c-paths direct-h1,direct-h2c,dataplane-h1,dataplane-h2c | none]
 *                          [--h2c-connections 5] [--h2c-streams 10]
 *
 * Each round runs wrk (1 thread, `--connections`, `--duration` s, `--latency`) against direct,
 * HAProxy and the data plane in turn, after a short unrecorded warm-up of each; the table shows the
 * median over rounds. Then one light-load round (`--light-connections`, default 1) shows what each
 * hop adds to latency when nothing queues. `--baseline DIR` also runs the data plane of another checkout of Baton (with
 * its node_modules) as the path `dataplane-base`, to compare two versions in one run on a noisy
 * machine. `--cpu-prof DIR` profiles this checkout's data plane.
 *
 * HTTP/1.1 next to h2c, in the same run: h2load (nghttp2; wrk has no HTTP/2) loads
 * examples/trace-function (one process serving both, `workload: empty` so it answers at once)
 * directly and through the data plane, as the function `trace-h1` (HTTP/1.1 in and out: h2load
 * --h1, `--connections` connections) and `trace-h2c` (`protocol: h2c`, HTTP/2 in and out:
 * `--h2c-connections` × `--h2c-streams` concurrent streams, the same concurrency by default). h2load
 * reports no percentiles, so that table shows mean and max latency.
 *
 * Everything started is stopped at the end, on error and on Ctrl-C.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import {
  REPO_ROOT, startDataplaneProcess, startFakeControlPlane, startHaproxy, startTraceUpstream, startUpstream, waitForOk, type Stoppable,
} from './lib/proxy-fixtures.ts';
import { processCpuMs, processCpuTimes } from './lib/proc-cpu.ts';
import { runWrk, type WrkResult } from './lib/wrk.ts';
import { runH2load, type H2loadResult } from './lib/h2load.ts';

interface BenchOptions {
  readonly durationS: number;
  readonly connections: number;
  readonly rounds: number;
  readonly warmupS: number;
  /** Max in-flight invocations per sandbox in the routing the fake control plane pushes. */
  readonly concurrency: number;
  readonly cpuProfDir: string | undefined;
  readonly out: string;
  /** Which paths to load (direct, haproxy, dataplane by default; fewer for profiling). */
  readonly paths: readonly TargetName[];
  /** Connections of the light-load pass (0: none), which shows the latency a hop adds without queueing. */
  readonly lightConnections: number;
  /** A checkout (with node_modules) whose data plane runs as the path `dataplane-base`. */
  readonly baseline: string | undefined;
  /** The HTTP/1.1-versus-h2c paths loaded with h2load (none: skipped). */
  readonly h2cPaths: readonly H2cTargetName[];
  readonly h2cConnections: number;
  readonly h2cStreams: number;
}

type H2cTargetName = 'direct-h1' | 'direct-h2c' | 'dataplane-h1' | 'dataplane-h2c';
const H2C_TARGET_NAMES: readonly H2cTargetName[] = ['direct-h1', 'direct-h2c', 'dataplane-h1', 'dataplane-h2c'];
interface H2cTarget { readonly name: H2cTargetName; readonly url: string; readonly protocol: 'h1' | 'h2c'; readonly proxyPid: number | undefined }
interface H2cRun extends H2loadResult { readonly proxyCpuUsPerRequest: number }

/** `dataplane-base`: a second data plane from `--baseline DIR`, to compare two versions in one run. */
type TargetName = 'direct' | 'haproxy' | 'dataplane' | 'dataplane-base';
const TARGET_NAMES: readonly TargetName[] = ['direct', 'haproxy', 'dataplane', 'dataplane-base'];
/** `proxyPid`: the process between wrk and the upstream whose CPU time is charged to the path. */
interface Target { readonly name: TargetName; readonly url: string; readonly proxyPid: number | undefined; readonly upstreamPid: number }

/** One measured wrk run plus the CPU time the proxy and the upstream used during it. */
interface Run extends WrkResult {
  /** Proxy CPU (user + system) per request, in µs; 0 for direct. */
  readonly proxyCpuUsPerRequest: number;
  /** The user-space part of it: the proxy's own code, less disturbed by the kernel's loopback work. */
  readonly proxyUserCpuUsPerRequest: number;
  readonly upstreamCpuUsPerRequest: number;
}

function parseOptions(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string', default: '10' },
      connections: { type: 'string', default: '50' },
      rounds: { type: 'string', default: '1' },
      warmup: { type: 'string', default: '2' },
      concurrency: { type: 'string', default: '1000' },
      'cpu-prof': { type: 'string' },
      paths: { type: 'string' },
      'light-connections': { type: 'string', default: '1' },
      baseline: { type: 'string' },
      'h2c-paths': { type: 'string', default: H2C_TARGET_NAMES.join(',') },
      'h2c-connections': { type: 'string', default: '5' },
      'h2c-streams': { type: 'string', default: '10' },
      out: { type: 'string', default: join(REPO_ROOT, 'bench/results/proxy.json') },
    },
  });
  const int = (name: string, raw: string, min: number, max: number): number => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} must be an integer in [${min}, ${max}], got '${raw}'`);
    return n;
  };
  return {
    durationS: int('duration', values.duration, 1, 120),
    connections: int('connections', values.connections, 1, 10_000),
    rounds: int('rounds', values.rounds, 1, 20),
    warmupS: int('warmup', values.warmup, 0, 30),
    concurrency: int('concurrency', values.concurrency, 1, 100_000),
    cpuProfDir: values['cpu-prof'] === undefined ? undefined : resolve(values['cpu-prof']),
    out: resolve(values.out),
    lightConnections: int('light-connections', values['light-connections'], 0, 10_000),
    baseline: values.baseline === undefined ? undefined : resolve(values.baseline),
    h2cConnections: int('h2c-connections', values['h2c-connections'], 1, 1_000),
    h2cStreams: int('h2c-streams', values['h2c-streams'], 1, 1_000),
    h2cPaths: values['h2c-paths'] === 'none' ? [] : values['h2c-paths'].split(',').map((p) => {
      if (!(H2C_TARGET_NAMES as readonly string[]).includes(p)) throw new Error(`--h2c-paths takes none or a comma-separated subset of ${H2C_TARGET_NAMES.join(',')}, got '${p}'`);
      return p as H2cTargetName;
    }),
    paths: (values.paths ?? `direct,haproxy,dataplane${values.baseline === undefined ? '' : ',dataplane-base'}`).split(',').map((p) => {
      if (!(TARGET_NAMES as readonly string[]).includes(p)) throw new Error(`--paths takes a comma-separated subset of ${TARGET_NAMES.join(',')}, got '${p}'`);
      return p as TargetName;
    }),
  };
}

/** haproxy and wrk come from Debian; as root they are installed when missing, otherwise the command is printed. */
function ensureTools(needsH2load: boolean): void {
  const packages: Record<string, string> = { haproxy: 'haproxy', wrk: 'wrk', h2load: 'nghttp2-client' };
  const missing = ['haproxy', 'wrk', ...(needsH2load ? ['h2load'] : [])].filter((tool) => {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length === 0) return;
  const command = `apt-get update && apt-get install -y ${missing.map((tool) => packages[tool] ?? tool).join(' ')}`;
  if (process.getuid?.() !== 0) throw new Error(`missing ${missing.join(', ')}; install with: sudo ${command}`);
  process.stderr.write(`installing ${missing.join(', ')}…\n`);
  execFileSync('sh', ['-c', command], { stdio: 'inherit', timeout: 300_000 });
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  ensureTools(options.h2cPaths.length > 0);
  const abort = new AbortController();
  const stops: Stoppable[] = [];
  const scratch = await mkdtemp(join(tmpdir(), 'baton-bench-proxy-'));
  const onSignal = (): void => abort.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const upstream = await startUpstream(scratch, abort.signal);
    stops.push(upstream);
    const traceUpstream = options.h2cPaths.length === 0 ? undefined : await startTraceUpstream(scratch, abort.signal);
    if (traceUpstream !== undefined) stops.push(traceUpstream);
    const extra = traceUpstream === undefined ? [] : [
      { name: 'trace-h1', protocol: 'http1' as const, address: traceUpstream.address },
      { name: 'trace-h2c', protocol: 'h2c' as const, address: traceUpstream.address },
    ];
    const controlPlane = await startFakeControlPlane(upstream.address, options.concurrency, extra);
    stops.push(controlPlane);
    const profFlags = options.cpuProfDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', options.cpuProfDir];
    const dataplane = await startDataplaneProcess(controlPlane, { dataplaneId: 'bench-dataplane', nodeFlags: profFlags }, abort.signal);
    stops.unshift(dataplane);
    const base = options.baseline === undefined ? undefined
      : await startDataplaneProcess(controlPlane, { dataplaneId: 'bench-dataplane-base', nodeFlags: [], root: options.baseline }, abort.signal);
    if (base !== undefined) stops.unshift(base);
    const haproxy = await startHaproxy(upstream.address, scratch, abort.signal);
    stops.unshift(haproxy);
    const all: Target[] = [
      { name: 'direct', url: `http://${upstream.address}/`, proxyPid: undefined, upstreamPid: upstream.pid },
      { name: 'haproxy', url: `${haproxy.url}/fn/hello/`, proxyPid: haproxy.pid, upstreamPid: upstream.pid },
      { name: 'dataplane', url: `${dataplane.proxyUrl}/fn/hello/`, proxyPid: dataplane.pid, upstreamPid: upstream.pid },
      ...(base === undefined ? [] : [{ name: 'dataplane-base' as const, url: `${base.proxyUrl}/fn/hello/`, proxyPid: base.pid, upstreamPid: upstream.pid }]),
    ];
    const targets = all.filter((t) => options.paths.includes(t.name));
    for (const target of targets) await waitForOk(target.url, abort.signal);
    const runs = await measure(targets, options, options.connections, options.rounds, abort.signal);
    const light = options.lightConnections === 0 ? undefined : await measure(targets, options, options.lightConnections, 1, abort.signal);
    const h2cTargets: H2cTarget[] = traceUpstream === undefined ? [] : ([
      { name: 'direct-h1', url: `http://${traceUpstream.address}/`, protocol: 'h1', proxyPid: undefined },
      { name: 'direct-h2c', url: `http://${traceUpstream.address}/`, protocol: 'h2c', proxyPid: undefined },
      { name: 'dataplane-h1', url: `${dataplane.proxyUrl}/fn/trace-h1/`, protocol: 'h1', proxyPid: dataplane.pid },
      { name: 'dataplane-h2c', url: `${dataplane.proxyUrl}/fn/trace-h2c/`, protocol: 'h2c', proxyPid: dataplane.pid },
    ] as const).filter((t) => options.h2cPaths.includes(t.name));
    const h2cRuns = await measureH2c(h2cTargets, options, abort.signal);
    const summary = { ...summarise(runs, light, options), h2c: summariseH2c(h2cRuns, options) };
    process.stdout.write(formatTable(summary.rows, `wrk 1 thread, ${options.connections} connections, ${options.durationS} s per path, ${options.rounds} round(s) (median), ${options.warmupS} s warm-up`));
    if (summary.lightRows.length > 0) process.stdout.write(`\n${formatTable(summary.lightRows, `light load: wrk 1 thread, ${options.lightConnections} connection(s), ${options.durationS} s per path, 1 round`)}`);
    if (base !== undefined) process.stdout.write(formatComparison(summary));
    if (summary.h2c.rows.length > 0) process.stdout.write(`\n${formatH2cTable(summary.h2c)}`);
    await mkdir(dirname(options.out), { recursive: true });
    await writeFile(options.out, `${JSON.stringify(summary, null, 2)}\n`);
    process.stdout.write(`\nwrote ${options.out}\n`);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    for (const s of stops) await s.stop().catch(() => undefined);
    await rm(scratch, { recursive: true, force: true });
    if (options.cpuProfDir !== undefined) process.stdout.write(`data plane CPU profile in ${options.cpuProfDir}\n`);
  }
}

async function measure(targets: readonly Target[], options: BenchOptions, connections: number, rounds: number, signal: AbortSignal): Promise<Map<TargetName, Run[]>> {
  const runs = new Map<TargetName, Run[]>(targets.map((t) => [t.name, []]));
  const load = { connections, timeoutS: 5 };
  for (let round = 1; round <= rounds; round++) {
    // Rotate the order each round so that no path always runs first (or right after another).
    const order = targets.map((_, i) => targets[(i + round - 1) % targets.length] as Target);
    for (const target of order) {
      if (options.warmupS > 0) await runWrk({ ...load, url: target.url, durationS: options.warmupS }, signal);
      const cpuBefore = [processCpuMs(target.proxyPid ?? 0), processCpuMs(target.upstreamPid), processCpuTimes(target.proxyPid ?? 0).userMs] as const;
      const wrk = await runWrk({ ...load, url: target.url, durationS: options.durationS }, signal);
      const perRequestUs = (pid: number | undefined, before: number): number => (pid === undefined ? 0 : ((processCpuMs(pid) - before) * 1000) / wrk.requests);
      const userUs = target.proxyPid === undefined ? 0 : ((processCpuTimes(target.proxyPid).userMs - cpuBefore[2]) * 1000) / wrk.requests;
      const result: Run = {
        ...wrk,
        proxyCpuUsPerRequest: perRequestUs(target.proxyPid, cpuBefore[0]),
        proxyUserCpuUsPerRequest: userUs,
        upstreamCpuUsPerRequest: perRequestUs(target.upstreamPid, cpuBefore[1]),
      };
      runs.get(target.name)?.push(result);
      process.stderr.write(`c${connections} round ${round}/${rounds} ${target.name.padEnd(9)} ${result.requestsPerSecond.toFixed(0)} req/s  p50 ${result.p50Ms.toFixed(3)} ms  p99 ${result.p99Ms.toFixed(3)} ms  proxy CPU ${result.proxyCpuUsPerRequest.toFixed(1)} µs/req (user ${result.proxyUserCpuUsPerRequest.toFixed(1)})\n`);
    }
  }
  return runs;
}

/** The HTTP/1.1-versus-h2c paths, each run `--rounds` times after a warm-up, in a rotating order. */
async function measureH2c(targets: readonly H2cTarget[], options: BenchOptions, signal: AbortSignal): Promise<Map<H2cTargetName, H2cRun[]>> {
  const runs = new Map<H2cTargetName, H2cRun[]>(targets.map((t) => [t.name, []]));
  for (let round = 1; round <= options.rounds; round++) {
    const order = targets.map((_, i) => targets[(i + round - 1) % targets.length] as H2cTarget);
    for (const target of order) {
      const load = {
        url: target.url, protocol: target.protocol, headers: ['workload: empty'],
        connections: target.protocol === 'h1' ? options.connections : options.h2cConnections, streams: options.h2cStreams,
      };
      if (options.warmupS > 0) await runH2load({ ...load, durationS: options.warmupS, warmupS: 0 }, signal);
      const cpuBefore = processCpuMs(target.proxyPid ?? 0);
      const result = await runH2load({ ...load, durationS: options.durationS, warmupS: 0 }, signal);
      const run: H2cRun = { ...result, proxyCpuUsPerRequest: target.proxyPid === undefined ? 0 : ((processCpuMs(target.proxyPid) - cpuBefore) * 1000) / Math.max(1, result.requests) };
      runs.get(target.name)?.push(run);
      process.stderr.write(`h2load round ${round}/${options.rounds} ${target.name.padEnd(13)} ${run.requestsPerSecond.toFixed(0)} req/s  mean ${run.meanMs.toFixed(3)} ms  proxy CPU ${run.proxyCpuUsPerRequest.toFixed(1)} µs/req  failed ${run.failed}\n`);
    }
  }
  return runs;
}

interface H2cRow {
  readonly target: H2cTargetName;
  readonly requestsPerSecond: number;
  readonly meanMs: number;
  readonly maxMs: number;
  readonly proxyCpuUsPerRequest: number;
  readonly failed: number;
  readonly rounds: readonly H2cRun[];
}

interface H2cSummary {
  readonly params: { tool: 'h2load'; h1Connections: number; h2cConnections: number; h2cStreams: number; durationS: number; warmupS: number; rounds: number };
  readonly rows: readonly H2cRow[];
}

function summariseH2c(runs: Map<H2cTargetName, H2cRun[]>, options: BenchOptions): H2cSummary {
  return {
    params: { tool: 'h2load', h1Connections: options.connections, h2cConnections: options.h2cConnections, h2cStreams: options.h2cStreams, durationS: options.durationS, warmupS: options.warmupS, rounds: options.rounds },
    rows: [...runs.entries()].map(([target, results]) => ({
      target,
      requestsPerSecond: median(results.map((r) => r.requestsPerSecond)),
      meanMs: median(results.map((r) => r.meanMs)),
      maxMs: median(results.map((r) => r.maxMs)),
      proxyCpuUsPerRequest: median(results.map((r) => r.proxyCpuUsPerRequest)),
      failed: results.reduce((sum, r) => sum + r.failed, 0),
      rounds: results,
    })),
  };
}

function formatH2cTable(summary: H2cSummary): string {
  const p = summary.params;
  const title = `HTTP/1.1 and h2c, trace function upstream: h2load 1 thread, ${p.h1Connections} HTTP/1.1 connections or ${p.h2cConnections} × ${p.h2cStreams} h2c streams, ${p.durationS} s per path, ${p.rounds} round(s) (median)`;
  const header = ['path', 'req/s', 'mean ms', 'max ms', 'proxy CPU µs/req', 'failed'];
  const lines = summary.rows.map((r) => [
    r.target, r.requestsPerSecond.toFixed(0), r.meanMs.toFixed(3), r.maxMs.toFixed(3), r.target.startsWith('direct') ? '—' : r.proxyCpuUsPerRequest.toFixed(1), String(r.failed),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] as string).length)));
  const fmt = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join('  ');
  const h1 = summary.rows.find((r) => r.target === 'dataplane-h1');
  const h2 = summary.rows.find((r) => r.target === 'dataplane-h2c');
  const ratio = h1 === undefined || h2 === undefined ? [] : [`data plane h2c / HTTP/1.1: req/s ×${(h2.requestsPerSecond / h1.requestsPerSecond).toFixed(3)}, proxy CPU/req ×${(h2.proxyCpuUsPerRequest / h1.proxyCpuUsPerRequest).toFixed(3)}`];
  return [title, fmt(header), ...lines.map(fmt), ...ratio, ''].join('\n');
}

interface Row {
  readonly target: TargetName;
  readonly requestsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Throughput relative to HAProxy's in the same run. */
  readonly ratioToHaproxy: number;
  /** p50 minus the direct p50, in ms: what the hop adds. */
  readonly addedP50Ms: number;
  /** CPU time of the proxy process per request (µs); steadier than req/s on shared cores. */
  readonly proxyCpuUsPerRequest: number;
  readonly upstreamCpuUsPerRequest: number;
  readonly errors: number;
  readonly rounds: readonly Run[];
}

interface Summary {
  readonly params: { tool: string; threads: 1; connections: number; durationS: number; warmupS: number; rounds: number; concurrency: number; lightConnections: number };
  readonly machine: { cpus: number; node: string; haproxy: string; wrk: string };
  readonly at: string;
  readonly rows: readonly Row[];
  /** The light-load pass (`params.lightConnections`), one round. */
  readonly lightRows: readonly Row[];
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

function summarise(runs: Map<TargetName, Run[]>, light: Map<TargetName, Run[]> | undefined, options: BenchOptions): Summary {
  return {
    params: {
      tool: 'wrk', threads: 1, connections: options.connections, durationS: options.durationS, warmupS: options.warmupS, rounds: options.rounds,
      concurrency: options.concurrency, lightConnections: options.lightConnections,
    },
    machine: { cpus: availableParallelism(), node: process.version, haproxy: firstLine('haproxy', ['-v']), wrk: firstLine('wrk', ['-v']) },
    at: new Date().toISOString(),
    rows: toRows(runs),
    lightRows: light === undefined ? [] : toRows(light),
  };
}

function toRows(runs: Map<TargetName, Run[]>): Row[] {
  const med = (name: TargetName, pick: (r: Run) => number): number => median((runs.get(name) ?? []).map(pick));
  const haproxyRps = med('haproxy', (r) => r.requestsPerSecond);
  const directP50 = med('direct', (r) => r.p50Ms);
  return [...runs.entries()].map(([target, results]): Row => ({
    target,
    requestsPerSecond: med(target, (r) => r.requestsPerSecond),
    p50Ms: med(target, (r) => r.p50Ms),
    p99Ms: med(target, (r) => r.p99Ms),
    ratioToHaproxy: med(target, (r) => r.requestsPerSecond) / haproxyRps,
    addedP50Ms: med(target, (r) => r.p50Ms) - directP50,
    proxyCpuUsPerRequest: med(target, (r) => r.proxyCpuUsPerRequest),
    upstreamCpuUsPerRequest: med(target, (r) => r.upstreamCpuUsPerRequest),
    errors: results.reduce((sum, r) => sum + r.non2xx + r.socketErrors, 0),
    rounds: results,
  }));
}

function firstLine(file: string, args: string[]): string {
  try {
    return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')[0] ?? '';
  } catch (err) {
    // wrk -v exits 1 after printing its version.
    const out = (err as { stdout?: string }).stdout ?? '';
    return out.split('\n')[0] ?? '';
  }
}

/**
 * This checkout's data plane against the baseline's, from the same run: the median over rounds of
 * the per-round ratios (the two paths of a round run back to back, so they share the machine's mood).
 */
function formatComparison(summary: Summary): string {
  const now = summary.rows.find((r) => r.target === 'dataplane');
  const base = summary.rows.find((r) => r.target === 'dataplane-base');
  if (now === undefined || base === undefined) return '';
  const paired = (pick: (r: Run) => number): number => median(now.rounds.map((r, i) => pick(r) / pick(base.rounds[i] as Run)));
  return `\nvs baseline (same run, median of per-round ratios): req/s ×${paired((r) => r.requestsPerSecond).toFixed(3)}, `
    + `proxy CPU/req ×${paired((r) => r.proxyCpuUsPerRequest).toFixed(3)} (user ×${paired((r) => r.proxyUserCpuUsPerRequest).toFixed(3)}), p50 ×${paired((r) => r.p50Ms).toFixed(3)}\n`;
}

function formatTable(rows: readonly Row[], title: string): string {
  const header = ['path', 'req/s', 'p50 ms', 'p99 ms', '× HAProxy', 'added p50 ms', 'proxy CPU µs/req', 'errors'];
  const lines = rows.map((r) => [
    r.target, r.requestsPerSecond.toFixed(0), r.p50Ms.toFixed(3), r.p99Ms.toFixed(3), r.ratioToHaproxy.toFixed(2),
    r.target === 'direct' ? '—' : r.addedP50Ms.toFixed(3), r.target === 'direct' ? '—' : r.proxyCpuUsPerRequest.toFixed(1), String(r.errors),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] as string).length)));
  const fmt = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join('  ');
  return [title, fmt(header), ...lines.map(fmt), ''].join('\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:proxy failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
