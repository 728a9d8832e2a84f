import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

const ROOT = '/sys/fs/cgroup';
const MIB = 1024 * 1024;
/** CFS period for CPU quotas: 100 ms, so 250 milli-CPU is a 25 ms quota per period. */
export const CPU_PERIOD_US = 100_000;
/** Controllers a sandbox cgroup is made in (v1), each beneath the worker's own cgroup of that controller. */
const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids'] as const;
type V1Controller = (typeof V1_CONTROLLERS)[number];

export interface SandboxLimits {
  readonly memoryMiB: number;
  readonly cpuMilli: number;
  readonly maxPids: number;
  /**
   * How `cpuMilli` is applied: `quota` (default; a hard CFS quota, what a container gets) or
   * `weight` (a share of the CPU relative to other groups, work-conserving: an idle machine lets
   * the sandbox use more — what the process runtime gives, so that a 100 milli-CPU Node function
   * does not take ten times as long to start).
   */
  readonly cpu?: 'quota' | 'weight';
}

/**
 * Sandbox cgroups on the hierarchy the machine has: cgroup v1 (each controller its own
 * hierarchy, as on hybrid machines) or v2 (one unified hierarchy). Every sandbox gets
 * `<worker's cgroup>/baton-<tag>/<sandboxId>` — in v1 once per controller, under the worker's own
 * cgroup *for that controller* as `/proc/self/cgroup` lists it — holding its limits; crun puts the
 * container one level lower (`…/<sandboxId>/c`) and removes only that, so the OOM-kill counter and
 * the CPU usage survive the container and can be read when it exits.
 *
 *   memoryMiB → memory.limit_in_bytes = memory.memsw.limit_in_bytes (no swap), v2 memory.max + memory.swap.max 0
 *   cpuMilli  → cpu.cfs_quota_us = cpuMilli × 100 (per 100 ms period), v2 cpu.max "<quota> 100000";
 *               or, as a weight, cpu.shares = cpuMilli × 1024 / 1000, v2 cpu.weight = cpuMilli / 10
 *   maxPids   → pids.max
 */
export class SandboxCgroups {
  readonly #isV2: boolean;
  /** v1: controller → the worker's group directory (absolute); v2: '' → the unified one. */
  readonly #bases: ReadonlyMap<string, string>;
  /** The path crun is given is relative to every hierarchy's root: the memory controller's (v1) or the unified one. */
  readonly #crunBase: string;

  constructor(tag: string, procSelfCgroup = readFileSync('/proc/self/cgroup', 'utf8')) {
    const lines = parseProcCgroup(procSelfCgroup);
    this.#isV2 = !existsSync(path.join(ROOT, 'memory', 'memory.limit_in_bytes'));
    const bases = new Map<string, string>();
    // crun takes one path, relative to the root of every hierarchy: the worker's memory group (v1)
    // or its unified group (v2). On v1 the other controllers' groups sit at the same path, which is
    // beneath the worker's own group wherever that is the hierarchy's root (as on hybrid hosts).
    const own = this.#isV2 ? lines.get('') ?? '/' : lines.get('memory') ?? '/';
    this.#crunBase = path.posix.join(own, `baton-${tag}`);
    if (this.#isV2) {
      bases.set('', path.join(ROOT, this.#crunBase));
    } else {
      // crun makes the container's group in every mounted hierarchy; cleanup looks in all of them.
      for (const name of hierarchies()) bases.set(name, path.join(ROOT, name, this.#crunBase));
      for (const controller of V1_CONTROLLERS) bases.set(controller, path.join(ROOT, controller, this.#crunBase));
    }
    this.#bases = bases;
  }

  get version(): 1 | 2 {
    return this.#isV2 ? 2 : 1;
  }

  /** crun's `cgroupsPath` for the sandbox's container (one level below the sandbox's own group). */
  crunPath(sandboxId: string): string {
    return path.posix.join(this.#crunBase, sandboxId, 'c');
  }

  /** Makes the sandbox's groups and writes its limits. */
  async create(sandboxId: string, limits: SandboxLimits): Promise<void> {
    const memory = String(limits.memoryMiB * MIB);
    const quota = String(Math.max(1000, Math.round(limits.cpuMilli * CPU_PERIOD_US / 1000)));
    if (this.#isV2) {
      const dir = path.join(this.#base(''), sandboxId);
      await enableV2Controllers(path.dirname(this.#base('')));
      await mkdir(dir, { recursive: true });
      await enableV2Controllers(this.#base(''));
      await enableV2Controllers(dir);
      await writeFile(path.join(dir, 'memory.max'), memory);
      await writeFile(path.join(dir, 'memory.swap.max'), '0').catch(() => undefined);
      if (limits.cpu === 'weight') await writeFile(path.join(dir, 'cpu.weight'), String(Math.min(10_000, Math.max(1, Math.round(limits.cpuMilli / 10)))));
      else await writeFile(path.join(dir, 'cpu.max'), `${quota} ${CPU_PERIOD_US}`);
      await writeFile(path.join(dir, 'pids.max'), String(limits.maxPids));
      return;
    }
    for (const controller of V1_CONTROLLERS) await mkdir(this.#dir(controller, sandboxId), { recursive: true });
    const mem = this.#dir('memory', sandboxId);
    await writeFile(path.join(mem, 'memory.limit_in_bytes'), memory);
    // memsw exists only with swap accounting; without it there is no swap to limit.
    await writeFile(path.join(mem, 'memory.memsw.limit_in_bytes'), memory).catch(() => undefined);
    await writeFile(path.join(mem, 'memory.swappiness'), '0').catch(() => undefined);
    const cpu = this.#dir('cpu', sandboxId);
    if (limits.cpu === 'weight') {
      await writeFile(path.join(cpu, 'cpu.shares'), String(Math.max(2, Math.round(limits.cpuMilli * 1024 / 1000))));
    } else {
      await writeFile(path.join(cpu, 'cpu.cfs_period_us'), String(CPU_PERIOD_US));
      await writeFile(path.join(cpu, 'cpu.cfs_quota_us'), quota);
    }
    await writeFile(path.join(this.#dir('pids', sandboxId), 'pids.max'), String(limits.maxPids));
  }

  /**
   * Makes the group a process joins (`<sandbox's group>/c`, as crun's container group) and returns
   * its `cgroup.procs` files — one per v1 controller, one on v2 — for a process to write its own
   * pid into before it execs the sandbox's program, so that nothing it starts escapes the limits.
   */
  async processGroup(sandboxId: string): Promise<string[]> {
    const dirs = this.#isV2 ? [path.join(this.#base(''), sandboxId, 'c')] : V1_CONTROLLERS.map((c) => path.join(this.#dir(c, sandboxId), 'c'));
    for (const dir of dirs) await mkdir(dir, { recursive: true });
    return dirs.map((dir) => path.join(dir, 'cgroup.procs'));
  }

  /** Whether any process is still in the sandbox's groups (a killed one leaves them only once it is reaped). */
  async hasProcesses(sandboxId: string): Promise<boolean> {
    const dir = this.#isV2 ? path.join(this.#base(''), sandboxId) : this.#dir('pids', sandboxId);
    const text = await readFile(path.join(dir, 'c', 'cgroup.procs'), 'utf8').catch(() => '');
    return text.trim() !== '';
  }

  /**
   * Whether the sandbox's memory limit killed it: v2 counts OOM kills in the group (hierarchically,
   * so the container's own group below it is included). v1 counts them only in the group of the
   * victim — the container's, which crun has removed by the time its exit is seen — so there an
   * OOM kill is read off the peak: a SIGKILLed sandbox whose usage reached its limit (within 1 MiB
   * or 1%) was killed by it.
   */
  async reachedMemoryLimit(sandboxId: string): Promise<boolean> {
    if (this.#isV2) {
      const text = await readFile(path.join(this.#base(''), sandboxId, 'memory.events'), 'utf8').catch(() => '');
      return Number(/^oom_kill (\d+)$/m.exec(text)?.[1] ?? 0) > 0;
    }
    const dir = this.#dir('memory', sandboxId);
    const read = (file: string): Promise<number> => readFile(path.join(dir, file), 'utf8').then(Number, () => Number.NaN);
    const [limit, peak, kills] = await Promise.all([
      read('memory.limit_in_bytes'), read('memory.max_usage_in_bytes'),
      readFile(path.join(dir, 'memory.oom_control'), 'utf8').then((t) => Number(/^oom_kill (\d+)$/m.exec(t)?.[1] ?? 0), () => 0),
    ]);
    return kills > 0 || (Number.isFinite(limit) && Number.isFinite(peak) && peak >= limit - Math.max(MIB, limit / 100));
  }

  /** CPU time the sandbox used, µs. */
  async cpuUsageUs(sandboxId: string): Promise<number> {
    if (this.#isV2) {
      const text = await readFile(path.join(this.#base(''), sandboxId, 'cpu.stat'), 'utf8');
      return Number(/^usage_usec (\d+)$/m.exec(text)?.[1] ?? 0);
    }
    return Math.round(Number(await readFile(path.join(this.#dir('cpuacct', sandboxId), 'cpuacct.usage'), 'utf8')) / 1000);
  }

  /** Directories of the sandbox's groups (one per v1 controller), for tests and diagnostics. */
  dirsOf(sandboxId: string): string[] {
    return [...this.#bases.values()].map((base) => path.join(base, sandboxId));
  }

  /** Removes the sandbox's groups (and a container group crun left); the processes must be gone. */
  async remove(sandboxId: string): Promise<void> {
    const dirs = this.dirsOf(sandboxId);
    for (const dir of dirs) await removeTree(dir);
  }

  /**
   * SIGKILLs every process in the sandbox's groups (its container's included): for a dead worker's
   * sandboxes whose crun state is gone. Returns how many there were (0: the groups are empty).
   */
  async killProcesses(sandboxId: string): Promise<number> {
    const pids = new Set<number>();
    for (const dir of this.dirsOf(sandboxId)) {
      for (const group of [dir, path.join(dir, 'c')]) {
        const text = await readFile(path.join(group, 'cgroup.procs'), 'utf8').catch(() => '');
        for (const line of text.split('\n')) if (/^\d+$/.test(line)) pids.add(Number(line));
      }
    }
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
    return pids.size;
  }

  /** Every sandbox id with a group here (what a previous run may have left). */
  async list(): Promise<string[]> {
    const ids = new Set<string>();
    for (const base of this.#bases.values()) {
      for (const entry of await readdir(base, { withFileTypes: true }).catch(() => [])) if (entry.isDirectory()) ids.add(entry.name);
    }
    return [...ids];
  }

  /** Removes the worker's `baton-<tag>` groups once they hold nothing. */
  async removeAll(): Promise<void> {
    for (const id of await this.list()) await this.remove(id);
    for (const base of this.#bases.values()) await rmdir(base).catch(() => undefined);
  }

  #base(controller: string): string {
    return this.#bases.get(controller) as string;
  }

  #dir(controller: V1Controller, sandboxId: string): string {
    return path.join(this.#base(controller), sandboxId);
  }
}

/** `/proc/self/cgroup` as controller → path ('' is the v2 hierarchy; `cpu,cpuacct` is split too). */
export function parseProcCgroup(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const match = /^\d+:([^:]*):(.*)$/.exec(line);
    if (match === null) continue;
    const [, controllers = '', cgPath = '/'] = match;
    out.set(controllers, cgPath);
    for (const controller of controllers.split(',')) out.set(controller, cgPath);
  }
  return out;
}

/** The hierarchies mounted under /sys/fs/cgroup on a v1 (hybrid) host (names as the directories are called). */
function hierarchies(): string[] {
  const names: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const fields = line.split(' ');
    const mountPoint = fields[4] ?? '';
    const sep = fields.indexOf('-');
    // The v2 hierarchy of a hybrid host (`unified`) too: crun makes the container's group there as well.
    if (sep > 0 && (fields[sep + 1] === 'cgroup' || fields[sep + 1] === 'cgroup2') && path.dirname(mountPoint) === ROOT) names.push(path.basename(mountPoint));
  }
  return names;
}

async function enableV2Controllers(dir: string): Promise<void> {
  await writeFile(path.join(dir, 'cgroup.subtree_control'), '+memory +cpu +pids').catch(() => undefined);
}

/** rmdir depth-first: cgroup directories hold only pseudo-files, removed with the directory. */
async function removeTree(dir: string): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => undefined);
  if (entries === undefined) return;
  for (const entry of entries) if (entry.isDirectory()) await removeTree(path.join(dir, entry.name));
  await rmdir(dir).catch(() => undefined);
}
