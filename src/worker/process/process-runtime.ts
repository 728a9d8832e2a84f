import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { FailureReason, SandboxFunction, SandboxLogsResponse } from '../../api/worker.ts';
import type { CancelSignal } from '../../core/cancellation.ts';
import type { Clock } from '../../core/clock.ts';
import { createDeferred, type Deferred } from '../../core/deferred.ts';
import { BatonError } from '../../core/errors.ts';
import type { Logger } from '../../observability/logger.ts';
import type { SandboxExit, SandboxRuntime, StartedSandbox } from '../runtime.ts';
import { LogBuffer, lineSplitter } from './log-buffer.ts';
import { processStartTime } from './proc-stat.ts';
import { probeTcp, waitForReadyLine } from './readiness.ts';
import { SandboxStateFile } from './state-file.ts';
import { RuntimeApiServer } from './lambda-runtime-api.ts';
import { wallTimeMs } from '../../core/clock.ts';
import type { SandboxCgroups } from '../container/cgroups.ts';

/** Baton's handler runner, which handler functions run under. */
export const RUNNER_PATH = fileURLToPath(new URL('./handler-runner.cjs', import.meta.url));
const SANDBOX_PATH = '/usr/local/bin:/usr/bin:/bin';

export interface ProcessRuntimeOptions {
  /** Holds `sandboxes.json` and `sandboxes/<id>/` (each sandbox's writable HOME and TMPDIR). */
  readonly dataDir: string;
  /** Interface sandboxes listen on and the host part of their address. */
  readonly sandboxHost: string;
  readonly readyTimeoutMs: number;
  readonly stopGraceMs: number;
  readonly logBufferLines: number;
  readonly clock: Clock;
  readonly logger: Logger;
  /**
   * Cgroups for the sandboxes' limits (memory and pids hard, CPU as a weight), when the worker can
   * make them (root); absent, sandboxes run with none and `resources` counts for placement only.
   */
  readonly cgroups?: SandboxCgroups;
  /**
   * The unprivileged user sandboxes run as (a worker running as root gives one); absent, they run
   * as the worker's own user. Their HOME and TMPDIR are made theirs (mode 0700).
   */
  readonly user?: SandboxUser;
  /** The handler runner to start (default RUNNER_PATH): a copy the sandbox user can read when Baton's own files are out of its reach. */
  readonly runnerPath?: string;
}

/** Who a sandbox runs as, and the `setpriv` (util-linux) that drops to it after joining a cgroup. */
export interface SandboxUser {
  readonly uid: number;
  readonly gid: number;
  /** Path of `setpriv`; needed with cgroups, where a root shell joins the group before it drops privileges. */
  readonly setpriv?: string;
}

interface ProcessSandbox {
  readonly sandboxId: string;
  readonly fn: SandboxFunction;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly logs: LogBuffer;
  readonly scratchDir: string;
  /** Its cgroup's name (under the worker's `baton-<tag>`), when limits are enforced. */
  readonly cgroup: string | undefined;
  readonly exited: Deferred<SandboxExit>;
  /** The Lambda Runtime API served beside a `lambdaRuntimeApi` command function. */
  readonly runtimeApi: RuntimeApiServer | undefined;
  isReady: boolean;
  isStopping: boolean;
}

/**
 * The `process` runtime: each sandbox is an OS process in its own process group (killed as a
 * group), started in its unpacked artifact directory with a clean, explicit environment — never
 * the daemon's own (NODE_EXTRA_CA_CERTS alone costs ~40 ms per Node start, and the daemon's
 * variables are none of the function's business).
 *
 * - handler functions run Baton's runner (`handler-runner.cjs`) under this Node binary; the runner
 *   writes `ready` on fd 3 once listening, so readiness costs no polling;
 * - command functions run `command[0]` (from the artifact when it is there, else from PATH) and
 *   are probed with TCP connects.
 *
 * With `cgroups`, each sandbox gets a group of its own with its memory (no swap) and pids limits
 * and a CPU weight from `cpuMilli`; the program is started through `/bin/sh`, which writes its own
 * pid into the group and then execs it (same pid), so that the program and all it starts are inside
 * the limits from their first instruction. An OOM kill is reported as `oom`.
 */
export class ProcessRuntime implements SandboxRuntime {
  readonly name = 'process' as const;
  readonly needsArtifact = true;
  readonly #options: ProcessRuntimeOptions;
  readonly #sandboxes = new Map<string, ProcessSandbox>();
  readonly #exitListeners: ((exit: SandboxExit) => void)[] = [];
  readonly #stateFile: SandboxStateFile;
  readonly #scratchRoot: string;
  /** Cgroup removals under way (awaited by `close`). */
  readonly #removals = new Set<Promise<void>>();

  constructor(options: ProcessRuntimeOptions) {
    this.#options = options;
    this.#stateFile = new SandboxStateFile(path.join(options.dataDir, 'sandboxes.json'));
    this.#scratchRoot = path.join(options.dataDir, 'sandboxes');
  }

  onExit(listener: (exit: SandboxExit) => void): void {
    this.#exitListeners.push(listener);
  }

  async create(sandboxId: string, fn: SandboxFunction, artifactDir: string, signal: CancelSignal): Promise<StartedSandbox> {
    if (this.#sandboxes.has(sandboxId)) throw startFailed(sandboxId, 'a sandbox with this id is already running');
    signal.throwIfAborted();
    const { clock, sandboxHost } = this.#options;
    const scratchDir = path.join(this.#scratchRoot, sandboxId);
    await mkdir(path.join(scratchDir, 'tmp'), { recursive: true, mode: 0o700 });
    const { user } = this.#options;
    if (user !== undefined) {
      // HOME and TMPDIR are the sandbox user's, and nobody else's.
      for (const dir of [scratchDir, path.join(scratchDir, 'tmp')]) {
        await chown(dir, user.uid, user.gid);
        await chmod(dir, 0o700);
      }
    }
    const port = await pickFreePort(sandboxHost);
    const runtimeApi = fn.lambdaRuntimeApi === true
      ? new RuntimeApiServer({ host: sandboxHost, functionName: fn.name, timeoutMs: fn.timeoutMs, wallNow: wallTimeMs })
      : undefined;
    const runtimeApiAddress = await runtimeApi?.listen();
    const cgroup = this.#options.cgroups === undefined ? undefined : cgroupName(sandboxId);
    const spawnedAt = clock.now();
    const sandbox = await this.#spawn(sandboxId, fn, artifactDir, scratchDir, port, runtimeApi, runtimeApiAddress, cgroup).catch(async (err: unknown) => {
      runtimeApi?.close();
      await rm(scratchDir, { recursive: true, force: true });
      if (cgroup !== undefined) await this.#options.cgroups?.remove(cgroup);
      throw err;
    });
    const aliveAt = clock.now();
    try {
      await this.#waitReady(sandbox, port, signal);
    } catch (err) {
      await this.#stop(sandbox, 0);
      throw err;
    }
    sandbox.isReady = true;
    return { address: runtimeApiAddress ?? `${sandboxHost}:${port}`, pid: sandbox.pid, startMs: aliveAt - spawnedAt, readyMs: clock.now() - aliveAt };
  }

  async #spawn(
    sandboxId: string, fn: SandboxFunction, artifactDir: string, scratchDir: string, port: number,
    runtimeApi: RuntimeApiServer | undefined, runtimeApiAddress: string | undefined, cgroup: string | undefined,
  ): Promise<ProcessSandbox> {
    const env = sandboxEnv(sandboxId, fn, port, scratchDir, this.#options.sandboxHost);
    if (runtimeApiAddress !== undefined) Object.assign(env, lambdaEnv(fn, artifactDir, runtimeApiAddress));
    const [program, programArgs, hasReadyPipe] = fn.handler !== undefined
      ? [process.execPath, [this.#options.runnerPath ?? RUNNER_PATH], true] as const
      : [resolveCommand(fn.command ?? [], artifactDir), (fn.command ?? []).slice(1), false] as const;
    let file: string = program;
    let args: readonly string[] = programArgs;
    const { cgroups, user } = this.#options;
    let asUser: { uid: number; gid: number } | undefined = user === undefined ? undefined : { uid: user.uid, gid: user.gid };
    if (cgroup !== undefined && cgroups !== undefined) {
      await cgroups.create(cgroup, { memoryMiB: fn.resources.memoryMiB, cpuMilli: fn.resources.cpuMilli, maxPids: fn.resources.maxPids ?? 256, cpu: 'weight' });
      // Only root may move a process into the group: the shell joins as root, then drops to the user.
      [file, args] = joinGroupThenExec(await cgroups.processGroup(cgroup), program, programArgs, user);
      asUser = undefined;
    }
    const child = spawn(file, args, {
      cwd: artifactDir, env, detached: true, ...asUser,
      stdio: hasReadyPipe ? ['ignore', 'pipe', 'pipe', 'pipe'] : ['ignore', 'pipe', 'pipe'],
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (err) => reject(startFailed(sandboxId, `spawning ${file} failed: ${err.message}`, err)));
    });
    const pid = child.pid as number;
    const sandbox: ProcessSandbox = {
      sandboxId, fn, child, pid, scratchDir, cgroup, logs: new LogBuffer(this.#options.logBufferLines),
      exited: createDeferred<SandboxExit>(), runtimeApi, isReady: false, isStopping: false,
    };
    this.#sandboxes.set(sandboxId, sandbox);
    this.#capture(sandbox, 'stdout', child.stdout);
    this.#capture(sandbox, 'stderr', child.stderr);
    child.on('error', () => undefined);
    child.once('exit', (exitCode, sig) => this.#onChildExit(sandbox, exitCode, sig));
    void processStartTime(pid).then((startTime) => {
      if (startTime !== undefined && this.#sandboxes.get(sandboxId) === sandbox) this.#stateFile.set({ sandboxId, pid, startTime });
    });
    return sandbox;
  }

  #capture(sandbox: ProcessSandbox, stream: 'stdout' | 'stderr', pipe: Readable | null): void {
    if (pipe === null) return;
    const splitter = lineSplitter((line) => sandbox.logs.push(stream, line));
    pipe.on('data', (chunk: Buffer) => splitter.write(chunk));
    pipe.on('end', () => splitter.end());
    pipe.on('error', () => undefined);
  }

  /** Resolves when ready; rejects (ERR_SANDBOX_START_FAILED) on exit, timeout or abort. */
  #waitReady(sandbox: ProcessSandbox, port: number, signal: CancelSignal): Promise<void> {
    const { clock, readyTimeoutMs, sandboxHost } = this.#options;
    return new Promise<void>((resolve, reject) => {
      const cleanups: (() => void)[] = [];
      let isSettled = false;
      const settle = (err?: BatonError): void => {
        if (isSettled) return;
        isSettled = true;
        for (const cleanup of cleanups) cleanup();
        if (err === undefined) resolve();
        else reject(err);
      };
      const readyPipe = sandbox.child.stdio[3] as Readable | null | undefined;
      if (sandbox.runtimeApi !== undefined) {
        // A custom runtime is ready when it first asks for an invocation; an init error fails the start.
        sandbox.runtimeApi.ready.then(() => settle(), (err: Error) => settle(startFailed(sandbox.sandboxId, err.message)));
      } else if (readyPipe) {
        readyPipe.on('error', () => undefined);
        cleanups.push(waitForReadyLine(readyPipe, () => settle()));
      } else {
        cleanups.push(probeTcp(sandboxHost, port, clock, () => settle()));
      }
      const timer = clock.setTimeout(() => settle(startFailed(sandbox.sandboxId, `not ready within ${readyTimeoutMs} ms${lastErrors(sandbox)}`, undefined, 'start-timeout')), readyTimeoutMs);
      cleanups.push(() => timer.cancel());
      const onAbort = (): void => settle(startFailed(sandbox.sandboxId, 'creation was cancelled'));
      signal.addEventListener('abort', onAbort, { once: true });
      cleanups.push(() => signal.removeEventListener('abort', onAbort));
      void sandbox.exited.promise.then(async (exit) => {
        // The last stderr lines (often the reason) may still be in the pipe when `exit` fires.
        await outputDrained(sandbox.child, clock, 100);
        settle(startFailed(sandbox.sandboxId, `exited before becoming ready (${describeExit(exit)})${lastErrors(sandbox)}`, undefined, exit.signal !== null ? 'signal' : 'exit'));
      });
      if (signal.aborted) onAbort();
    });
  }

  #onChildExit(sandbox: ProcessSandbox, exitCode: number | null, sig: NodeJS.Signals | null): void {
    // Children the sandbox left behind in its group go with it.
    killGroup(sandbox.pid, 'SIGKILL');
    const { cgroups } = this.#options;
    if (sandbox.cgroup === undefined || cgroups === undefined || sig !== 'SIGKILL' || sandbox.isStopping) {
      this.#exited(sandbox, { sandboxId: sandbox.sandboxId, exitCode, signal: sig });
      return;
    }
    // A SIGKILL nobody here sent: its memory limit's, or someone else's.
    void cgroups.reachedMemoryLimit(sandbox.cgroup).catch(() => false).then((isOom) => {
      this.#exited(sandbox, { sandboxId: sandbox.sandboxId, exitCode, signal: sig, reason: isOom ? 'oom' : 'signal' });
    });
  }

  #exited(sandbox: ProcessSandbox, exit: SandboxExit): void {
    const { exitCode, signal: sig } = exit;
    sandbox.exited.resolve(exit);
    if (sandbox.isStopping || !sandbox.isReady) return;
    this.#forget(sandbox);
    this.#options.logger.warn({ sandboxId: sandbox.sandboxId, fn: sandbox.fn.name, exitCode, signal: sig }, 'sandbox exited');
    for (const listener of this.#exitListeners) listener(exit);
  }

  #forget(sandbox: ProcessSandbox): void {
    sandbox.runtimeApi?.close();
    if (this.#sandboxes.get(sandbox.sandboxId) === sandbox) this.#sandboxes.delete(sandbox.sandboxId);
    this.#stateFile.delete(sandbox.sandboxId);
    void rm(sandbox.scratchDir, { recursive: true, force: true }).catch(() => undefined);
    if (sandbox.cgroup !== undefined) {
      const removal = this.#removeCgroup(sandbox.cgroup).catch(() => undefined);
      this.#removals.add(removal);
      void removal.finally(() => this.#removals.delete(removal));
    }
  }

  /** Removes a sandbox's cgroup once the processes killed in it are gone (a few tries, 50 ms apart). */
  async #removeCgroup(cgroup: string): Promise<void> {
    const { cgroups, clock } = this.#options;
    if (cgroups === undefined) return;
    for (let attempt = 0; attempt < 40 && await cgroups.hasProcesses(cgroup); attempt++) {
      await new Promise<void>((resolve) => clock.setTimeout(resolve, 50));
    }
    await cgroups.remove(cgroup);
  }

  async delete(sandboxId: string): Promise<void> {
    const sandbox = this.#sandboxes.get(sandboxId);
    if (sandbox === undefined) return;
    await this.#stop(sandbox, this.#options.stopGraceMs);
  }

  /** SIGTERM to the group, SIGKILL after `graceMs` (at once when 0); resolves once it exited. */
  async #stop(sandbox: ProcessSandbox, graceMs: number): Promise<void> {
    sandbox.isStopping = true;
    killGroup(sandbox.pid, graceMs === 0 ? 'SIGKILL' : 'SIGTERM');
    const timer = graceMs === 0 ? undefined : this.#options.clock.setTimeout(() => killGroup(sandbox.pid, 'SIGKILL'), graceMs);
    await sandbox.exited.promise;
    timer?.cancel();
    this.#forget(sandbox);
  }

  logs(sandboxId: string, tail: number): SandboxLogsResponse | undefined {
    const sandbox = this.#sandboxes.get(sandboxId);
    if (sandbox === undefined) return undefined;
    return { sandboxId, lines: sandbox.logs.tail(tail), dropped: sandbox.logs.dropped };
  }

  async cleanupLeftovers(): Promise<number> {
    let stopped = 0;
    for (const entry of await this.#stateFile.read()) {
      // Only a process with the recorded start time is ours: a reused pid is someone else's.
      if (await processStartTime(entry.pid) !== entry.startTime) continue;
      killGroup(entry.pid, 'SIGKILL');
      stopped += 1;
      this.#options.logger.info({ sandboxId: entry.sandboxId, pid: entry.pid }, 'stopped a sandbox left by a previous run');
    }
    await rm(this.#scratchRoot, { recursive: true, force: true });
    await mkdir(this.#scratchRoot, { recursive: true });
    await this.#stateFile.flush();
    const { cgroups } = this.#options;
    if (cgroups !== undefined) for (const cgroup of await cgroups.list()) await this.#removeCgroup(cgroup);
    return stopped;
  }

  async close(options: { keepSandboxes?: boolean } = {}): Promise<void> {
    const sandboxes = [...this.#sandboxes.values()];
    if (options.keepSandboxes === true) {
      for (const sandbox of sandboxes) {
        sandbox.isStopping = true;
        sandbox.child.unref();
        for (const pipe of sandbox.child.stdio) pipe?.destroy();
      }
      this.#sandboxes.clear();
    } else {
      await Promise.all(sandboxes.map((sandbox) => this.#stop(sandbox, this.#options.stopGraceMs)));
      await Promise.all(this.#removals);
      await this.#options.cgroups?.removeAll();
    }
    await this.#stateFile.flush();
  }
}

/** A cgroup name for a sandbox id (a path component of safe characters). */
function cgroupName(sandboxId: string): string {
  return sandboxId.replace(/[^A-Za-z0-9_.-]/g, '_');
}

/**
 * `/bin/sh -c` that writes its own pid into each of the group's `cgroup.procs` files and then execs
 * the program in its place (same pid, same fds — the runner's ready pipe included, same environment).
 */
export function joinGroupThenExec(procsFiles: readonly string[], program: string, args: readonly string[], user?: SandboxUser): [string, string[]] {
  const joins = procsFiles.map((file) => `echo $$ > '${quote(file)}'`).join(' && ');
  // With a user, `setpriv` (util-linux) takes the shell's place first: uid, gid, no supplementary
  // groups, then it execs the program (same pid, same fds, same environment).
  const drop = user === undefined ? '' : `'${quote(user.setpriv ?? 'setpriv')}' --reuid=${user.uid} --regid=${user.gid} --clear-groups -- `;
  // The shell exports PWD, which is not the sandbox's environment: it goes before the exec.
  return ['/bin/sh', ['-c', `${joins} && unset PWD && exec ${drop}"$0" "$@"`, program, ...args]];
}

function quote(text: string): string {
  return text.replace(/'/g, "'\\''");
}

function sandboxEnv(sandboxId: string, fn: SandboxFunction, port: number, scratchDir: string, host: string): NodeJS.ProcessEnv {
  return {
    ...fn.env,
    PATH: SANDBOX_PATH,
    HOME: scratchDir,
    TMPDIR: path.join(scratchDir, 'tmp'),
    PORT: String(port),
    BATON_HOST: host,
    BATON_FUNCTION: fn.name,
    BATON_SANDBOX_ID: sandboxId,
    BATON_GENERATION: String(fn.generation),
    BATON_TIMEOUT_MS: String(fn.timeoutMs),
    BATON_MEMORY_MIB: String(fn.resources.memoryMiB),
    ...(fn.handler === undefined ? {} : { BATON_HANDLER: fn.handler }),
  };
}

/** What Lambda's runtime clients read (the Runtime API's address first of all). */
function lambdaEnv(fn: SandboxFunction, artifactDir: string, runtimeApiAddress: string): NodeJS.ProcessEnv {
  return {
    AWS_LAMBDA_RUNTIME_API: runtimeApiAddress,
    AWS_LAMBDA_FUNCTION_NAME: fn.name,
    AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(fn.resources.memoryMiB),
    AWS_REGION: 'local',
    AWS_DEFAULT_REGION: 'local',
    LAMBDA_TASK_ROOT: artifactDir,
    _HANDLER: fn.command?.[0] ?? '',
  };
}

/** A relative `command[0]` present in the artifact runs from there; otherwise spawn looks it up in PATH. */
function resolveCommand(command: readonly string[], artifactDir: string): string {
  const first = command[0];
  if (first === undefined || first.length === 0) throw new BatonError('ERR_SANDBOX_START_FAILED', 'function has neither handler nor command');
  if (path.isAbsolute(first)) return first;
  const local = path.resolve(artifactDir, first);
  return local.startsWith(artifactDir + path.sep) && existsSync(local) ? local : first;
}

/** A free port on `host`, found by binding port 0 and releasing it. */
function pickFreePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Resolves when the child's stdio has closed, or after `maxMs` (a grandchild may hold the pipes). */
function outputDrained(child: ChildProcess, clock: Clock, maxMs: number): Promise<void> {
  if (child.stdout === null || child.stdout.readableEnded) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = clock.setTimeout(resolve, maxMs);
    child.once('close', () => {
      timer.cancel();
      resolve();
    });
  });
}

function killGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    // Already gone.
  }
}

function startFailed(sandboxId: string, why: string, cause?: unknown, reason: FailureReason = 'start-error'): BatonError {
  return new BatonError('ERR_SANDBOX_START_FAILED', `sandbox ${sandboxId}: ${why}`, { details: { reason }, ...(cause === undefined ? {} : { cause }) });
}

function describeExit(exit: SandboxExit): string {
  return exit.signal !== null ? `signal ${exit.signal}` : `exit code ${exit.exitCode}`;
}

function lastErrors(sandbox: ProcessSandbox): string {
  const lines = sandbox.logs.tail(20).filter((l) => l.stream === 'stderr').slice(-3).map((l) => l.line);
  return lines.length === 0 ? '' : `; stderr: ${lines.join(' | ')}`;
}
