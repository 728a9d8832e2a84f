/**
 * bench:churn — sandbox churn at cluster scale, as in Dirigent's cold-start sweep.
 *
 * Starts the real control plane, data plane and one process emulating W workers (emulated runtime)
 * as separate processes. For each target rate R: F = ceil(R × cooldown) functions with maxScale 1
 * and a short scale-to-zero, each invoked once per cooldown, staggered so that R invocations per
 * second reach the data plane — every one a cold start. The load is open-loop (sent on schedule,
 * whatever the responses do). Reports per R: achieved cold starts/s, latency and scheduling overhead
 * percentiles, errors by code, CPU seconds of each process; JSON and an SVG plot.
 *
 * Each step begins with a warm-up at the step's rate (default: one cooldown, so that every function
 * of the step is invoked once), as Invitro's warm-up phase: it is reported on its own and left out
 * of the step's figures, which measure the steady state of `--seconds` after it.
 *
 *   npm run bench:churn -- --rates 100,500,2500 --seconds 15 --json FILE
 *
 * `--records DIR` also writes each step's invocations, warm-up included, as Invitro's
 * per-invocation CSV (`DIR/churn-<rate>.csv`), for analyses of single invocations over time.
 *
 * `--store redis` puts the control plane on a Redis store (a `redis-server` the bench starts on a
 * free port, append-only and fsync'ed on every write, as the tests do) instead of the embedded file
 * store; the server's CPU and write syscalls per cold start are reported with the daemons' (the
 * store stays off the cold-start path, so they should stay near zero).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Pool, request } from 'undici';
import { summarizeRun } from '../src/loadgen/analysis.ts';
import { formatInvitroCsv } from '../src/loadgen/invitro-csv.ts';
import { renderLineChart } from '../src/loadgen/plot.ts';
import { runPlan } from '../src/loadgen/runner.ts';
import { planColdStartSweep, sweepFunctionNames } from '../src/loadgen/schedule.ts';
import { startCluster, type Cluster } from '../test/kit/cluster.ts';
import { hasRedis, REDIS_SERVER, startRedis, type RedisServer } from '../test/kit/redis.ts';

const { values } = parseArgs({
  options: {
    rates: { type: 'string', default: '100,500,1000,2500,5000,10000' },
    seconds: { type: 'string', default: '10' },
    cooldown: { type: 'string', default: '5' },
    'step-warmup-seconds': { type: 'string' },
    workers: { type: 'string', default: '100' },
    'exec-ms': { type: 'string', default: '10' },
    'create-latency-ms': { type: 'string', default: '0' },
    'max-total-seconds': { type: 'string', default: '600' },
    'warmup-rate': { type: 'string', default: '1000' },
    json: { type: 'string', default: 'bench/results/churn.json' },
    svg: { type: 'string', default: 'bench/results/churn.svg' },
    records: { type: 'string' },
    store: { type: 'string', default: 'file' },
  },
});
const store = values.store;
if (store !== 'file' && store !== 'redis') throw new Error('--store must be file or redis');
if (store === 'redis' && !hasRedis()) throw new Error(`--store redis needs ${REDIS_SERVER} (apt-get install redis-server)`);
const rates = values.rates.split(',').map(Number);
const seconds = Number(values.seconds);
const cooldownS = Number(values.cooldown);
const stepWarmupS = Number(values['step-warmup-seconds'] ?? cooldownS);
const workers = Number(values.workers);
const execMs = Number(values['exec-ms']);
const createLatencyMs = Number(values['create-latency-ms']);
const maxTotalMs = Number(values['max-total-seconds']) * 1000;
const warmupRate = Number(values['warmup-rate']);
if (!Number.isFinite(warmupRate) || warmupRate < 0) throw new Error('--warmup-rate must be a number ≥ 0 (0: no warm-up)');
if (!Number.isFinite(stepWarmupS) || stepWarmupS < 0) throw new Error('--step-warmup-seconds must be a number ≥ 0 (0: none)');
for (const [name, v] of [['seconds', seconds], ['cooldown', cooldownS], ['workers', workers], ['exec-ms', execMs + 1], ['create-latency-ms', createLatencyMs + 1]] as const) {
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number`);
}
if (rates.some((r) => !Number.isFinite(r) || r <= 0)) throw new Error('--rates must be positive numbers');

/** Overhead bound for the headline: the highest rate whose p99 scheduling overhead is at most this. */
const OVERHEAD_BOUND_MS = 50;

interface RatePoint {
  rate: number;
  /** Cold starts per second the control plane counted over the whole step (its warm-up included, at the same rate). */
  achieved: number;
  invocationsOk: number;
  invocations: number;
  p50Ms: number;
  p99Ms: number;
  overheadP50Ms: number;
  overheadP99Ms: number;
  sendLagP99Ms: number;
  errors: Record<string, number>;
  cpuSeconds: Record<string, number>;
  /** Write syscalls of each daemon during the step (`syscw` of /proc/PID/io), per cold start. */
  writesPerColdStart: Record<string, number>;
  /**
   * Times each daemon's main thread went to sleep (voluntary context switches, /proc/PID/status),
   * per cold start: each is a wakeup later, which costs these machines ~90 µs of CPU (bench/README.md).
   */
  sleepsPerColdStart: Record<string, number>;
  /** The whole machine during the step (all processes): % of CPU time idle, and stolen by the hypervisor. */
  machine: { idlePct: number; stealPct: number };
  /** The step's warm-up (its first `seconds` at the same rate), left out of every figure above. */
  warmup: { seconds: number; invocations: number; p99Ms: number; overheadP99Ms: number; errors: Record<string, number> };
}

/** Every per-process counter the benchmark reads, at one moment. */
interface Counters {
  cpu: Record<string, number>;
  writes: Record<string, number>;
  sleeps: Record<string, number>;
  /** Cold starts the control plane has counted; read only while no load runs (see below). */
  coldStarts: number;
  machine: [number, number, number];
  /** This process's CPU time (the load generator), µs. */
  loadgenUs: number;
}

/** The aggregate `cpu` line of /proc/stat: [idle + iowait, steal, total] in clock ticks. */
async function machineTicks(): Promise<[number, number, number]> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0] as string;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return [(f[3] ?? 0) + (f[4] ?? 0), f[7] ?? 0, total];
}

/** Write syscalls (write, writev, send…) the process has made: `syscw` of /proc/PID/io. */
async function writeSyscalls(pid: number): Promise<number> {
  const io = await readFile(`/proc/${pid}/io`, 'utf8');
  return Number(/^syscw:\s*(\d+)/m.exec(io)?.[1] ?? Number.NaN);
}

/** Voluntary context switches of the process's main thread: how often its event loop slept. */
async function sleeps(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^voluntary_ctxt_switches:\s*(\d+)/m.exec(status)?.[1] ?? Number.NaN);
}

async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks (100/s)
}

async function coldStartsTotal(cpUrl: string): Promise<number> {
  const res = await request(`${cpUrl}/metrics`);
  const text = await res.body.text();
  let total = 0;
  for (const line of text.split('\n')) if (line.startsWith('baton_controlplane_cold_starts_total{')) total += Number(line.split(' ').pop());
  return total;
}

async function register(cluster: Cluster, names: readonly string[]): Promise<void> {
  const spec = (name: string) => JSON.stringify({
    name, runtime: 'emulated', artifact: 'sha256:' + '0'.repeat(64), concurrency: 1,
    scaling: { maxScale: 1, stableWindowMs: 2000, panicWindowMs: 500, scaleToZeroGraceMs: 0 },
    resources: { cpuMilli: 1, memoryMiB: 1 },
  });
  let next = 0;
  const worker = async () => {
    while (next < names.length) {
      const name = names[next++] as string;
      const res = await request(`${cluster.cpUrl}/v1/functions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: spec(name) });
      const text = await res.body.text();
      if (res.statusCode !== 201 && res.statusCode !== 409) throw new Error(`registering ${name}: ${res.statusCode} ${text}`);
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
}

async function main(): Promise<void> {
  const started = Date.now();
  const redis: RedisServer | undefined = store === 'redis' ? await startRedis() : undefined;
  const cluster = await startCluster({
    // Production heartbeats and reports (1 s); a shorter autoscaler tick so that functions reach zero
    // within the cooldown.
    controlplane: ['--heartbeat-interval-ms', '1000', '--autoscaler-bucket-ms', '250', '--autoscaler-tick-ms', '500',
      ...(redis === undefined ? [] : ['--store', 'redis', '--redis-url', redis.url])],
    worker: ['--heartbeat-interval-ms', '1000', '--emulate', String(workers), '--runtime', 'emulated', '--emulated-create-latency', `${createLatencyMs}ms`, '--cpu-milli', '100000', '--memory-mib', '100000'],
    dataplane: ['--heartbeat-interval-ms', '1000', '--queue-timeout-ms', '10000', '--demand-report-interval-ms', '1000'],
  });
  const points: RatePoint[] = [];
  // One client population for the whole benchmark, as long-lived clients would be: its keep-alive
  // connections to the data plane outlive the pauses between steps, so that no step pays for
  // opening them (a pool per step made the first half second of each step the slowest).
  const clients = new Pool(new URL(cluster.dpUrl).origin, { connections: 2048, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 60_000 });
  try {
    const maxNames = sweepFunctionNames({ rate: Math.max(...rates), cooldownS, functionPrefix: 'churn-' });
    process.stdout.write(`registering ${maxNames.length} functions (${store} store)…\n`);
    await register(cluster, maxNames);
    if (warmupRate > 0) {
      // Warm-up, not recorded: every function of the sweep is invoked once, at a moderate rate, so
      // that the steps measure the steady state — not the first invocation of each function ever
      // (per-function state in all three daemons, connections, code not yet optimised).
      const spanS = maxNames.length / warmupRate;
      const warm = await runPlan(
        planColdStartSweep({ rate: warmupRate, seconds: spanS, cooldownS: spanS, execMs, functionPrefix: 'churn-' }),
        { baseUrl: cluster.dpUrl, dispatcher: clients, timeoutMs: 15_000 },
      );
      const s = summarizeRun(warm, { creationLatencyMs: createLatencyMs });
      process.stdout.write(`warm-up (not recorded): ${s.count} invocations at ${warmupRate}/s, p50 ${s.p50Ms.toFixed(1)} ms, p99 ${s.p99Ms.toFixed(1)} ms, errors ${JSON.stringify(s.errorsByCode)}\n`);
      await new Promise((r) => setTimeout(r, (cooldownS + 1) * 1000));
    }
    const redisPid = redis?.pid();
    const pids = {
      controlplane: cluster.controlplane.child.pid!, dataplane: cluster.dataplane.child.pid!, workers: cluster.worker.child.pid!,
      ...(redisPid === undefined ? {} : { redis: redisPid }),
    };
    /** One reading per daemon, e.g. `readEach(cpuSeconds)` → `{ controlplane: 1.2, … }`. */
    const readEach = async (read: (pid: number) => Promise<number>): Promise<Record<string, number>> =>
      Object.fromEntries(await Promise.all(Object.entries(pids).map(async ([k, pid]) => [k, await read(pid)] as const)));
    for (const rate of rates) {
      if (Date.now() - started + (stepWarmupS + seconds + cooldownS) * 1000 > maxTotalMs) {
        process.stdout.write(`stopping before ${rate}/s: --max-total-seconds reached\n`);
        break;
      }
      const plan = planColdStartSweep({ rate, seconds: stepWarmupS + seconds, cooldownS, execMs, functionPrefix: 'churn-' });
      // The control plane's cold-start counter comes from /metrics, a family with one series per
      // function (~0.8 MB of text at 12,500 functions): rendering it holds the control plane's event
      // loop and parsing it this process's (which sends the load) for 10–30 ms on a busy machine.
      // Read at the warm-up's end, that made the first 100–200 ms of every measured step one of its
      // slowest moments. So it is read only before the step and after its last answer, and the
      // /proc counters (cheap) also at the warm-up's end.
      const readCounters = async (withColdStarts: boolean): Promise<Counters> => ({
        cpu: await readEach(cpuSeconds), writes: await readEach(writeSyscalls), sleeps: await readEach(sleeps),
        coldStarts: withColdStarts ? await coldStartsTotal(cluster.cpUrl) : Number.NaN, machine: await machineTicks(),
        loadgenUs: ((usage) => usage.user + usage.system)(process.cpuUsage()),
      });
      const atStart = await readCounters(true);
      // The measured part begins when the warm-up ends: the counters are read again then.
      const atWarmupEnd = stepWarmupS === 0 ? Promise.resolve(atStart) : new Promise<Counters>((resolve, reject) => {
        setTimeout(() => readCounters(false).then(resolve, reject), stepWarmupS * 1000);
      });
      // A failed reading surfaces where it is awaited, after the run, not as an unhandled rejection during it.
      atWarmupEnd.catch(() => undefined);
      const result = await runPlan(plan, { baseUrl: cluster.dpUrl, dispatcher: clients, timeoutMs: 15_000 });
      if (values.records !== undefined) {
        // Written after the step's last answer, before the pause: nothing is in flight.
        await mkdir(values.records, { recursive: true });
        await writeFile(path.join(values.records, `churn-${rate}.csv`), formatInvitroCsv(result, { startWallMs: result.startWallMs }));
      }
      const before = await atWarmupEnd;
      const after = await readCounters(true);
      const machineTotal = after.machine[2] - before.machine[2];
      const warmupMs = stepWarmupS * 1000;
      const summary = summarizeRun(result, { creationLatencyMs: createLatencyMs, fromMs: warmupMs });
      const warm = summarizeRun(result, { creationLatencyMs: createLatencyMs, untilMs: warmupMs });
      // Cold starts of the whole step (warm-up included, at the same rate), and the measured part's
      // share of them in proportion to its invocations (each one is a cold start here).
      const stepColdStarts = after.coldStarts - atStart.coldStarts;
      const coldStarts = Math.max(1, (stepColdStarts * summary.count) / Math.max(1, summary.count + warm.count));
      const perColdStart = (a: Record<string, number>, b: Record<string, number>): Record<string, number> =>
        Object.fromEntries(Object.entries(a).map(([k, v]) => [k, Math.round((100 * (v - (b[k] ?? 0))) / coldStarts) / 100]));
      const point: RatePoint = {
        rate,
        achieved: stepColdStarts / Math.max(1e-3, result.durationMs / 1000),
        invocationsOk: summary.ok,
        invocations: summary.count,
        p50Ms: summary.p50Ms, p99Ms: summary.p99Ms,
        overheadP50Ms: summary.overheadP50Ms, overheadP99Ms: summary.overheadP99Ms,
        sendLagP99Ms: summary.sendLagP99Ms,
        errors: { ...summary.errorsByCode },
        cpuSeconds: {
          ...Object.fromEntries(Object.entries(after.cpu).map(([k, v]) => [k, Math.round((v - (before.cpu[k] ?? 0)) * 100) / 100])),
          loadgen: Math.round((after.loadgenUs - before.loadgenUs) / 1e4) / 100,
        },
        writesPerColdStart: perColdStart(after.writes, before.writes),
        sleepsPerColdStart: perColdStart(after.sleeps, before.sleeps),
        machine: {
          idlePct: Math.round((1000 * (after.machine[0] - before.machine[0])) / machineTotal) / 10,
          stealPct: Math.round((1000 * (after.machine[1] - before.machine[1])) / machineTotal) / 10,
        },
        warmup: { seconds: stepWarmupS, invocations: warm.count, p99Ms: warm.p99Ms, overheadP99Ms: warm.overheadP99Ms, errors: { ...warm.errorsByCode } },
      };
      points.push(point);
      process.stdout.write(`${JSON.stringify(point)}\n`);
      // Let every function of this step scale back to zero before the next step.
      await new Promise((r) => setTimeout(r, (cooldownS + 1) * 1000));
    }
  } finally {
    await clients.close().catch(() => undefined);
    await cluster.stop();
    await redis?.stop();
  }
  await writeFile(values.json, `${JSON.stringify(points, null, 2)}\n`);
  await writeFile(values.svg, renderLineChart({
    title: `Cold starts through Baton (${workers} emulated workers, ${store} store, 2 cores)`,
    xLabel: 'target cold starts per second', yLabel: 'end-to-end latency (ms)',
    xScale: 'log', yScale: 'log',
    series: [
      { name: 'p50', points: points.map((p) => ({ x: p.rate, y: p.p50Ms })) },
      { name: 'p99', points: points.map((p) => ({ x: p.rate, y: p.p99Ms })) },
      { name: 'p99 scheduling overhead', points: points.map((p) => ({ x: p.rate, y: p.overheadP99Ms })) },
    ],
  }));
  // Errors count against a step wherever they happened, warm-up included.
  const meeting = points.filter((p) => p.overheadP99Ms <= OVERHEAD_BOUND_MS && Object.keys(p.errors).length === 0 && Object.keys(p.warmup.errors).length === 0);
  const best = meeting.sort((a, b) => b.achieved - a.achieved)[0];
  process.stdout.write(`\n rate  achieved   p50 ms   p99 ms  ovh p50  ovh p99  idle%  warm-up ovh p99  errors\n`);
  for (const p of points) {
    const errors = Object.entries({ ...p.warmup.errors, ...p.errors }).map(([k]) => `${k}:${(p.errors[k] ?? 0) + (p.warmup.errors[k] ?? 0)}`).join(' ') || '-';
    process.stdout.write(`${String(p.rate).padStart(5)} ${p.achieved.toFixed(0).padStart(9)} ${p.p50Ms.toFixed(1).padStart(8)} ${p.p99Ms.toFixed(1).padStart(8)} ${p.overheadP50Ms.toFixed(1).padStart(8)} ${p.overheadP99Ms.toFixed(1).padStart(8)} ${p.machine.idlePct.toFixed(0).padStart(6)} ${(p.warmup.invocations === 0 ? "-" : p.warmup.overheadP99Ms.toFixed(1)).padStart(16)}  ${errors}\n`);
  }
  process.stdout.write(`\nhighest rate with p99 scheduling overhead ≤ ${OVERHEAD_BOUND_MS} ms and no errors: ${best === undefined ? 'none' : `${best.achieved.toFixed(0)} cold starts/s (target ${best.rate}/s)`}\n`);
  process.stdout.write(`wrote ${values.json} and ${values.svg}\n`);
}

await main();
