import { existsSync, readFileSync } from 'node:fs';
import { BatonError } from '../../core/errors.ts';
import type { Exec } from './exec.ts';

/** One thing the container runtime needs that this machine lacks, and the exact command that fixes it. */
export interface MissingPrerequisite {
  readonly what: string;
  readonly fix: string;
}

/**
 * Checks what the container runtime needs before the worker registers: root, the OCI runtime,
 * `ip` and `nft`, and usable cgroups (v1: the memory, cpu, cpuacct and pids hierarchies, and — for
 * crun on a hybrid host — hugetlb mounted as v1 too; v2: the memory, cpu and pids controllers).
 * @throws BatonError ERR_PREREQUISITE_MISSING listing every missing piece with its fix
 */
export async function assertContainerPrerequisites(exec: Exec, ociRuntime: string): Promise<void> {
  const missing = await findMissingPrerequisites(exec, ociRuntime);
  if (missing.length === 0) return;
  throw new BatonError('ERR_PREREQUISITE_MISSING',
    `the container runtime cannot start: ${missing.map((m) => `${m.what} (fix: ${m.fix})`).join('; ')}`,
    { details: { missing } });
}

export async function findMissingPrerequisites(exec: Exec, ociRuntime: string): Promise<MissingPrerequisite[]> {
  const missing: MissingPrerequisite[] = [];
  if (process.getuid?.() !== 0) {
    missing.push({ what: 'the worker is not root (containers need namespaces, cgroups and veths)', fix: 'run the worker as root, e.g. sudo baton worker …' });
  }
  const tools: [string, string[], string][] = [
    [ociRuntime, ['--version'], `apt-get install -y ${ociRuntime === 'runc' ? 'runc' : 'crun'}`],
    ['ip', ['-V'], 'apt-get install -y iproute2'],
    ['nft', ['--version'], 'apt-get install -y nftables'],
  ];
  for (const [tool, args, fix] of tools) {
    if (!(await exec(tool, args).then(() => true, () => false))) missing.push({ what: `${tool} is not installed`, fix });
  }
  missing.push(...cgroupProblems(ociRuntime));
  return missing;
}

const V1_NEEDED = ['memory', 'cpu', 'cpuacct', 'pids'];

function cgroupProblems(ociRuntime: string): MissingPrerequisite[] {
  const mounts = cgroupMounts();
  if (mounts.v1.size === 0) {
    if (!mounts.hasV2) return [{ what: 'no cgroup hierarchy is mounted', fix: 'mount -t cgroup2 none /sys/fs/cgroup' }];
    const controllers = readText('/sys/fs/cgroup/cgroup.controllers').split(/\s+/);
    const lacking = ['memory', 'cpu', 'pids'].filter((c) => !controllers.includes(c));
    return lacking.length === 0 ? [] : [{
      what: `cgroup v2 controllers ${lacking.join(', ')} are not delegated`,
      fix: `echo "${lacking.map((c) => `+${c}`).join(' ')}" > /sys/fs/cgroup/cgroup.subtree_control (and in the worker's parent group)`,
    }];
  }
  const problems: MissingPrerequisite[] = [];
  const lacking = V1_NEEDED.filter((c) => !mounts.v1.has(c));
  if (lacking.length > 0) {
    problems.push({
      what: `cgroup v1 controllers ${lacking.join(', ')} are not mounted`,
      fix: lacking.map((c) => `mkdir -p /sys/fs/cgroup/${c} && mount -t cgroup -o ${c} cgroup /sys/fs/cgroup/${c}`).join(' && '),
    });
  }
  // crun refuses a hybrid host ("cgroups in hybrid mode not supported") while an enabled v1
  // controller, hugetlb on these machines, is not mounted as v1.
  if (ociRuntime !== 'runc' && kernelControllers().includes('hugetlb') && !mounts.v1.has('hugetlb')) {
    problems.push({
      what: 'the hugetlb cgroup controller is not mounted (crun: "cgroups in hybrid mode not supported")',
      fix: 'mkdir -p /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb',
    });
  }
  return problems;
}

/** The v1 controllers mounted (from /proc/self/mountinfo) and whether a v2 hierarchy is. */
function cgroupMounts(): { v1: Set<string>; hasV2: boolean } {
  const v1 = new Set<string>();
  let hasV2 = false;
  for (const line of readText('/proc/self/mountinfo').split('\n')) {
    const fields = line.split(' ');
    const sep = fields.indexOf('-');
    if (sep < 0) continue;
    const type = fields[sep + 1];
    if (type === 'cgroup2') hasV2 = true;
    if (type === 'cgroup') for (const option of (fields[sep + 3] ?? '').split(',')) v1.add(option);
  }
  return { v1, hasV2 };
}

/** Controllers the kernel has enabled (/proc/cgroups). */
function kernelControllers(): string[] {
  return readText('/proc/cgroups').split('\n').filter((l) => !l.startsWith('#'))
    .map((l) => l.split(/\s+/)).filter((f) => f[3] === '1').map((f) => f[0] ?? '');
}

function readText(file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8') : '';
}
