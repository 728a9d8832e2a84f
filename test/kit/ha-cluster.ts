import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnDaemon, type DaemonProcess } from './cluster.ts';
import { startRedis, type RedisServer } from './redis.ts';
import { waitFor } from './wait-for.ts';

export interface HaControlPlane {
  readonly url: string;
  readonly daemon: DaemonProcess;
}

/** What a control plane's `/healthz` says of the election. */
export interface Health {
  readonly role: 'leader' | 'follower' | 'taking-over';
  readonly leaderUrl: string | null;
  readonly epoch?: number;
}

export interface HaCluster {
  readonly redis: RedisServer;
  readonly controlPlanes: readonly HaControlPlane[];
  readonly worker: DaemonProcess;
  readonly workerUrl: string;
  readonly dataplane: DaemonProcess;
  /** The data plane's invocation URL. */
  readonly dpUrl: string;
  /** Its internal API (routing view, health). */
  readonly dpInternalUrl: string;
  /** `/healthz` of one control plane, or undefined when it does not answer within a second. */
  health(cp: HaControlPlane): Promise<Health | undefined>;
  /** Waits (bounded) until exactly one of `among` leads and the others name it; resolves with it and its epoch. */
  leader(among?: readonly HaControlPlane[], timeoutMs?: number): Promise<{ cp: HaControlPlane; epoch: number }>;
  stop(): Promise<void>;
}

/** Fast test settings (as test/kit/cluster.ts) and a lease of 1.5 s. */
export const HA_CP_FLAGS = [
  '--heartbeat-interval-ms', '200', '--autoscaler-bucket-ms', '100', '--autoscaler-tick-ms', '200', '--drain-timeout-ms', '10000', '--leader-lease-ms', '1500', '--auth-mode', 'none',
];

/** `/healthz` of one control plane, or undefined when it does not answer within a second. */
export async function health(cp: HaControlPlane): Promise<Health | undefined> {
  try {
    const res = await fetch(`${cp.url}/healthz`, { signal: AbortSignal.timeout(1_000) });
    return await res.json() as Health;
  } catch {
    return undefined;
  }
}

/** Waits (bounded) until exactly one of `among` leads and the others name it; resolves with it and its epoch. */
export async function waitForLeader(among: readonly HaControlPlane[], timeoutMs = 15_000): Promise<{ cp: HaControlPlane; epoch: number }> {
  return waitFor(async () => {
    const answers = await Promise.all(among.map(async (cp) => ({ cp, health: await health(cp) })));
    const leaders = answers.filter((a) => a.health?.role === 'leader');
    if (leaders.length !== 1) return undefined;
    const leader = leaders[0] as { cp: HaControlPlane; health: Health };
    const isNamed = answers.every((a) => a.health?.leaderUrl === leader.cp.url.replace(/\/+$/, ''));
    return isNamed ? { cp: leader.cp, epoch: leader.health.epoch as number } : undefined;
  }, { timeoutMs, intervalMs: 25, message: 'one control plane to lead, named by the others' });
}

/**
 * A control plane on Redis with the fast test settings (`port` 0: a free one); `ready` resolves
 * once it listens. The daemon is returned at once, so that a caller can stop it if it never does.
 */
export function startControlPlane(o: { dataDir: string; redisUrl: string; port?: number }, auth: { joinSecret?: string | false } = {}): { daemon: DaemonProcess; ready: Promise<HaControlPlane> } {
  const daemon = spawnDaemon('controlplane', ['--port', String(o.port ?? 0), '--data-dir', o.dataDir, '--store', 'redis', '--redis-url', o.redisUrl, ...HA_CP_FLAGS], auth);
  const ready = daemon.waitForLog((l) => l['msg'] === 'control plane listening').then((line) => ({ url: line['url'] as string, daemon }));
  return { daemon, ready };
}

/**
 * `joinSecret: false` starts every daemon without one (open, loopback only): a test that must pose
 * as a control plane to the worker (which accepts commands only with the token it gave its own).
 *
 * `count` control planes on one real Redis (the first started alone, so it leads), then one
 * emulated worker and one data plane given every control plane's URL — in an order that puts a
 * follower first, so that they must follow the leader's name from the start.
 */
export async function startHaCluster(options: { count?: number; worker?: readonly string[]; joinSecret?: false } = {}): Promise<HaCluster> {
  const auth = options.joinSecret === false ? { joinSecret: false as const } : {};
  const count = options.count ?? 3;
  const dir = await mkdtemp(join(tmpdir(), 'baton-ha-'));
  const redis = await startRedis();
  const started: DaemonProcess[] = [];
  const startCp = async (i: number): Promise<HaControlPlane> => {
    const cp = startControlPlane({ dataDir: join(dir, `cp${i}`), redisUrl: redis.url }, auth);
    started.push(cp.daemon);
    return cp.ready;
  };
  try {
    const controlPlanes = [await startCp(0)];
    controlPlanes.push(...await Promise.all(Array.from({ length: count - 1 }, (_, i) => startCp(i + 1))));
    const urls = JSON.stringify([...controlPlanes.slice(1), controlPlanes[0] as HaControlPlane].map((cp) => cp.url));
    const worker = spawnDaemon('worker', ['--port', '0', '--data-dir', join(dir, 'worker'), '--runtime', 'emulated', '--control-plane-urls', urls, '--heartbeat-interval-ms', '200', ...(options.worker ?? [])], auth);
    const dataplane = spawnDaemon('dataplane', ['--port', '0', '--internal-port', '0', '--data-dir', join(dir, 'dp'), '--control-plane-urls', urls, '--heartbeat-interval-ms', '200', '--demand-report-interval-ms', '100'], auth);
    started.push(worker, dataplane);
    const workerLine = await worker.waitForLog((l) => l['msg'] === 'worker started');
    const dpLine = await dataplane.waitForLog((l) => l['msg'] === 'data plane started');
    const first = controlPlanes[0] as HaControlPlane;
    await first.daemon.waitForLog((l) => l['msg'] === 'worker registered');
    await first.daemon.waitForLog((l) => l['msg'] === 'data plane registered');
    return {
      redis, controlPlanes, worker, dataplane, health,
      workerUrl: workerLine['url'] as string,
      dpUrl: dpLine['proxyUrl'] as string,
      dpInternalUrl: dpLine['url'] as string,
      leader: (among = controlPlanes, timeoutMs = 15_000) => waitForLeader(among, timeoutMs),
      async stop() {
        for (const daemon of started) if (daemon.child.signalCode === null && daemon.child.exitCode === null) daemon.child.kill('SIGCONT');
        await Promise.all([dataplane.stop(), worker.stop()]);
        await Promise.all(controlPlanes.map((cp) => cp.daemon.stop()));
        await redis.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await Promise.all(started.map((d) => d.stop('SIGKILL')));
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
