import type { SandboxFunction } from '../../api/worker.ts';
import type { ImageConfig } from './image-store.ts';

/**
 * The OCI runtime config (`config.json`) of one sandbox: pure, from the image config, the
 * function and what the worker assigned (user, network namespace, cgroup path, mounts).
 *
 * What the image says and what overrides it:
 *   process  spec `command` > spec `handler` (node + Baton's runner) > image Entrypoint + Cmd
 *   env      image Env, then the spec's `env`, then Baton's variables (PORT, BATON_*)
 *   cwd      image WorkingDir (default `/`)
 *   user     image User when numeric and not 0 (names resolved by the caller), else the worker's uid
 *   port     PORT = the image's first ExposedPorts entry, else 8080
 */
export interface SandboxAssignment {
  readonly sandboxId: string;
  readonly rootfs: string;
  readonly uid: number;
  readonly gid: number;
  readonly port: number;
  readonly netnsPath: string;
  readonly cgroupsPath: string;
  /** Host directory holding `handler-runner.cjs`, mounted read-only at `/baton`. */
  readonly runnerDir: string;
  /** tmpfs size of `/tmp`, MiB. */
  readonly tmpMiB: number;
  /** A user namespace of its own: the container's ids 0 to size − 1 are the host's from hostId on (`uid`/`gid` are then the container's). */
  readonly idMap?: { readonly hostId: number; readonly size: number } | undefined;
}

export const DEFAULT_CONTAINER_PORT = 8080;
const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** What a function needs and nothing more: no raw sockets, no mknod, no chroot, no setfcap, no audit. */
const CAPABILITIES = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID', 'CAP_SETUID', 'CAP_NET_BIND_SERVICE'];

const MASKED_PATHS = [
  '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap',
];
const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/**
 * Syscalls the common (Docker/Podman) default seccomp profile does not allow an unprivileged
 * container, denied here with EPERM; everything else is allowed. The same effect as that
 * profile's allow list for what a function may do, in a form short enough to read.
 */
export const DENIED_SYSCALLS = [
  'acct', 'add_key', 'bpf', 'clock_adjtime', 'clock_settime', 'create_module', 'delete_module', 'finit_module',
  'fsconfig', 'fsmount', 'fsopen', 'fspick', 'get_kernel_syms', 'get_mempolicy', 'init_module', 'ioperm', 'iopl',
  'kcmp', 'kexec_file_load', 'kexec_load', 'keyctl', 'lookup_dcookie', 'mbind', 'mount', 'mount_setattr', 'move_mount',
  'move_pages', 'name_to_handle_at', 'nfsservctl', 'open_by_handle_at', 'open_tree', 'perf_event_open', 'pivot_root',
  'process_vm_readv', 'process_vm_writev', 'ptrace', 'query_module', 'quotactl', 'quotactl_fd', 'reboot', 'request_key',
  'set_mempolicy', 'setns', 'settimeofday', 'stime', 'swapoff', 'swapon', 'sysfs', '_sysctl', 'syslog', 'umount', 'umount2',
  'unshare', 'uselib', 'userfaultfd', 'ustat', 'vm86', 'vm86old',
];

export function buildOciConfig(image: ImageConfig, fn: SandboxFunction, a: SandboxAssignment): Record<string, unknown> {
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: a.uid, gid: a.gid, additionalGids: [] },
      args: processArgs(image, fn),
      env: processEnv(image, fn, a),
      cwd: image.workingDir,
      capabilities: { bounding: CAPABILITIES, effective: [], inheritable: [], permitted: [], ambient: [] },
      noNewPrivileges: true,
    },
    root: { path: a.rootfs, readonly: true },
    hostname: a.sandboxId.slice(0, 63),
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777', `size=${a.tmpMiB}m`] },
      { destination: '/baton', type: 'bind', source: a.runnerDir, options: ['rbind', 'ro', 'nosuid', 'nodev'] },
    ],
    linux: {
      namespaces: [
        { type: 'pid' }, { type: 'mount' }, { type: 'ipc' }, { type: 'uts' }, { type: 'cgroup' },
        { type: 'network', path: a.netnsPath },
        ...(a.idMap === undefined ? [] : [{ type: 'user' }]),
      ],
      ...(a.idMap === undefined ? {} : {
        uidMappings: [{ containerID: 0, hostID: a.idMap.hostId, size: a.idMap.size }],
        gidMappings: [{ containerID: 0, hostID: a.idMap.hostId, size: a.idMap.size }],
      }),
      cgroupsPath: a.cgroupsPath,
      maskedPaths: MASKED_PATHS,
      readonlyPaths: READONLY_PATHS,
      seccomp: {
        defaultAction: 'SCMP_ACT_ALLOW',
        architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32', 'SCMP_ARCH_AARCH64'],
        syscalls: [{ names: DENIED_SYSCALLS, action: 'SCMP_ACT_ERRNO', errnoRet: 1 }],
      },
    },
  };
}

/** The command line: the spec's command, else the handler runner, else the image's Entrypoint + Cmd. */
export function processArgs(image: ImageConfig, fn: SandboxFunction): string[] {
  if (fn.command !== undefined && fn.command.length > 0) return [...fn.command];
  if (fn.handler !== undefined) return ['node', '/baton/handler-runner.cjs'];
  const args = [...image.entrypoint, ...image.cmd];
  return args.length > 0 ? args : ['/bin/sh'];
}

function processEnv(image: ImageConfig, fn: SandboxFunction, a: SandboxAssignment): string[] {
  const env = new Map<string, string>();
  env.set('PATH', DEFAULT_PATH.slice('PATH='.length));
  for (const entry of image.env) {
    const eq = entry.indexOf('=');
    if (eq > 0) env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  for (const [key, value] of Object.entries(fn.env)) env.set(key, value);
  const baton: Record<string, string> = {
    HOME: '/tmp', TMPDIR: '/tmp', PORT: String(a.port), BATON_HOST: '0.0.0.0', BATON_FUNCTION: fn.name,
    BATON_SANDBOX_ID: a.sandboxId, BATON_GENERATION: String(fn.generation), BATON_TIMEOUT_MS: String(fn.timeoutMs),
    BATON_MEMORY_MIB: String(fn.resources.memoryMiB),
  };
  for (const [key, value] of Object.entries(baton)) env.set(key, value);
  if (fn.handler !== undefined) env.set('BATON_HANDLER', fn.handler);
  return [...env].map(([key, value]) => `${key}=${value}`);
}

/**
 * The uid:gid a sandbox runs as: the image's `User` when it names (or maps through the image's
 * /etc/passwd to) a non-zero uid, else the worker's. Never 0.
 */
export function resolveUser(user: string, passwd: string | undefined, fallback: { uid: number; gid: number }): { uid: number; gid: number } {
  if (user === '') return fallback;
  const [name = '', group] = user.split(':');
  let uid = /^\d+$/.test(name) ? Number(name) : undefined;
  let gid = group !== undefined && /^\d+$/.test(group) ? Number(group) : undefined;
  if (uid === undefined && passwd !== undefined) {
    const line = passwd.split('\n').map((l) => l.split(':')).find((fields) => fields[0] === name);
    if (line !== undefined) {
      uid = Number(line[2]);
      gid ??= Number(line[3]);
    }
  }
  if (uid === undefined || !Number.isInteger(uid) || uid === 0) return fallback;
  return { uid, gid: gid === undefined || !Number.isInteger(gid) || gid === 0 ? uid : gid };
}
