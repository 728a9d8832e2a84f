import type { TestContext } from 'node:test';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './cluster.ts';
import { waitFor } from './wait-for.ts';

export async function isFree(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((resolvePort) => {
    server.once('error', () => resolvePort(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolvePort(true)));
  });
}

/** A `--port-offset` whose ports (8080, 8081, 9090, 9091, 10010 + offset, and `more`'s) are free now. */
export async function freeOffset(more: (offset: number) => readonly number[] = () => []): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const offset = 20_000 + Math.floor(Math.random() * 20_000);
    const ports = [...new Set([...[8080, 8081, 9090, 9091, 10010].map((p) => p + offset), ...more(offset)])];
    if ((await Promise.all(ports.map(isFree))).every(Boolean)) return offset;
  }
  throw new Error('no free port offset');
}

export interface RunningUp {
  readonly child: ChildProcess;
  readonly offset: number;
  /** `baton up`'s data dir (`admin-token` is in it). */
  readonly dir: string;
  /** The XDG_CONFIG_HOME `baton up` ran with: a temporary directory, so that it never writes the user's own client config. */
  readonly configHome: string;
  /** The environment a CLI process needs to find what `baton up` wrote (XDG_CONFIG_HOME set, BATON_URL/BATON_TOKEN unset). */
  readonly cliEnv: NodeJS.ProcessEnv;
  /** The admin token `baton up` made (from `<dir>/admin-token`). */
  readonly adminToken: string;
  readonly output: { stdout: string; stderr: string };
  /** The pid of the daemon `baton up` runs now for `command` (read from /proc). */
  daemonPid(command: 'controlplane' | 'dataplane' | 'worker'): number | undefined;
  /** The pid of the child of `baton up` whose command line holds every one of `args` in a row (e.g. `['--port', '9090']`). */
  childPid(args: readonly string[]): number | undefined;
  /** Ctrl-C; resolves with the exit code. */
  interrupt(): Promise<number | null>;
}

/** Starts `baton up` on free ports with its own data dir; resolves once it says it is ready. */
export async function startUp(t: TestContext, extraArgs: readonly string[] = [], options: { ports?: (offset: number) => readonly number[] } = {}): Promise<RunningUp> {
  const dir = await mkdtemp(join(tmpdir(), 'baton-up-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const offset = await freeOffset(options.ports);
  const configHome = await mkdtemp(join(tmpdir(), 'baton-xdg-'));
  t.after(() => rm(configHome, { recursive: true, force: true }));
  const upEnv: NodeJS.ProcessEnv = { ...process.env, XDG_CONFIG_HOME: configHome };
  for (const name of ['BATON_URL', 'BATON_DATAPLANE_URL', 'BATON_TOKEN']) delete upEnv[name];
  // Empty is unset for the CLI, also once merged over another environment (runCliProcess). Not for
  // `baton up` itself: its data planes would read BATON_DATAPLANE_URL as a config key of theirs.
  const cliEnv: NodeJS.ProcessEnv = { ...upEnv, BATON_URL: '', BATON_DATAPLANE_URL: '', BATON_TOKEN: '' };
  // A process group of its own: if the test fails, `baton up` and every daemon it started are
  // killed together (a daemon left behind would also hold the test's pipes open).
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'up', '--data-dir', dir, '--port-offset', String(offset), ...extraArgs],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: upEnv });
  const killGroup = (): void => {
    try {
      process.kill(-(child.pid as number), 'SIGKILL');
    } catch {
      // already gone
    }
  };
  process.once('exit', killGroup);
  t.after(() => {
    process.off('exit', killGroup);
    killGroup();
  });
  const output = { stdout: '', stderr: '' };
  child.stdout.on('data', (d: Buffer) => { output.stdout += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { output.stderr += d.toString(); });
  await waitFor(() => output.stdout.includes('Press Ctrl-C'), { timeoutMs: 90_000, message: `baton up to be ready (stdout: ${output.stdout.slice(-500)}; stderr: ${output.stderr.slice(-500)})` });
  return {
    child, offset, dir, configHome, cliEnv, output,
    adminToken: readFileSync(join(dir, 'admin-token'), 'utf8').trim(),
    daemonPid(command) {
      const children = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
      return children.find((pid) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(command);
        } catch {
          return false;
        }
      });
    },
    childPid(args) {
      const children = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
      return children.find((pid) => {
        try {
          const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
          return argv.some((_, i) => args.every((a, k) => argv[i + k] === a));
        } catch {
          return false;
        }
      });
    },
    async interrupt() {
      const exited = once(child, 'exit');
      child.kill('SIGINT');
      const [code] = await exited as [number | null];
      return code;
    },
  };
}
