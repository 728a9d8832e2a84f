import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { waitFor } from './wait-for.ts';

export const REDIS_SERVER = '/usr/bin/redis-server';

/** A free loopback port (bound and released). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts Debian's redis-server on a free loopback port with a data dir of its own, every write
 * fsync'd to its append-only file (the durability the async queue documents for Redis). Stopped
 * by its pid when the caller's `after` runs.
 */
export async function startRedis(after: (fn: () => Promise<void>) => void): Promise<{ url: string; port: number }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'baton-redis-'));
  const port = await freePort();
  const child = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--protected-mode', 'no'], { stdio: 'ignore' });
  after(async () => {
    if (child.exitCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  });
  const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on('error', () => undefined);
  await waitFor(async () => {
    try {
      if (probe.status !== 'ready') await probe.connect();
      return (await probe.ping()) === 'PONG';
    } catch {
      probe.disconnect();
      return false;
    }
  }, { timeoutMs: 10_000, message: 'redis-server to answer PING' });
  probe.disconnect();
  return { url: `redis://127.0.0.1:${port}`, port };
}
