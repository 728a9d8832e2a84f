import { spawn, type ChildProcess } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { chmod, chown, copyFile, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { FailureReason, SandboxFunction, SandboxLogsResponse } from '../../api/worker.ts';
import type { CancelSignal } from '../../core/cancellation.ts';
import type { Clock } from '../../core/clock.ts';
import { createDeferred, type Deferred } from '../../core/deferred.ts';
import { BatonError } from '../../core/errors.ts';
import type { Logger } from '../../observability/logger.ts';
import { LogBuffer, lineSplitter } from '../process/log-buffer.ts';
import { probeTcp, waitForReadyLine } from '../process/readiness.ts';
import type { SandboxExit, SandboxRuntime, StartedSandbox } from '../runtime.ts';
import { SandboxCgroups } from './cgroups.ts';
import type { Exec } from './exec.ts';
import { ImageStore, type UnpackedImage } from './image-store.ts';
import type { LayerLimits } from './layer-extract.ts';
import { NetworkPool, type NetworkSlot } from './network-pool.ts';
import { buildOciConfig, DEFAULT_CONTAINER_PORT, resolveUser } from './oci-config.ts';

const RUNNER_PATH = fileURLToPath(new URL('../process/handler-runner.cjs', import.meta.url));

export interface ContainerRuntimeOptions {
  /** Holds `images/`, `containers/<id>/` (bundles), `crun/` (crun's state) and `runner/`. */
  readonly dataDir: string;
  /** Short per-worker tag in every host name the runtime makes (cgroups, namespaces, bridge, table). */
  readonly tag: string;
  /** The OCI runtime binary: `crun` (default) or `runc`. */
  readonly ociRuntime: string;
  readonly subnet: string;
  readonly netnsPoolSize: number;
  /** Whether `network: "egress"` sandboxes are offered (default true; see NetworkPool). */
  readonly egress?: boolean;
  /** uid/gid sandboxes run as when the image names no non-root user; never 0. */
  readonly uid: number;
  readonly gid: number;
  /** A user namespace per sandbox: `auto` (when usable, else off with a warning), `on` (required), `off` (default). */
  readonly userNamespace?: 'auto' | 'on' | 'off';
  /** The host id the container's 0 maps to in a user namespace (default 100000). */
  readonly idMapBase?: number;
  readonly imageLimits: LayerLimits;
  readonly readyTimeoutMs: number;
  readonly stopGraceMs: number;
  readonly logBufferLines: number;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly exec: Exec;
  /** `/proc/self/cgroup` of the worker whose sandboxes these are (default this process's): another's, to clean up after a dead worker. */
  readonly procSelfCgroup?: string;
}

interface ContainerSandbox {
  readonly sandboxId: string;
  readonly containerId: string;
  readonly fn: SandboxFunction;
  readonly child: ChildProcess;
  readonly logs: LogBuffer;
  readonly bundleDir: string;
  readonly slot: NetworkSlot;
  readonly exited: Deferred<SandboxExit>;
  /** Resolves once everything of the sandbox on the host is gone. */
  readonly cleaned: Deferred<void>;
  isReady: boolean;
  isStopping: boolean;
}

/**
 * The `container` runtime: each sandbox is an OCI container run by crun (`crun run`, foreground,
 * so its exit is this child's exit) from the function's image:
 *
 *   unpack   the image's layers into its shared read-only base (once per image digest)
 *   bundle   the sandbox's cgroups with its limits, and `config.json` (read-only root, tmpfs /tmp,
 *            Baton's runner at /baton, an unprivileged uid, no_new_privileges, a minimal
 *            capability set, seccomp, masked /proc paths; new pid, mount, ipc, uts and cgroup
 *            namespaces)
 *   network  a namespace from the pool (veth to the worker's bridge, an address, no route out)
 *   start    `crun run` spawned → alive
 *   ready    `ready` on fd 3 for handlers (crun passes it on with --preserve-fds), else TCP connects
 *
 * A container that exits on its own is reported with its code, signal, or `oom` when its memory
 * group counted an OOM kill. Everything it had — crun's state, cgroups, the namespace (back to the
 * pool), the bundle — goes with it; a restart after a crash removes what a previous run left.
 */
export class ContainerRuntime implements SandboxRuntime {
  readonly name = 'container' as const;
  readonly needsArtifact = true;
  readonly #o: ContainerRuntimeOptions;
  readonly #images: ImageStore;
  readonly #network: NetworkPool;
  readonly #cgroups: SandboxCgroups;
  readonly #sandboxes = new Map<string, ContainerSandbox>();
  readonly #exitListeners: ((exit: SandboxExit) => void)[] = [];
  readonly #stateRoot: string;
  readonly #bundleRoot: string;
  readonly #runnerDir: string;
  #idMap: { readonly hostId: number; readonly size: number } | undefined;

  constructor(options: ContainerRuntimeOptions) {
    this.#o = options;
    this.#images = new ImageStore({ dir: path.join(options.dataDir, 'images'), limits: options.imageLimits, clock: options.clock, logger: options.logger });
    this.#network = new NetworkPool({ tag: options.tag, subnet: options.subnet, size: options.netnsPoolSize, egress: options.egress ?? true, exec: options.exec, logger: options.logger });
    this.#cgroups = options.procSelfCgroup === undefined ? new SandboxCgroups(options.tag) : new SandboxCgroups(options.tag, options.procSelfCgroup);
    this.#stateRoot = path.join(options.dataDir, 'crun');
    this.#bundleRoot = path.join(options.dataDir, 'containers');
    this.#runnerDir = path.join(options.dataDir, 'runner');
  }

  /** For tests and diagnostics: the sandbox cgroups, network pool, crun state directory and the user namespace's id map (if any). */
  get host(): { readonly cgroups: SandboxCgroups; readonly network: NetworkPool; readonly stateRoot: string; readonly idMap: { readonly hostId: number; readonly size: number } | undefined } {
    return { cgroups: this.#cgroups, network: this.#network, stateRoot: this.#stateRoot, idMap: this.#idMap };
  }

  /** Prepares the host side (runner copy, image store, bridge, firewall, namespace pool). Call after `cleanupLeftovers`. */
  async start(): Promise<void> {
    await mkdir(this.#runnerDir, { recursive: true });
    await copyFile(RUNNER_PATH, path.join(this.#runnerDir, 'handler-runner.cjs'));
    await mkdir(this.#bundleRoot, { recursive: true });
    await mkdir(this.#stateRoot, { recursive: true });
    await this.#images.load();
    await this.#decideUserNamespace();
    await this.#network.start();
  }

  /**
   * In a user namespace, crun mounts the root and `/baton` as the container's root, which is an
   * unprivileged host id: every directory above them must let it through, or the start fails with
   * "make rootfs private: Permission denied". The runtime's own directory lets it through by group;
   * those above must be searchable by others (`o+x`).
   */
  async #decideUserNamespace(): Promise<void> {
    const mode = this.#o.userNamespace ?? 'off';
    if (mode === 'off') return;
    // The runtime's own directory is made reachable by the mapped ids below; the ones above it must be already.
    const dir = path.resolve(this.#o.dataDir);
    const why = await userNamespaceBlocker(path.dirname(dir));
    if (why === undefined) {
      const hostId = this.#o.idMapBase ?? 100_000;
      this.#idMap = { hostId, size: 65_536 };
      // Searchable by the sandboxes' mapped root (its group) and no one else: a process sandbox of
      // the same worker, an unprivileged host user, cannot enter it. Bundles and crun's state stay root's.
      await chown(dir, 0, hostId);
      await chmod(dir, 0o710);
      await chmod(this.#bundleRoot, 0o700);
      await chmod(this.#stateRoot, 0o700);
      this.#o.logger.info({ hostIds: `${hostId}-${hostId + 65_535}` }, 'container sandboxes run in user namespaces of their own (their ids 0-65535 are these host ids)');
      return;
    }
    if (mode === 'on') throw new BatonError('ERR_RUNTIME_UNAVAILABLE', `containerUserNamespace is on but ${why}`);
    this.#o.logger.warn({ reason: why }, `container sandboxes run without a user namespace (as host uid ${this.#o.uid}): ${why}`);
  }

  onExit(listener: (exit: SandboxExit) => void): void {
    this.#exitListeners.push(listener);
  }

  async create(sandboxId: string, fn: SandboxFunction, artifactDir: string, signal: CancelSignal): Promise<StartedSandbox> {
    if (this.#sandboxes.has(sandboxId)) throw startFailed(sandboxId, 'a sandbox with this id is already running', 'start-error');
    signal.throwIfAborted();
    const { clock } = this.#o;
    const t0 = clock.now();
    const image = await this.#images.ensure(artifactDir).catch((err: unknown) => {
      throw err instanceof BatonError ? err : startFailed(sandboxId, `unpacking the image failed: ${String(err)}`, 'start-error', err);
    });
    signal.throwIfAborted();
    const t1 = clock.now();
    const containerId = sandboxId.replace(/[^A-Za-z0-9_.-]/g, '_');
    const bundleDir = path.join(this.#bundleRoot, containerId);
    const port = image.config.exposedPorts[0] ?? DEFAULT_CONTAINER_PORT;
    let slot: NetworkSlot | undefined;
    try {
      await this.#cgroups.create(containerId, {
        memoryMiB: fn.resources.memoryMiB, cpuMilli: fn.resources.cpuMilli, maxPids: fn.resources.maxPids ?? 256,
      });
      const t2 = clock.now();
      slot = await this.#network.take(fn.network ?? 'none');
      const t3 = clock.now();
      await this.#writeBundle(bundleDir, containerId, fn, image, slot, port);
      const t4 = clock.now();
      const sandbox = await this.#spawn(sandboxId, containerId, fn, image, bundleDir, slot);
      const aliveAt = clock.now();
      try {
        await this.#waitReady(sandbox, port, signal);
      } catch (err) {
        await this.#stop(sandbox, 0);
        throw err;
      }
      sandbox.isReady = true;
      return {
        address: `${slot.address}:${port}`, ...(sandbox.child.pid === undefined ? {} : { pid: sandbox.child.pid }),
        unpackMs: t1 - t0, bundleMs: (t2 - t1) + (t4 - t3), networkMs: t3 - t2, startMs: aliveAt - t4, readyMs: clock.now() - aliveAt,
      };
    } catch (err) {
      if (!this.#sandboxes.has(sandboxId)) {
        // Never spawned: undo what was made for it.
        if (slot !== undefined) void this.#network.release(slot);
        await this.#cgroups.remove(containerId);
        await rm(bundleDir, { recursive: true, force: true });
      }
      throw err instanceof BatonError ? err : startFailed(sandboxId, String(err), 'start-error', err);
    } finally {
      // Refilling spawns `ip`, which blocks the event loop for a few ms: in a later turn, after the
      // worker's ready event (flushed on the next turn) has left, not on the cold start's path.
      this.#o.clock.setTimeout(() => this.#network.refill(), 0);
    }
  }

  async #writeBundle(bundleDir: string, containerId: string, fn: SandboxFunction, image: UnpackedImage, slot: NetworkSlot, port: number): Promise<void> {
    const passwd = image.config.user !== '' && !/^\d+(:\d+)?$/.test(image.config.user)
      ? await readFile(path.join(image.rootfs, 'etc', 'passwd'), 'utf8').catch(() => undefined) : undefined;
    const user = resolveUser(image.config.user, passwd, { uid: this.#o.uid, gid: this.#o.gid });
    const config = buildOciConfig(image.config, fn, {
      sandboxId: containerId, rootfs: image.rootfs, uid: user.uid, gid: user.gid, port, netnsPath: slot.path,
      cgroupsPath: this.#cgroups.crunPath(containerId), runnerDir: this.#runnerDir,
      tmpMiB: fn.resources.diskMiB ?? fn.resources.memoryMiB, idMap: this.#idMap,
    });
    await mkdir(bundleDir, { recursive: true });
    await writeFile(path.join(bundleDir, 'config.json'), JSON.stringify(config));
  }

  async #spawn(sandboxId: string, containerId: string, fn: SandboxFunction, image: UnpackedImage, bundleDir: string, slot: NetworkSlot): Promise<ContainerSandbox> {
    // Handlers (the spec's, or a handler image's) run Baton's runner, which says `ready` on fd 3.
    const hasReadyPipe = fn.command === undefined && (fn.handler !== undefined || image.config.env.some((e) => e.startsWith('BATON_HANDLER=')));
    const child = spawn(this.#o.ociRuntime, [
      '--root', this.#stateRoot, 'run', '--bundle', bundleDir, '--no-new-keyring', ...(hasReadyPipe ? ['--preserve-fds', '1'] : []), containerId,
    ], {
      env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' },
      stdio: hasReadyPipe ? ['ignore', 'pipe', 'pipe', 'pipe'] : ['ignore', 'pipe', 'pipe'],
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (err) => reject(startFailed(sandboxId, `spawning ${this.#o.ociRuntime} failed: ${err.message}`, 'start-error', err)));
    });
    const sandbox: ContainerSandbox = {
      sandboxId, containerId, fn, child, bundleDir, slot, logs: new LogBuffer(this.#o.logBufferLines),
      exited: createDeferred<SandboxExit>(), cleaned: createDeferred<void>(), isReady: false, isStopping: false,
    };
    this.#sandboxes.set(sandboxId, sandbox);
    this.#capture(sandbox, 'stdout', child.stdout);
    this.#capture(sandbox, 'stderr', child.stderr);
    child.on('error', () => undefined);
    child.once('exit', (code, sig) => void this.#onChildExit(sandbox, code, sig));
    return sandbox;
  }

  #capture(sandbox: ContainerSandbox, stream: 'stdout' | 'stderr', pipe: Readable | null): void {
    if (pipe === null) return;
    const splitter = lineSplitter((line) => sandbox.logs.push(stream, line));
    pipe.on('data', (chunk: Buffer) => splitter.write(chunk));
    pipe.on('end', () => splitter.end());
    pipe.on('error', () => undefined);
  }

  #waitReady(sandbox: ContainerSandbox, port: number, signal: CancelSignal): Promise<void> {
    const { clock, readyTimeoutMs } = this.#o;
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
      if (readyPipe) {
        readyPipe.on('error', () => undefined);
        cleanups.push(waitForReadyLine(readyPipe, () => settle()));
      } else {
        cleanups.push(probeTcp(sandbox.slot.address, port, clock, () => settle()));
      }
      const timer = clock.setTimeout(() => settle(startFailed(sandbox.sandboxId, `not ready within ${readyTimeoutMs} ms${lastErrors(sandbox)}`, 'start-timeout')), readyTimeoutMs);
      cleanups.push(() => timer.cancel());
      const onAbort = (): void => settle(startFailed(sandbox.sandboxId, 'creation was cancelled', 'start-error'));
      signal.addEventListener('abort', onAbort, { once: true });
      cleanups.push(() => signal.removeEventListener('abort', onAbort));
      void sandbox.exited.promise.then((exit) => {
        settle(startFailed(sandbox.sandboxId, `exited before becoming ready (${describeExit(exit)})${lastErrors(sandbox)}`, exit.reason ?? 'exit'));
      });
      if (signal.aborted) onAbort();
    });
  }

  async #onChildExit(sandbox: ContainerSandbox, code: number | null, sig: NodeJS.Signals | null): Promise<void> {
    const exit = await this.#describeExit(sandbox, code, sig);
    await this.#cleanup(sandbox);
    sandbox.exited.resolve(exit);
    sandbox.cleaned.resolve();
    if (sandbox.isStopping || !sandbox.isReady) return;
    this.#o.logger.warn({ fn: sandbox.fn.name, ...exit }, 'sandbox exited');
    for (const listener of this.#exitListeners) listener(exit);
  }

  /** crun exits with the container's code, or 128 + n when it was killed by signal n. */
  async #describeExit(sandbox: ContainerSandbox, code: number | null, sig: NodeJS.Signals | null): Promise<SandboxExit> {
    const signalName = sig ?? (code !== null && code > 128 ? signalNameOf(code - 128) : null);
    const isOom = signalName === 'SIGKILL' && await this.#cgroups.reachedMemoryLimit(sandbox.containerId);
    const reason: FailureReason = isOom ? 'oom' : signalName !== null ? 'signal' : 'exit';
    return { sandboxId: sandbox.sandboxId, exitCode: signalName === null ? code : null, signal: signalName, reason };
  }

  /** Whatever the container left: crun's state, its cgroups, the namespace (back to the pool), the bundle. */
  async #cleanup(sandbox: ContainerSandbox): Promise<void> {
    await this.#o.exec(this.#o.ociRuntime, ['--root', this.#stateRoot, 'delete', '--force', sandbox.containerId]).catch(() => undefined);
    await this.#cgroups.remove(sandbox.containerId);
    void this.#network.release(sandbox.slot);
    await rm(sandbox.bundleDir, { recursive: true, force: true });
    if (this.#sandboxes.get(sandbox.sandboxId) === sandbox) this.#sandboxes.delete(sandbox.sandboxId);
  }

  async delete(sandboxId: string): Promise<void> {
    const sandbox = this.#sandboxes.get(sandboxId);
    if (sandbox === undefined) return;
    await this.#stop(sandbox, this.#o.stopGraceMs);
  }

  /** SIGTERM to the container (its init), SIGKILL after `graceMs` (at once when 0); resolves once all is cleaned up. */
  async #stop(sandbox: ContainerSandbox, graceMs: number): Promise<void> {
    sandbox.isStopping = true;
    await this.#kill(sandbox, graceMs === 0 ? 'KILL' : 'TERM');
    const timer = graceMs === 0 ? undefined : this.#o.clock.setTimeout(() => void this.#kill(sandbox, 'KILL'), graceMs);
    await sandbox.cleaned.promise;
    timer?.cancel();
  }

  async #kill(sandbox: ContainerSandbox, sig: 'TERM' | 'KILL'): Promise<void> {
    await this.#o.exec(this.#o.ociRuntime, ['--root', this.#stateRoot, 'kill', sandbox.containerId, sig]).catch(() => {
      // Not created yet (crun still starting) or already gone: stop crun itself.
      if (sig === 'KILL') sandbox.child.kill('SIGKILL');
    });
  }

  logs(sandboxId: string, tail: number): SandboxLogsResponse | undefined {
    const sandbox = this.#sandboxes.get(sandboxId);
    if (sandbox === undefined) return undefined;
    return { sandboxId, lines: sandbox.logs.tail(tail), dropped: sandbox.logs.dropped };
  }

  /** Containers in crun's state, then cgroups, namespaces, bridge, table and bundles a previous run left. */
  async cleanupLeftovers(): Promise<number> {
    const listed = await this.#o.exec(this.#o.ociRuntime, ['--root', this.#stateRoot, 'list', '--quiet']).catch(() => '');
    const ids = listed.split('\n').map((line) => line.trim()).filter((line) => line !== '');
    for (const id of ids) {
      await this.#o.exec(this.#o.ociRuntime, ['--root', this.#stateRoot, 'kill', id, 'KILL']).catch(() => undefined);
      await this.#o.exec(this.#o.ociRuntime, ['--root', this.#stateRoot, 'delete', '--force', id]).catch(() => undefined);
      this.#o.logger.info({ container: id }, 'stopped a container left by a previous run');
    }
    await this.#cgroups.removeAll();
    await this.#network.cleanupLeftovers();
    await rm(this.#bundleRoot, { recursive: true, force: true });
    return ids.length;
  }

  /**
   * Everything a dead worker of this tag left (this runtime made for its directory, tag and
   * cgroups, never started): its containers (through its crun state, and any process still in its
   * sandbox cgroups when that state is gone), cgroups, namespaces, veths, bridge, table, bundles.
   * Returns what there was.
   */
  async cleanupDeadWorker(): Promise<{ containers: number; cgroups: number; netns: number }> {
    const cgroups = (await this.#cgroups.list()).length;
    const netns = (await this.#network.listNamespaces()).length;
    const containers = await this.cleanupLeftovers();
    const stuck = await this.#cgroups.list();
    for (const id of stuck) {
      // Killed processes leave their groups once reaped: up to ~1 s.
      for (let round = 0; round < 50 && await this.#cgroups.killProcesses(id) > 0; round++) {
        await new Promise<void>((resolve) => this.#o.clock.setTimeout(resolve, 20));
      }
    }
    if (stuck.length > 0) await this.#cgroups.removeAll();
    return { containers, cgroups, netns };
  }

  async close(options: { keepSandboxes?: boolean } = {}): Promise<void> {
    const sandboxes = [...this.#sandboxes.values()];
    if (options.keepSandboxes === true) {
      // A crash stand-in: leave containers, cgroups, namespaces and bridge for the next run to find.
      for (const sandbox of sandboxes) {
        sandbox.isStopping = true;
        sandbox.child.removeAllListeners('exit');
        sandbox.child.unref();
        for (const pipe of sandbox.child.stdio) pipe?.destroy();
      }
      this.#sandboxes.clear();
      return;
    }
    await Promise.all(sandboxes.map((sandbox) => this.#stop(sandbox, this.#o.stopGraceMs)));
    await this.#network.close();
    await this.#cgroups.removeAll();
  }
}

function signalNameOf(n: number): NodeJS.Signals | null {
  for (const [name, value] of Object.entries(osConstants.signals)) if (value === n) return name as NodeJS.Signals;
  return null;
}

function startFailed(sandboxId: string, why: string, reason: FailureReason, cause?: unknown): BatonError {
  return new BatonError('ERR_SANDBOX_START_FAILED', `sandbox ${sandboxId}: ${why}`, { details: { reason }, ...(cause === undefined ? {} : { cause }) });
}

function describeExit(exit: SandboxExit): string {
  if (exit.reason === 'oom') return 'killed for passing its memory limit (oom)';
  return exit.signal !== null ? `signal ${exit.signal}` : `exit code ${exit.exitCode}`;
}

function lastErrors(sandbox: ContainerSandbox): string {
  const lines = sandbox.logs.tail(20).filter((l) => l.stream === 'stderr').slice(-3).map((l) => l.line);
  return lines.length === 0 ? '' : `; stderr: ${lines.join(' | ')}`;
}

const MAX_USER_NAMESPACES = '/proc/sys/user/max_user_namespaces';

/** Why sandboxes under `dir` cannot have user namespaces here (with the fix), or undefined when they can. */
export async function userNamespaceBlocker(dir: string): Promise<string | undefined> {
  const max = Number((await readFile(MAX_USER_NAMESPACES, 'utf8').catch(() => '0')).trim());
  if (!(max > 0)) return `the kernel offers no user namespaces (${MAX_USER_NAMESPACES} is 0 or missing; 'sysctl -w user.max_user_namespaces=15000')`;
  for (let current = dir; ; current = path.dirname(current)) {
    const info = await stat(current).catch(() => undefined);
    if (info !== undefined && (info.mode & 0o001) === 0) {
      return `${current} is not searchable by others (mode ${(info.mode & 0o777).toString(8)}), so a sandbox's mapped root cannot reach its image; 'chmod o+x ${current}' or put the worker's dataDir elsewhere`;
    }
    if (path.dirname(current) === current) return undefined;
  }
}
