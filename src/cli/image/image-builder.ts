import { execFile } from 'node:child_process';
import { lstat, readdir, readFile, readlink, realpath } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { BatonError } from '../../core/errors.ts';
import { ociArchiveOf, tarOf, type OciImageConfig, type TarEntry } from '../../core/oci-archive.ts';

const run = promisify(execFile);

export const IMAGE_BASES = ['node', 'python', 'busybox'] as const;
export type ImageBase = (typeof IMAGE_BASES)[number];

export interface ImageBuildOptions {
  readonly dir: string;
  readonly base: ImageBase;
  /** `file.export`: a handler image (Node base only); the image runs Baton's handler runner. */
  readonly handler?: string;
  /** The command the image runs (its Cmd), e.g. `['python3', 'server.py']`. */
  readonly command?: readonly string[];
  /** Where the host's binaries are found (default: the usual paths, then PATH). */
  readonly binaries?: Partial<Record<ImageBase, string>>;
}

/** The runner the worker also mounts at `/baton/handler-runner.cjs`: the image runs on its own too. */
const RUNNER = fileURLToPath(new URL('../../worker/process/handler-runner.cjs', import.meta.url));
const PATH_ENV = 'PATH=/usr/local/bin:/usr/bin:/bin';
const PASSWD = 'root:x:0:0:root:/root:/bin/false\nnobody:x:65534:65534:nobody:/tmp:/bin/false\n';
const GROUP = 'root:x:0:\nnogroup:x:65534:\n';
/** Applets a busybox image links, so commands like `httpd -f -p 8080` or `sh -c` resolve by name. */
const BUSYBOX_LINKS = ['sh', 'ash', 'cat', 'echo', 'env', 'httpd', 'id', 'ls', 'nc', 'ps', 'sleep', 'wget', 'true', 'false', 'dd', 'head', 'mkdir', 'touch', 'yes', 'top'];

/**
 * Builds an OCI image archive (the OCI image layout in a gzipped tar) of a function folder, with
 * no registry: a minimal root filesystem from the host's own Node.js, Python or busybox binary
 * and the shared libraries `ldd` says it needs, the function's files under `/function`, and
 * Baton's handler runner under `/baton`. Two layers: the base, then the function's files.
 * @throws BatonError ERR_INVALID_SPEC (a missing binary, a handler on a non-Node base, neither
 *   handler nor command for a command base), ERR_INVALID_ARTIFACT (a special file in the folder)
 */
export async function buildImage(options: ImageBuildOptions): Promise<Buffer> {
  const config = imageConfigOf(options);
  const baseLayer = tarOf(await baseEntries(options.base, options.binaries?.[options.base]));
  const functionLayer = tarOf([{ type: 'dir', path: 'function/' }, ...await folderEntries(options.dir, 'function')]);
  return ociArchiveOf([baseLayer, functionLayer], config);
}

function imageConfigOf(options: ImageBuildOptions): OciImageConfig {
  const common = { Env: [PATH_ENV], WorkingDir: '/function', ExposedPorts: { '8080/tcp': {} } };
  if (options.handler !== undefined) {
    if (options.base !== 'node') throw spec('handler', 'a handler image needs --base node');
    return {
      ...common, Env: [PATH_ENV, `BATON_HANDLER=${options.handler}`],
      Cmd: ['/usr/local/bin/node', '/baton/handler-runner.cjs'], Labels: { 'dev.baton.handler': options.handler },
    };
  }
  if (options.command === undefined || options.command.length === 0) throw spec('command', 'give --handler FILE.EXPORT or --command "CMD ARGS"');
  return { ...common, Cmd: [...options.command] };
}

async function baseEntries(base: ImageBase, override: string | undefined): Promise<TarEntry[]> {
  const entries: TarEntry[] = [
    { type: 'dir', path: 'etc/' },
    { type: 'file', path: 'etc/passwd', data: PASSWD },
    { type: 'file', path: 'etc/group', data: GROUP },
    { type: 'dir', path: 'tmp/', mode: 0o1777 },
    { type: 'dir', path: 'baton/' },
    { type: 'file', path: 'baton/handler-runner.cjs', data: await readFile(RUNNER) },
  ];
  const dirs = new Set(['etc', 'tmp', 'baton']);
  const addFile = async (hostPath: string, imagePath: string, mode: number): Promise<void> => {
    for (const dir of parentsOf(imagePath)) {
      if (!dirs.has(dir)) {
        dirs.add(dir);
        entries.push({ type: 'dir', path: `${dir}/` });
      }
    }
    if (entries.some((e) => e.path === imagePath)) return;
    entries.push({ type: 'file', path: imagePath, data: await readFile(hostPath), mode });
  };
  const binary = override ?? await findBinary(base);
  const target = base === 'busybox' ? 'bin/busybox' : base === 'node' ? 'usr/local/bin/node' : 'usr/bin/python3';
  await addFile(binary, target, 0o755);
  for (const lib of await sharedLibraries(binary)) await addFile(lib, lib.slice(1), 0o755);
  if (base === 'busybox') {
    for (const name of BUSYBOX_LINKS) entries.push({ type: 'symlink', path: `bin/${name}`, target: 'busybox' });
  }
  if (base === 'python') await addPythonStdlib(binary, entries, dirs);
  return entries;
}

/** Python needs its standard library next to it: `sys.prefix/lib/pythonX.Y` (without tests and caches). */
async function addPythonStdlib(binary: string, entries: TarEntry[], dirs: Set<string>): Promise<void> {
  const { stdout } = await run(binary, ['-S', '-c', 'import sys, sysconfig; print(sysconfig.get_path("stdlib"))'], { timeout: 10_000 });
  const stdlib = stdout.trim();
  if (!path.isAbsolute(stdlib)) throw spec('base', `cannot find the standard library of ${binary}`);
  for (const dir of parentsOf(`${stdlib.slice(1)}/x`)) {
    if (!dirs.has(dir)) {
      dirs.add(dir);
      entries.push({ type: 'dir', path: `${dir}/` });
    }
  }
  entries.push(...await folderEntries(stdlib, stdlib.slice(1), (name) => name === '__pycache__' || name === 'test' || name === 'tests' || name === 'idlelib' || name === 'site-packages' || name === 'dist-packages'));
}

async function findBinary(base: ImageBase): Promise<string> {
  const candidates = base === 'node' ? [process.execPath, '/usr/bin/node', '/usr/local/bin/node']
    : base === 'python' ? ['/usr/bin/python3', '/usr/local/bin/python3'] : ['/bin/busybox', '/usr/bin/busybox'];
  for (const candidate of candidates) {
    const info = await lstat(candidate).catch(() => undefined);
    if (info !== undefined) return realpath(candidate);
  }
  const fix = base === 'busybox' ? 'apt-get install busybox-static' : base === 'python' ? 'apt-get install python3' : 'install Node.js';
  throw spec('base', `no ${base} binary on this machine (${candidates.join(', ')}); ${fix}`);
}

/** Absolute paths of the shared objects `ldd` lists for `binary` (none for a static one). */
async function sharedLibraries(binary: string): Promise<string[]> {
  const { stdout } = await run('ldd', [binary], { timeout: 10_000 }).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }));
  const libs: string[] = [];
  for (const line of stdout.split('\n')) {
    const match = /=>\s+(\/\S+)|^\s*(\/\S+)\s+\(/.exec(line);
    const lib = match?.[1] ?? match?.[2];
    if (lib !== undefined) libs.push(lib);
  }
  return libs;
}

/** The folder's files, directories and symlinks under `prefix`, sorted; special files are refused. */
async function folderEntries(root: string, prefix: string, skip: (name: string) => boolean = (name) => name === '.git'): Promise<TarEntry[]> {
  const out: TarEntry[] = [];
  const names = (await readdir(root)).sort();
  for (const name of names) {
    if (skip(name)) continue;
    const abs = path.join(root, name);
    const rel = `${prefix}/${name}`;
    const info = await lstat(abs);
    if (info.isDirectory()) {
      out.push({ type: 'dir', path: `${rel}/` }, ...await folderEntries(abs, rel, skip));
    } else if (info.isSymbolicLink()) {
      out.push({ type: 'symlink', path: rel, target: await readlink(abs) });
    } else if (info.isFile()) {
      out.push({ type: 'file', path: rel, data: await readFile(abs), mode: (info.mode & 0o111) === 0 ? 0o644 : 0o755 });
    } else {
      throw new BatonError('ERR_INVALID_ARTIFACT', `cannot put ${abs} in an image: not a file, directory or symlink`);
    }
  }
  return out;
}

function parentsOf(file: string): string[] {
  const parts = file.split('/').slice(0, -1);
  return parts.map((_, i) => parts.slice(0, i + 1).join('/'));
}

function spec(field: string, rule: string): BatonError {
  return new BatonError('ERR_INVALID_SPEC', `invalid image: ${field}: ${rule}`, { details: { issues: [{ field, rule }] } });
}
