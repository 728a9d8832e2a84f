import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from './wait-for.ts';

export const HAPROXY = '/usr/sbin/haproxy';

export function hasHaproxy(): boolean {
  return existsSync(HAPROXY);
}

export interface ServerStat { readonly name: string; readonly status: string; readonly total: number }

export interface HaproxyProcess {
  readonly child: ChildProcess;
  /** The data-plane servers as HAProxy's statistics page shows them. */
  servers(): Promise<ServerStat[]>;
  stop(): Promise<void>;
}

/** Runs Debian's `haproxy` in the foreground on `config` (which must serve its stats at `statsUrl`); stopped by pid. */
export async function startHaproxy(config: string, statsUrl: string): Promise<HaproxyProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'baton-haproxy-'));
  const file = join(dir, 'haproxy.cfg');
  await writeFile(file, config);
  const child = spawn(HAPROXY, ['-db', '-f', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  const onExit = (): void => { child.kill('SIGKILL'); };
  process.once('exit', onExit);
  const servers = async (): Promise<ServerStat[]> => {
    const csv = await (await fetch(`${statsUrl}/;csv`, { signal: AbortSignal.timeout(2_000) })).text();
    const [header, ...rows] = csv.trim().split('\n');
    const columns = (header ?? '').replace(/^# /, '').split(',');
    const col = (name: string) => columns.indexOf(name);
    return rows.map((r) => r.split(',')).filter((r) => r[col('pxname')] === 'baton_dataplanes' && !['BACKEND', 'FRONTEND'].includes(r[col('svname')] ?? ''))
      .map((r) => ({ name: r[col('svname')] ?? '', status: r[col('status')] ?? '', total: Number(r[col('stot')]) }));
  };
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`haproxy exited: ${stderr}`);
    return (await servers()).length > 0;
  }, { timeoutMs: 10_000, message: `haproxy to serve its stats (${stderr})` });
  return {
    child,
    servers,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGKILL');
        await exited;
      }
      process.off('exit', onExit);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Waits (bounded) until HAProxy has had every server UP for `forMs` without a break — as an
 * operator rolls: a check that failed during a restart may mark a server DOWN only after it
 * serves again, and the next one must not be stopped then.
 */
export async function waitStablyUp(haproxy: HaproxyProcess, what: string, forMs = 1_000, timeoutMs = 30_000): Promise<void> {
  let upSince: number | undefined;
  await waitFor(async () => {
    const isUp = (await haproxy.servers()).every((s) => s.status === 'UP');
    if (!isUp) upSince = undefined;
    else upSince ??= performance.now();
    return upSince !== undefined && performance.now() - upSince >= forMs;
  }, { timeoutMs, message: `${what}: every server UP in HAProxy for ${forMs} ms` });
}
