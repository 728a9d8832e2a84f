import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { waitFor } from './wait-for.ts';

export const REDIS_SERVER = '/usr/bin/redis-server';

/** True when Debian's `redis-server` is installed (`.ci/run` installs it). */
export function hasRedis(): boolean {
  return existsSync(REDIS_SERVER);
}

/** A port nobody listens on right now (the kernel picks it). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface RedisServer {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  /** A new client of this server, connected lazily (as the control plane makes its own). */
  client(): Redis;
  /** The pid of the running redis-server (changes on `restart`). */
  pid(): number | undefined;
  /** `kill -9`, then a new server on the same port and data dir (it replays its AOF). */
  restart(): Promise<void>;
  /** `kill -9` only, the data dir kept: `restart` starts it again. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts `redis-server` on a free loopback port with a data directory of its own and the
 * append-only file on, fsync'ed on every write; stopped by pid.
 */
export async function startRedis(): Promise<RedisServer> {
  const dir = await mkdtemp(join(tmpdir(), 'baton-redis-'));
  const port = await freePort();
  let child: ChildProcess | undefined;
  const launch = async (): Promise<void> => {
    const started = spawn(REDIS_SERVER, [
      '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '',
      '--appendonly', 'yes', '--appendfsync', 'always', '--daemonize', 'no', '--protected-mode', 'yes', '--loglevel', 'warning',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    started.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
    child = started;
    const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on('error', () => undefined); // refused until the server listens: that is what is being waited for
    try {
      await waitFor(async () => {
        if (started.exitCode !== null) throw new Error(`redis-server exited: ${stderr}`);
        try {
          if (probe.status !== 'ready') {
            probe.disconnect();
            await probe.connect();
          }
          return (await probe.ping()) === 'PONG';
        } catch {
          return false;
        }
      }, { timeoutMs: 10_000, message: `redis-server on port ${port}` });
    } finally {
      probe.disconnect();
    }
  };
  const kill = async (): Promise<void> => {
    const running = child;
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return;
    const exited = once(running, 'exit');
    running.kill('SIGKILL');
    await exited;
  };
  const onExit = (): void => { child?.kill('SIGKILL'); };
  process.once('exit', onExit);
  await launch();
  const url = `redis://127.0.0.1:${port}`;
  return {
    url, port, dir,
    client: () => new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, commandTimeout: 5_000 }),
    pid: () => child?.pid,
    async restart() {
      await kill();
      await launch();
    },
    kill,
    async stop() {
      await kill();
      process.off('exit', onExit);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
