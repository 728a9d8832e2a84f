import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { randomBytes } from 'node:crypto';
import { bearer, deriveJoinKey } from '../../src/transport/internal-auth.ts';

export const ROOT = resolve(import.meta.dirname, '../..');
const CLI = join(ROOT, 'src/cli/main.ts');
const BUILT_CLI = join(ROOT, 'dist/cli/main.js');

/**
 * How daemons are started: from the TypeScript sources through tsx (tests), or — with
 * BATON_BUILT=1, as the benchmarks do after `npm run build` — from the compiled `dist/`, exactly
 * as `npm start` runs them.
 */
function daemonArgv(): string[] {
  return process.env['BATON_BUILT'] === '1' ? [BUILT_CLI] : ['--import', 'tsx', CLI];
}

/**
 * Daemons still running. When this process ends — normally, on an uncaught error, or on SIGINT or
 * SIGTERM sent to it alone (a `timeout`, a `kill` of the benchmark) — they are killed with it
 * rather than left running with nobody to stop them.
 */
const running = new Set<ChildProcess>();
let isGuarded = false;

function guardExit(): void {
  if (isGuarded) return;
  isGuarded = true;
  process.once('exit', () => {
    for (const child of running) child.kill('SIGKILL');
  });
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.once(signal, () => {
      for (const child of running) child.kill('SIGTERM');
      process.exit(code);
    });
  }
}

/** One daemon running as its own process, with its JSON log lines kept for assertions. */
export interface DaemonProcess {
  readonly child: ChildProcess;
  readonly logs: Record<string, unknown>[];
  /** Resolves with the first log line for which `match` is true. */
  waitForLog(match: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * The join secret of every daemon the kit starts (one per test process), so that the tested path
 * is the authenticated one. It reaches the daemons in their environment, not on their command line.
 */
export const KIT_JOIN_SECRET = randomBytes(24).toString('base64url');

/** The headers of a call with a member's credential (the join key): a worker's sandbox list, a data plane's routing view, any internal call to a control plane. */
export function memberHeaders(secret: string = KIT_JOIN_SECRET): Record<string, string> {
  return { authorization: bearer(deriveJoinKey(secret)) };
}

const ENV_PREFIX = { controlplane: 'BATON_CONTROLPLANE_', dataplane: 'BATON_DATAPLANE_', worker: 'BATON_WORKER_' } as const;

/**
 * `wrap` runs the daemon through another command, e.g. `ip netns exec NS` (test/kit/netns.ts).
 * `joinSecret`: the daemon's (default KIT_JOIN_SECRET); `false` starts it with none (open, loopback only).
 */
export function spawnDaemon(
  command: 'controlplane' | 'dataplane' | 'worker', args: readonly string[],
  options: { wrap?: (argv: readonly string[]) => string[]; joinSecret?: string | false } = {},
): DaemonProcess {
  // BATON_CPU_PROF_DIR=dir writes a V8 CPU profile of each daemon there when it exits (benchmarks).
  const profDir = process.env['BATON_CPU_PROF_DIR'];
  const prof = profDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${join(profDir, command)}`];
  // BATON_NODE_ARGS="…" adds Node options to every daemon (benchmarks: e.g. --expose-gc).
  const nodeArgs = (process.env['BATON_NODE_ARGS'] ?? '').split(' ').filter(Boolean);
  const argv = [process.execPath, ...prof, ...nodeArgs, ...daemonArgv(), command, ...args];
  const [file, ...rest] = options.wrap === undefined ? argv : options.wrap(argv);
  const env: NodeJS.ProcessEnv = { ...process.env };
  const secret = options.joinSecret ?? KIT_JOIN_SECRET;
  if (secret !== false) env[`${ENV_PREFIX[command]}JOIN_SECRET`] = secret;
  const child = spawn(file as string, rest, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  guardExit();
  running.add(child);
  child.once('exit', () => running.delete(child));
  const logs: Record<string, unknown>[] = [];
  const waiters: { match: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  const onLine = (text: string): void => {
    let line: Record<string, unknown>;
    try {
      line = JSON.parse(text) as Record<string, unknown>;
    } catch {
      line = { msg: text };
    }
    logs.push(line);
    if (process.env['BATON_TEST_VERBOSE'] === '1') process.stderr.write(`[${command}] ${text}\n`);
    for (const waiter of [...waiters]) {
      if (waiter.match(line)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(line);
      }
    }
  };
  createInterface({ input: child.stdout! }).on('line', onLine);
  createInterface({ input: child.stderr! }).on('line', onLine);
  return {
    child,
    logs,
    waitForLog(match, timeoutMs = 60_000) {
      const found = logs.find(match);
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolvePromise, reject) => {
        const timer = setTimeout(() => reject(new Error(`${command}: no matching log line within ${timeoutMs} ms; last lines: ${JSON.stringify(logs.slice(-5))}`)), timeoutMs);
        const onExit = () => reject(new Error(`${command} exited (code ${child.exitCode}); last lines: ${JSON.stringify(logs.slice(-8))}`));
        child.once('exit', onExit);
        waiters.push({ match, resolve: (l) => { clearTimeout(timer); child.off('exit', onExit); resolvePromise(l); } });
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

const urlOf = (line: Record<string, unknown>, key: string): string | undefined => (typeof line[key] === 'string' ? line[key] as string : undefined);

export interface Cluster {
  readonly dir: string;
  readonly cpUrl: string;
  dpUrl: string;
  /** The data plane's internal API (routing view, health). */
  dpInternalUrl: string;
  readonly workerUrl: string;
  /** With `auth: true`: the control plane's bootstrap admin token (from `<dir>/cp/admin-token`). */
  readonly adminToken: string | undefined;
  controlplane: DaemonProcess;
  dataplane: DaemonProcess;
  readonly worker: DaemonProcess;
  /** Starts the control plane again (same data dir and port) after it was stopped or killed. */
  restartControlPlane(): Promise<void>;
  /** Kills the data plane with SIGKILL and starts it again (same data dir, new ports: `dpUrl` changes). */
  restartDataplane(): Promise<void>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  readonly controlplane?: readonly string[];
  readonly dataplane?: readonly string[];
  readonly worker?: readonly string[];
  /** Management calls need tokens (`authMode: token`); the bootstrap admin token is `Cluster.adminToken`. */
  readonly auth?: boolean;
}

/** Fast test settings: short heartbeats and autoscaler buckets, so scale decisions come in ~100s of ms. */
const CP_TEST_FLAGS = ['--heartbeat-interval-ms', '200', '--autoscaler-bucket-ms', '100', '--autoscaler-tick-ms', '200', '--drain-timeout-ms', '10000'];
/**
 * Tests of other things call the management API without a token; the tests of API tokens start
 * their cluster with `auth: true` (the control plane's default) and use `adminToken`.
 */
const NO_AUTH_FLAGS = ['--auth-mode', 'none'];

export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const dir = await mkdtemp(join(tmpdir(), 'baton-e2e-'));
  // Searchable by others: the unprivileged user a root worker runs process sandboxes as reads their
  // code below it, and a container sandbox's mapped root (user namespace) must reach its image.
  await chmod(dir, 0o711);
  const cpArgs = ['--port', '0', '--data-dir', join(dir, 'cp'), ...CP_TEST_FLAGS, ...(options.auth === true ? [] : NO_AUTH_FLAGS), ...(options.controlplane ?? [])];
  let controlplane = spawnDaemon('controlplane', cpArgs);
  const started: DaemonProcess[] = [controlplane];
  try {
    return await connectCluster();
  } catch (err) {
    // A daemon that never came up must not keep the test process alive (its pipes would).
    await Promise.all(started.map((d) => d.stop('SIGKILL')));
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  async function connectCluster(): Promise<Cluster> {
    const cpLine = await controlplane.waitForLog((l) => urlOf(l, 'url') !== undefined && /listening|started/.test(String(l['msg'])));
    const cpUrl = urlOf(cpLine, 'url') as string;
    const cpPort = new URL(cpUrl).port;
    // A worker's SIGTERM first waits (up to shutdownGraceMs) for its sandboxes' in-flight invocations
    // to drain; a test cluster's stop gives it 3 s, well within the 10 s after which stop kills it
    // (a worker killed mid-drain leaves its sandboxes running, and the test's data dir goes).
    const worker = spawnDaemon('worker', ['--port', '0', '--data-dir', join(dir, 'worker'), '--control-plane-url', cpUrl, '--heartbeat-interval-ms', '200', '--shutdown-grace-ms', '3000', ...(options.worker ?? [])]);
    const dpArgs = ['--port', '0', '--internal-port', '0', '--data-dir', join(dir, 'dp'), '--control-plane-url', cpUrl, '--heartbeat-interval-ms', '200', '--demand-report-interval-ms', '100', ...(options.dataplane ?? [])];
    const dataplane = spawnDaemon('dataplane', dpArgs);
    started.push(worker, dataplane);
    const workerLine = await worker.waitForLog((l) => urlOf(l, 'url') !== undefined && /listening|started/.test(String(l['msg'])));
    const dpLine = await dataplane.waitForLog((l) => urlOf(l, 'proxyUrl') !== undefined && /listening|started/.test(String(l['msg'])));
    await controlplane.waitForLog((l) => l['msg'] === 'worker registered');
    await controlplane.waitForLog((l) => l['msg'] === 'data plane registered');
    const adminToken = options.auth === true ? (await readFile(join(dir, 'cp', 'admin-token'), 'utf8')).trim() : undefined;
    const cluster: Cluster = {
      dir, cpUrl, adminToken,
      dpUrl: urlOf(dpLine, 'proxyUrl') as string,
      dpInternalUrl: urlOf(dpLine, 'url') as string,
      workerUrl: urlOf(workerLine, 'url') as string,
      controlplane, dataplane, worker,
      async restartControlPlane() {
        await cluster.controlplane.stop('SIGKILL');
        const args = cpArgs.map((a) => a);
        args[1] = cpPort;
        cluster.controlplane = spawnDaemon('controlplane', args);
        await cluster.controlplane.waitForLog((l) => /listening|started/.test(String(l['msg'])));
      },
      async restartDataplane() {
        await cluster.dataplane.stop('SIGKILL');
        cluster.dataplane = spawnDaemon('dataplane', dpArgs);
        const line = await cluster.dataplane.waitForLog((l) => urlOf(l, 'proxyUrl') !== undefined && /listening|started/.test(String(l['msg'])));
        cluster.dpUrl = urlOf(line, 'proxyUrl') as string;
        cluster.dpInternalUrl = urlOf(line, 'url') as string;
      },
      async stop() {
        // The worker first, while the control plane and the data plane can still drain its
        // sandboxes (its SIGTERM leaves the cluster, then stops them), then the others.
        await worker.stop();
        await cluster.dataplane.stop();
        await cluster.controlplane.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
    return cluster;
  }
}

/** A worker started on its own (one more for a cluster, or one restarted with the same identity and data dir). */
export interface WorkerProcess {
  readonly daemon: DaemonProcess;
  readonly url: string;
  readonly workerId: string;
}

/** Starts a worker with a fixed id on `dataDir`, given the control planes' URLs; resolves once it has started. */
export async function startWorker(o: { workerId: string; dataDir: string; controlPlaneUrls: readonly string[]; args?: readonly string[] }): Promise<WorkerProcess> {
  const daemon = spawnDaemon('worker', ['--port', '0', '--data-dir', o.dataDir, '--worker-id', o.workerId, '--control-plane-urls', JSON.stringify(o.controlPlaneUrls),
    '--heartbeat-interval-ms', '200', ...(o.args ?? [])]);
  try {
    const line = await daemon.waitForLog((l) => urlOf(l, 'url') !== undefined && l['msg'] === 'worker started');
    return { daemon, url: urlOf(line, 'url') as string, workerId: o.workerId };
  } catch (err) {
    await daemon.stop('SIGKILL');
    throw err;
  }
}

/**
 * A data plane with a fixed id and fixed ports (behind HAProxy they must stay the same across
 * restarts), given the control planes' URLs and a shutdown grace of 10 s; not waited for.
 */
export function spawnDataplane(o: { dataplaneId: string; controlPlaneUrls: readonly string[]; port: number; internalPort: number; dataDir?: string }): DaemonProcess {
  return spawnDaemon('dataplane', [
    '--port', String(o.port), '--internal-port', String(o.internalPort), '--dataplane-id', o.dataplaneId, '--control-plane-urls', JSON.stringify(o.controlPlaneUrls),
    '--heartbeat-interval-ms', '200', '--demand-report-interval-ms', '100', '--shutdown-grace-ms', '10000', ...(o.dataDir === undefined ? [] : ['--data-dir', o.dataDir]),
  ]);
}

/** Runs the `baton` CLI to completion; resolves with its exit code and output. */
export async function runCliProcess(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const [code] = await once(child, 'exit') as [number | null];
  return { code: code ?? -1, stdout, stderr };
}
