import type { TestContext } from 'node:test';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
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

/**
 * Where test processes reserve the fixed ports they hand to `baton up`: one file per port, created
 * exclusively and holding the reserving process's pid. Test files run in parallel processes, and
 * "is it free now" alone lets two of them pick overlapping ports between the check and the bind.
 */
const PORT_LOCK_DIR = join(tmpdir(), 'baton-test-ports');

/** Below the kernel's ephemeral range, so that no outgoing connection or `listen(0)` takes one of them meanwhile. */
function ephemeralLow(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32_768;
  } catch {
    return 32_768;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the lock file of `port`, or takes over one whose process is gone; false if a live process holds it. */
function lockPort(port: number): boolean {
  const file = join(PORT_LOCK_DIR, String(port));
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(readFileSync(file, 'utf8').trim());
      if (Number.isInteger(holder) && holder > 0 && isAlive(holder)) return false;
      rmSync(file, { force: true });
    }
  }
  return false;
}

function unlockPorts(ports: readonly number[]): void {
  for (const port of ports) rmSync(join(PORT_LOCK_DIR, String(port)), { force: true });
}

/**
 * A `--port-offset` whose ports (8080, 8081, 9090, 9091, 10010 + offset, and `more`'s) are free now
 * and reserved for this test until it ends (every port below the ephemeral range, each locked
 * against the other test processes).
 */
export async function freeOffset(t: TestContext, more: (offset: number) => readonly number[] = () => []): Promise<number> {
  mkdirSync(PORT_LOCK_DIR, { recursive: true, mode: 0o1777 });
  const portsOf = (offset: number): number[] => [...new Set([...[8080, 8081, 9090, 9091, 10010].map((p) => p + offset), ...more(offset)])];
  const span = Math.max(...portsOf(0));
  const highest = ephemeralLow() - 1 - span;
  const lowest = 10_000;
  if (highest <= lowest) throw new Error(`no room for port offsets below the ephemeral range (${ephemeralLow()})`);
  for (let attempt = 0; attempt < 100; attempt++) {
    const offset = lowest + Math.floor(Math.random() * (highest - lowest));
    const ports = portsOf(offset);
    const locked: number[] = [];
    for (const port of ports) {
      if (!lockPort(port)) break;
      locked.push(port);
    }
    if (locked.length === ports.length && (await Promise.all(ports.map(isFree))).every(Boolean)) {
      t.after(() => unlockPorts(ports));
      return offset;
    }
    unlockPorts(locked);
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
  // Searchable by the unprivileged user a root worker runs process sandboxes as.
  await chmod(dir, 0o711);
  t.after(() => rm(dir, { recursive: true, force: true }));
  const offset = await freeOffset(t, options.ports);
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
