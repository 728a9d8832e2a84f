/**
 * `npm run bench:async`: durable accepts per second (embedded log and Redis) with the acceptance
 * latency, and the end-to-end latency of an asynchronous invocation next to a synchronous one of
 * the same warm function, in the same run. Writes bench/results/async.json.
 *
 *   npm run bench:async -- [--seconds 4] [--rate 10000] [--connections 64] [--pipelining 1] [--phases log,latency,embedded,redis]
 *
 * Accepts are an open-loop load: request i is due at start + i/rate whatever became of the others,
 * and its latency counts from that due time (so a stall shows as the queueing it causes instead of
 * slowing the client down — no coordinated omission). Bounded: rate × seconds requests, at most
 * `MAX_OUTSTANDING` in flight (more are counted as not sent), and a drain of at most 10 s.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { SegmentLog } from '../src/dataplane/async/segment-log.ts';
import { processCpuTimes } from './lib/proc-cpu.ts';
import { startCluster, runCliProcess, ROOT, type Cluster } from '../test/kit/cluster.ts';
import { liveClock } from '../test/kit/live-clock.ts';
import { startRedis } from '../test/kit/redis.ts';
import { waitFor } from '../test/kit/wait-for.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '4' },
    rate: { type: 'string', default: '10000' },
    connections: { type: 'string', default: '64' },
    /** Requests in flight per connection (HTTP/1.1 pipelining; 1: none). */
    pipelining: { type: 'string', default: '1' },
    /** Which phases run: log (the log alone), latency (sync next to async), embedded and redis (accepts). */
    phases: { type: 'string', default: 'log,latency,embedded,redis' },
    json: { type: 'string', default: join(ROOT, 'bench/results/async.json') },
  },
});
const SECONDS = Number(values.seconds);
const RATE = Number(values.rate);
const CONNECTIONS = Number(values.connections);
const PIPELINING = Number(values.pipelining);
const PHASES = new Set(values.phases.split(','));
const MAX_OUTSTANDING = 20_000;
const WARMUP_SECONDS = 2;
const DRAIN_MS = 10_000;
const FIXTURES = join(ROOT, 'test/fixtures/lambda-handlers');

const pct = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return Number((s[Math.min(s.length - 1, Math.floor((q / 100) * s.length))] ?? NaN).toFixed(2));
};

/** Milliseconds since the epoch of an ISO 8601 time with up to microseconds (the invocation record's). */
const isoMs = (iso: string): number => {
  const m = /\.(\d+)Z$/.exec(iso);
  const fraction = m === null ? 0 : Number(`0.${m[1]}`) * 1000;
  return Date.parse(iso.replace(/\.\d+Z$/, 'Z')) + fraction;
};

async function deploy(cluster: Cluster, name: string, extra: string): Promise<void> {
  const manifest = join(cluster.dir, `${name}.yaml`);
  await writeFile(manifest, `name: ${name}\nhandler: esm.handler\ndir: ${FIXTURES}\nconcurrency: 50\nscaling:\n  minScale: 1\n${extra}`);
  const res = await runCliProcess(['deploy', '-f', manifest, '--url', cluster.cpUrl]);
  if (res.code !== 0) throw new Error(res.stderr);
  await waitFor(async () => (await fetch(`${cluster.dpUrl}/fn/${name}/`)).status === 200, { timeoutMs: 30_000, message: `${name} warm` });
}

/**
 * Open loop: `RATE`/s accepts (`X-Baton-Invocation-Type: Event`) for `SECONDS`, over `CONNECTIONS`
 * keep-alive connections; latency from each request's due time to its 202.
 */
/** The embedded log's fdatasync count so far (0 with Redis). */
async function fsyncs(cluster: Cluster): Promise<number> {
  const text = await (await fetch(`${cluster.dpInternalUrl}/metrics`)).text();
  return Number(/^baton_dataplane_async_fsyncs (\d+)$/m.exec(text)?.[1] ?? 0);
}

/** Attempts of `fn` that succeeded so far (the deliveries made while accepts were measured). */
async function delivered(cluster: Cluster, fn: string): Promise<number> {
  const text = await (await fetch(`${cluster.dpInternalUrl}/metrics`)).text();
  return Number(new RegExp(`^baton_dataplane_async_deliveries_total\\{function="${fn}",outcome="succeeded"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
}

interface OpenLoopRun {
  readonly latencies: number[];
  /** Each accepted request's due time, ms after the run's start. */
  readonly dueTimes: number[];
  readonly sent: number;
  readonly refused: number;
  readonly failed: number;
  readonly notSent: number;
  readonly unfinished: number;
  /** From the first due time to the last answer. */
  readonly seconds: number;
}

/** `rate`/s accepts for `seconds`, each due at start + i/rate; latency from its due time to its 202. */
async function openLoop(pool: Pool, fn: string, rate: number, seconds: number): Promise<OpenLoopRun> {
  const latencies: number[] = [];
  const dueTimes: number[] = [];
  let refused = 0;
  let failed = 0;
  let notSent = 0;
  let outstanding = 0;
  const body = JSON.stringify({ n: 1, pad: 'x'.repeat(200) });
  const total = Math.round(rate * seconds);
  const intervalMs = 1000 / rate;
  const settled: Promise<void>[] = [];
  const started = performance.now();
  const send = (dueAt: number): Promise<void> => {
    outstanding += 1;
    // idempotent lets undici pipeline a POST (it is never retried: a failure is counted).
    return pool.request({ path: `/fn/${fn}/`, method: 'POST', body, idempotent: PIPELINING > 1, headers: { 'content-type': 'application/json', 'x-baton-invocation-type': 'Event' } })
      .then(async (res) => {
        await res.body.dump();
        if (res.statusCode === 202) {
          latencies.push(performance.now() - dueAt);
          dueTimes.push(dueAt - started);
        } else {
          refused += 1;
        }
      }, () => {
        failed += 1;
      })
      .finally(() => {
        outstanding -= 1;
      });
  };
  let next = 0;
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now();
      while (next < total && started + next * intervalMs <= now) {
        const dueAt = started + next * intervalMs;
        next += 1;
        if (outstanding >= MAX_OUTSTANDING) notSent += 1;
        else settled.push(send(dueAt));
      }
      if (next >= total) resolve();
      else setTimeout(tick, Math.max(0, started + next * intervalMs - performance.now()));
    };
    tick();
  });
  const drained = await Promise.race([Promise.all(settled).then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), DRAIN_MS))]);
  return { latencies, dueTimes, sent: settled.length, refused, failed, notSent, unfinished: drained ? 0 : outstanding, seconds: (performance.now() - started) / 1000 };
}

/**
 * Open loop: `RATE`/s accepts (`X-Baton-Invocation-Type: Event`) for `SECONDS` over `CONNECTIONS`
 * keep-alive connections, after a warm-up of `WARMUP_SECONDS` at a quarter of the rate (the
 * connections opened, the accept path compiled: without it the first second of a cold data plane
 * queues for hundreds of milliseconds and tells nothing about the steady state).
 */
async function accepts(cluster: Cluster, fn: string): Promise<Record<string, number | number[]>> {
  const pid = cluster.dataplane.child.pid as number;
  const pool = new Pool(cluster.dpUrl, { connections: CONNECTIONS, pipelining: PIPELINING });
  const warmup = await openLoop(pool, fn, RATE / 4, WARMUP_SECONDS);
  const fsyncsBefore = await fsyncs(cluster);
  const deliveredBefore = await delivered(cluster, fn);
  const cpuBefore = processCpuTimes(pid);
  const clientBefore = process.cpuUsage();
  const run = await openLoop(pool, fn, RATE, SECONDS);
  const cpuAfter = processCpuTimes(pid);
  const client = process.cpuUsage(clientBefore);
  const fsyncsAfter = await fsyncs(cluster);
  const deliveredAfter = await delivered(cluster, fn);
  await pool.destroy();
  const { latencies, seconds } = run;
  return {
    warmupAccepted: warmup.latencies.length,
    // The data plane's CPU over the run, in cores (user + system), the log's fsyncs and the deliveries made meanwhile.
    dataplaneCores: Number(((cpuAfter.userMs + cpuAfter.systemMs - cpuBefore.userMs - cpuBefore.systemMs) / 1000 / seconds).toFixed(2)),
    dataplaneSystemCores: Number(((cpuAfter.systemMs - cpuBefore.systemMs) / 1000 / seconds).toFixed(2)),
    clientCores: Number(((client.user + client.system) / 1e6 / seconds).toFixed(2)),
    fsyncsPerSecond: Math.round((fsyncsAfter - fsyncsBefore) / seconds),
    deliveredPerSecond: Math.round((deliveredAfter - deliveredBefore) / seconds),
    offeredPerSecond: RATE, sent: run.sent, accepted: latencies.length, refused: run.refused, failed: run.failed, notSent: run.notSent, unfinished: run.unfinished,
    // Achieved: accepted over the time from the first due time to the last answer.
    acceptsPerSecond: Math.round(latencies.length / seconds),
    p50Ms: pct(latencies, 50), p90Ms: pct(latencies, 90), p99Ms: pct(latencies, 99), maxMs: pct(latencies, 100),
    // p99 of the requests due in each half second: where in the run the latency was.
    p99ByHalfSecondMs: Array.from({ length: Math.ceil(SECONDS * 2) }, (_, i) => pct(latencies.filter((_, j) => Math.floor((run.dueTimes[j] ?? 0) / 500) === i), 99)),
  };
}

/** Open loop at `rate`/s: sync latency (client side) and async acceptance → attempt finished (the data plane's record). */
async function latencies(dpUrl: string, fn: string, rate: number): Promise<Record<string, number>> {
  const pool = new Pool(dpUrl, { connections: 16 });
  const sync: number[] = [];
  const ids: string[] = [];
  const count = rate * SECONDS;
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    const res = await pool.request({ path: `/fn/${fn}/`, method: 'POST', body: '{"n":1}', headers: { 'content-type': 'application/json' } });
    await res.body.dump();
    sync.push(performance.now() - t0);
    const a = await pool.request({ path: `/fn/${fn}/`, method: 'POST', body: '{"n":1}', headers: { 'content-type': 'application/json', 'x-baton-invocation-type': 'Event' } });
    ids.push(String(a.headers['x-baton-invocation-id']));
    await a.body.dump();
    await new Promise((resolve) => setTimeout(resolve, 1000 / rate));
  }
  const asyncMs: number[] = [];
  const toStartMs: number[] = [];
  const attemptMs: number[] = [];
  for (const id of ids) {
    const v = await waitFor(async () => {
      const res = await pool.request({ path: `/v1/invocations/${id}`, method: 'GET' });
      const view = await res.body.json() as { state: string; acceptedAt: string; attempts: { startedAt: string; finishedAt?: string }[] };
      return view.state === 'succeeded' ? view : undefined;
    }, { timeoutMs: 30_000 });
    const attempt = v.attempts[0];
    asyncMs.push(isoMs(attempt?.finishedAt ?? '') - isoMs(v.acceptedAt));
    toStartMs.push(isoMs(attempt?.startedAt ?? '') - isoMs(v.acceptedAt));
    attemptMs.push(isoMs(attempt?.finishedAt ?? '') - isoMs(attempt?.startedAt ?? ''));
  }
  await pool.close();
  return { syncP50Ms: pct(sync, 50), syncP99Ms: pct(sync, 99), asyncAcceptToDoneP50Ms: pct(asyncMs, 50), asyncAcceptToDoneP99Ms: pct(asyncMs, 99), asyncAcceptToStartP50Ms: pct(toStartMs, 50), asyncAttemptP50Ms: pct(attemptMs, 50), addedP50Ms: Number((pct(asyncMs, 50) - pct(sync, 50)).toFixed(2)) };
}

/** The log alone, in this process: appends of 300-byte records made durable by group commit. */
async function logAlone(): Promise<{ appendsPerSecond: number; fsyncs: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'baton-bench-log-'));
  const log = new SegmentLog({ dir, clock: liveClock, groupCommitMs: 0, segmentMaxBytes: 64 << 20 });
  await log.open(() => undefined);
  const body = Buffer.alloc(300, 1);
  let done = 0;
  const end = performance.now() + 2000;
  const writer = async (): Promise<void> => {
    while (performance.now() < end) {
      await log.append({ t: 'e', id: String(done) }, body).durable;
      done += 1;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: 256 }, writer));
  const elapsed = (performance.now() - started) / 1000;
  const fsyncs = log.fsyncs;
  await log.close();
  await rm(dir, { recursive: true, force: true });
  return { appendsPerSecond: Math.round(done / elapsed), fsyncs };
}

async function main(): Promise<void> {
  const result: Record<string, unknown> = { seconds: SECONDS, rate: RATE, connections: CONNECTIONS, pipelining: PIPELINING, phases: [...PHASES] };
  if (PHASES.has('log')) result['logAlone'] = await logAlone();
  if (PHASES.has('latency') || PHASES.has('embedded')) {
    const embedded = await startCluster({ dataplane: [] });
    try {
      if (PHASES.has('latency')) {
        await deploy(embedded, 'lat', '');
        result['latency'] = await latencies(embedded.dpUrl, 'lat', 50);
      }
      if (PHASES.has('embedded')) {
        await deploy(embedded, 'sink', 'async:\n  maxConcurrency: 2\n');
        result['embedded'] = await accepts(embedded, 'sink');
      }
    } finally {
      await embedded.stop();
    }
  }
  if (PHASES.has('redis')) {
    const redis = await startRedis();
    try {
      const onRedis = await startCluster({ dataplane: ['--async-store', 'redis', '--async-redis-url', redis.url] });
      try {
        await deploy(onRedis, 'sink', 'async:\n  maxConcurrency: 2\n');
        result['redis'] = await accepts(onRedis, 'sink');
      } finally {
        await onRedis.stop();
      }
    } finally {
      await redis.stop();
    }
  }
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  await writeFile(values.json, `${JSON.stringify(result, null, 2)}\n`);
}

await main();
