/**
 * `npm run bench:async`: durable accepts per second (embedded log and Redis) with the acceptance
 * latency, and the end-to-end latency of an asynchronous invocation next to a synchronous one of
 * the same warm function, in the same run. Writes bench/results/async.json.
 *
 *   npm run bench:async -- [--seconds 5] [--connections 64]
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { SegmentLog } from '../src/dataplane/async/segment-log.ts';
import { startCluster, runCliProcess, ROOT, type Cluster } from '../test/kit/cluster.ts';
import { liveClock } from '../test/kit/live-clock.ts';
import { startRedis } from '../test/kit/redis.ts';
import { waitFor } from '../test/kit/wait-for.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, connections: { type: 'string', default: '64' }, json: { type: 'string', default: join(ROOT, 'bench/results/async.json') } } });
const SECONDS = Number(values.seconds);
const CONNECTIONS = Number(values.connections);
const FIXTURES = join(ROOT, 'test/fixtures/lambda-handlers');

const pct = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return Number((s[Math.min(s.length - 1, Math.floor((q / 100) * s.length))] ?? NaN).toFixed(2));
};

async function deploy(cluster: Cluster, name: string, extra: string): Promise<void> {
  const manifest = join(cluster.dir, `${name}.yaml`);
  await writeFile(manifest, `name: ${name}\nhandler: esm.handler\ndir: ${FIXTURES}\nconcurrency: 50\nscaling:\n  minScale: 1\n${extra}`);
  const res = await runCliProcess(['deploy', '-f', manifest, '--url', cluster.cpUrl]);
  if (res.code !== 0) throw new Error(res.stderr);
  await waitFor(async () => (await fetch(`${cluster.dpUrl}/fn/${name}/`)).status === 200, { timeoutMs: 30_000, message: `${name} warm` });
}

/** Closed loop: `CONNECTIONS` clients accept as fast as they can for `SECONDS`. */
async function accepts(dpUrl: string, fn: string): Promise<{ acceptsPerSecond: number; p50Ms: number; p99Ms: number; refused: number }> {
  const pool = new Pool(dpUrl, { connections: CONNECTIONS, pipelining: 1 });
  const latencies: number[] = [];
  let refused = 0;
  const body = JSON.stringify({ n: 1, pad: 'x'.repeat(200) });
  const end = performance.now() + SECONDS * 1000;
  const client = async (): Promise<void> => {
    while (performance.now() < end) {
      const t0 = performance.now();
      const res = await pool.request({ path: `/fn/${fn}/`, method: 'POST', body, headers: { 'content-type': 'application/json', 'x-baton-invocation-type': 'Event' } });
      await res.body.dump();
      if (res.statusCode === 202) latencies.push(performance.now() - t0);
      else refused += 1;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: CONNECTIONS }, client));
  const elapsed = (performance.now() - started) / 1000;
  await pool.close();
  return { acceptsPerSecond: Math.round(latencies.length / elapsed), p50Ms: pct(latencies, 50), p99Ms: pct(latencies, 99), refused };
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
  for (const id of ids) {
    const v = await waitFor(async () => {
      const res = await pool.request({ path: `/v1/invocations/${id}`, method: 'GET' });
      const view = await res.body.json() as { state: string; acceptedAt: string; attempts: { finishedAt?: string }[] };
      return view.state === 'succeeded' ? view : undefined;
    }, { timeoutMs: 30_000 });
    asyncMs.push(Date.parse(v.attempts[0]?.finishedAt ?? '') - Date.parse(v.acceptedAt));
  }
  await pool.close();
  return { syncP50Ms: pct(sync, 50), syncP99Ms: pct(sync, 99), asyncAcceptToDoneP50Ms: pct(asyncMs, 50), asyncAcceptToDoneP99Ms: pct(asyncMs, 99), addedP50Ms: Number((pct(asyncMs, 50) - pct(sync, 50)).toFixed(2)) };
}

/** The log alone, in this process: appends of 300-byte records made durable by group commit. */
async function logAlone(): Promise<{ appendsPerSecond: number; fsyncs: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'baton-bench-log-'));
  const log = new SegmentLog({ dir, clock: liveClock, groupCommitMs: 2, segmentMaxBytes: 64 << 20 });
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
  const result: Record<string, unknown> = { seconds: SECONDS, connections: CONNECTIONS };
  result['logAlone'] = await logAlone();
  const embedded = await startCluster({ dataplane: [] });
  try {
    await deploy(embedded, 'lat', '');
    result['latency'] = await latencies(embedded.dpUrl, 'lat', 50);
    await deploy(embedded, 'sink', 'async:\n  maxConcurrency: 2\n');
    result['embedded'] = await accepts(embedded.dpUrl, 'sink');
  } finally {
    await embedded.stop();
  }
  const cleanups: (() => Promise<void>)[] = [];
  try {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const onRedis = await startCluster({ dataplane: ['--async-store', 'redis', '--async-redis-url', redis.url] });
    try {
      await deploy(onRedis, 'sink', 'async:\n  maxConcurrency: 2\n');
      result['redis'] = await accepts(onRedis.dpUrl, 'sink');
    } finally {
      await onRedis.stop();
    }
  } finally {
    for (const fn of cleanups.reverse()) await fn();
  }
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  await writeFile(values.json, `${JSON.stringify(result, null, 2)}\n`);
}

await main();
