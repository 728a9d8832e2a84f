import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, readFile, readdir, readlink, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { createGunzip, gzipSync } from 'node:zlib';
import { Header, Pax, Parser, Unpack, type ReadEntry } from 'tar';
import { BatonError } from './errors.ts';

/**
 * Function artifacts are gzipped tar archives (or plain tar ones, as `docker save` writes), addressed by the sha256 of their bytes. This module
 * checks them before anything touches the disk: every entry must stay inside the tree (no absolute
 * path, no `..`, no symlink that resolves outside, no writing through a symlink), only regular
 * files, directories and symlinks are allowed, and the sizes are bounded. node-tar parses and
 * writes the format; the safety rules are ours, so they do not depend on what tar strips silently.
 */

export interface ArchiveLimits {
  /** Largest accepted compressed size, bytes. */
  readonly maxPackedBytes: number;
  /** Largest accepted sum of file sizes once unpacked, bytes. */
  readonly maxUnpackedBytes: number;
  /** Largest accepted number of entries (files, directories and symlinks). */
  readonly maxEntries: number;
}

export interface ArchiveSummary {
  readonly entryCount: number;
  readonly unpackedBytes: number;
}

type EntryKind = 'file' | 'directory' | 'symlink';

interface CheckedEntry {
  readonly path: string;
  readonly kind: EntryKind;
}

/** `sha256:<64 hex>` of `buf`: the artifact's identity. */
export function digestOf(buf: Buffer): string {
  return `sha256:${createHash('sha256').update(buf).digest('hex')}`;
}

/**
 * Validates every entry of `tgz` without writing anything.
 * @throws BatonError ERR_INVALID_ARTIFACT or ERR_ARTIFACT_TOO_LARGE
 */
export async function inspectArchive(tgz: Buffer, limits: ArchiveLimits): Promise<ArchiveSummary> {
  const checker = new EntryChecker(limits);
  await feedTar(tgz, limits, checker, new Parser({ strict: true, onReadEntry: (entry) => {
    checker.tryAdd(entry);
    entry.resume();
  } }));
  return checker.finish();
}

/**
 * Validates `tgz` completely, then unpacks it into a temporary directory next to `destDir` and
 * renames that into place, so `destDir` appears whole or not at all. `destDir` must not exist.
 * @throws BatonError ERR_INVALID_ARTIFACT or ERR_ARTIFACT_TOO_LARGE (nothing is left on disk)
 */
export async function unpackArchive(tgz: Buffer, destDir: string, limits: ArchiveLimits): Promise<ArchiveSummary> {
  const summary = await inspectArchive(tgz, limits);
  if (await exists(destDir)) throw new BatonError('ERR_INTERNAL', `cannot unpack into ${destDir}: it already exists`);
  const parent = path.dirname(destDir);
  await mkdir(parent, { recursive: true });
  const tmp = path.join(parent, `.tmp-${path.basename(destDir)}-${randomBytes(6).toString('hex')}`);
  await mkdir(tmp);
  try {
    // Second line of defence: the same rules again on the bytes actually written.
    const checker = new EntryChecker(limits);
    const unpack = new Unpack({
      cwd: tmp, strict: true, preserveOwner: false, noMtime: true, maxDepth: 256,
      filter: (_p, entry) => {
        const read = entry as ReadEntry;
        // Never keep set-uid, set-gid or sticky bits from an archive.
        if (read.mode !== undefined) read.mode &= 0o777;
        return checker.tryAdd(read);
      },
    });
    await feedTar(tgz, limits, checker, unpack);
    checker.finish();
    await rename(tmp, destDir);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
  return summary;
}

/**
 * Packs `dir` into a gzipped tar deterministically: entries sorted by path, mtime 0, uid/gid 0,
 * empty user/group names and normalised modes (0755 for directories and executables, 0644 for
 * other files), so the same tree always gives the same digest. `.git` directories are skipped;
 * everything else the user put there is included. Sockets, FIFOs and devices are refused.
 */
export async function packDirectory(dir: string): Promise<Buffer> {
  const blocks: Buffer[] = [];
  for (const rel of await listTree(dir)) {
    const abs = path.join(dir, rel);
    const stat = await lstat(abs);
    const common = { mode: 0o755, uid: 0, gid: 0, uname: '', gname: '', mtime: new Date(0), size: 0 };
    if (stat.isDirectory()) {
      blocks.push(encodeHeader({ ...common, path: `${rel}/`, type: 'Directory' }));
    } else if (stat.isSymbolicLink()) {
      blocks.push(encodeHeader({ ...common, mode: 0o777, path: rel, type: 'SymbolicLink', linkpath: await readlink(abs) }));
    } else if (stat.isFile()) {
      const data = await readFile(abs);
      const mode = (stat.mode & 0o111) === 0 ? 0o644 : 0o755;
      blocks.push(encodeHeader({ ...common, mode, size: data.length, path: rel, type: 'File' }), data, padding(data.length));
    } else {
      throw new BatonError('ERR_INVALID_ARTIFACT', `cannot pack ${rel}: not a file, directory or symlink`);
    }
  }
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks), { level: 9 });
}

async function exists(p: string): Promise<boolean> {
  return lstat(p).then(() => true, () => false);
}

async function listTree(root: string, prefix = ''): Promise<string[]> {
  const names = (await readdir(path.join(root, prefix))).sort(compareCodeUnits);
  const out: string[] = [];
  for (const name of names) {
    if (name === '.git') continue;
    const rel = prefix === '' ? name : `${prefix}/${name}`;
    out.push(rel);
    const stat = await lstat(path.join(root, rel));
    if (stat.isDirectory()) out.push(...await listTree(root, rel));
  }
  return out;
}

function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

type HeaderFields = ConstructorParameters<typeof Header>[0] & { path: string };

function encodeHeader(fields: Exclude<HeaderFields, Buffer>): Buffer {
  const block = Buffer.alloc(512);
  const header = new Header(fields);
  const needsPax = header.encode(block);
  if (!needsPax) return block;
  // Long paths or link targets go in a pax extended header before the entry.
  const pax = new Pax({ path: fields.path, ...(fields.linkpath === undefined ? {} : { linkpath: fields.linkpath }) });
  return Buffer.concat([pax.encode(), block]);
}

function padding(size: number): Buffer {
  const rest = size % 512;
  return Buffer.alloc(rest === 0 ? 0 : 512 - rest);
}

/**
 * Decompresses `tgz` into `sink`, counting the decompressed bytes so a gzip bomb is stopped
 * early: the raw tar may exceed the unpacked limit only by the headers' overhead (at most 3 blocks
 * per entry with pax headers, plus padding and the end-of-archive blocks).
 */
async function feedTar(tgz: Buffer, limits: ArchiveLimits, checker: EntryChecker, sink: Parser): Promise<void> {
  if (tgz.length > limits.maxPackedBytes) {
    throw new BatonError('ERR_ARTIFACT_TOO_LARGE', `artifact is ${tgz.length} bytes packed; the limit is ${limits.maxPackedBytes}`);
  }
  if (isPlainTar(tgz)) {
    // An uncompressed tar (e.g. a `docker save` image archive): the same checks, no gunzip.
    if (tgz.length > limits.maxUnpackedBytes + (limits.maxEntries + 4) * 2048) {
      throw new BatonError('ERR_ARTIFACT_TOO_LARGE', `artifact unpacks to more than ${limits.maxUnpackedBytes} bytes`);
    }
    await feedPlainTar(tgz, checker, sink);
    return;
  }
  if (tgz.length < 2 || tgz[0] !== 0x1f || tgz[1] !== 0x8b) {
    throw new BatonError('ERR_INVALID_ARTIFACT', 'artifact is neither a gzipped tar nor a tar');
  }
  const rawLimit = limits.maxUnpackedBytes + (limits.maxEntries + 4) * 2048;
  await new Promise<void>((resolve, reject) => {
    let rawBytes = 0;
    /** Bytes after the tar's end-of-archive blocks (padding to a record), once they came. */
    let trailingBytes = -1;
    let isDone = false;
    const gunzip = createGunzip();
    const fail = (err: unknown): void => {
      if (isDone) return;
      isDone = true;
      gunzip.destroy();
      sink.abort(err instanceof Error ? err : new Error(String(err)));
      reject(asArtifactError(err));
    };
    sink.on('error', fail);
    const finish = (): void => {
      if (checker.error !== undefined) fail(checker.error);
      else if (!isDone) {
        isDone = true;
        gunzip.destroy();
        resolve();
      }
    };
    sink.on('end', finish);
    sink.on('close', finish);
    // Past the end of the archive nothing more is parsed (node-tar would keep appending it to one buffer).
    sink.on('eof', () => { trailingBytes = 0; });
    gunzip.on('error', fail);
    gunzip.on('data', (chunk: Buffer) => {
      if (isDone) return;
      if (rawBytes === 0 && isCompressed(chunk)) {
        fail(new BatonError('ERR_INVALID_ARTIFACT', 'artifact is compressed twice'));
        return;
      }
      if (trailingBytes >= 0) {
        trailingBytes += chunk.length;
        if (trailingBytes > MAX_TRAILING_BYTES) fail(trailingData());
        return;
      }
      rawBytes += chunk.length;
      if (rawBytes > rawLimit) {
        fail(new BatonError('ERR_ARTIFACT_TOO_LARGE', `artifact unpacks to more than ${limits.maxUnpackedBytes} bytes`));
        return;
      }
      try {
        // Large entries (an image's blobs) fill the parser: wait for it rather than pile up writes.
        if (!sink.write(chunk)) {
          gunzip.pause();
          sink.once('drain', () => gunzip.resume());
        }
      } catch (err) {
        fail(err);
        return;
      }
      if (checker.error !== undefined) fail(checker.error);
    });
    gunzip.on('end', () => {
      if (isDone) return;
      if (rawBytes === 0) {
        fail(new BatonError('ERR_INVALID_ARTIFACT', 'artifact is empty'));
        return;
      }
      try {
        sink.end();
      } catch (err) {
        fail(err);
      }
    });
    gunzip.end(tgz);
  });
}

/**
 * What may follow a tar's end-of-archive blocks: its padding to a whole record (tar's default
 * record is 10 KiB; 1 MiB allows any blocking factor). More is refused: a gzip of gigabytes of
 * zeros is an empty tar followed by the rest, and decompressing the rest would only burn CPU.
 */
export const MAX_TRAILING_BYTES = 1024 * 1024;

export function trailingData(): BatonError {
  return new BatonError('ERR_INVALID_ARTIFACT', `invalid artifact: more than ${MAX_TRAILING_BYTES} bytes follow the end of the tar archive`);
}

/** A POSIX (`ustar\0`) or GNU (`ustar `) tar header at the start. */
export function isPlainTar(buf: Buffer): boolean {
  return buf.length >= 512 && buf.toString('latin1', 257, 262) === 'ustar';
}

function feedPlainTar(tar: Buffer, checker: EntryChecker, sink: Parser): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let isDone = false;
    const finish = (err?: unknown): void => {
      if (isDone) return;
      isDone = true;
      if (err !== undefined) reject(asArtifactError(err));
      else if (checker.error !== undefined) reject(checker.error);
      else resolve();
    };
    sink.on('error', finish);
    sink.on('end', () => finish());
    sink.on('close', () => finish());
    try {
      sink.end(tar);
    } catch (err) {
      finish(err);
    }
  });
}

function isCompressed(chunk: Buffer): boolean {
  return (chunk[0] === 0x1f && chunk[1] === 0x8b) || (chunk[0] === 0x28 && chunk[1] === 0xb5 && chunk[2] === 0x2f && chunk[3] === 0xfd);
}

function asArtifactError(err: unknown): BatonError {
  if (err instanceof BatonError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new BatonError('ERR_INVALID_ARTIFACT', `artifact is not a valid gzipped tar: ${message}`, { cause: err });
}

/**
 * Collects entries, refusing the unsafe ones at once (the first refusal is kept in `error`, and
 * the feeder stops at the next chunk; nothing is thrown from inside tar's callbacks), then checks
 * what needs the whole list: symlink targets and paths through symlinks.
 */
class EntryChecker {
  readonly #limits: ArchiveLimits;
  readonly #entries = new Map<string, CheckedEntry>();
  readonly #symlinks = new Map<string, string>();
  #count = 0;
  #bytes = 0;

  constructor(limits: ArchiveLimits) {
    this.#limits = limits;
  }

  #error: BatonError | undefined;

  get error(): BatonError | undefined {
    return this.#error;
  }

  /** False (and `error` set) when the entry must not be written. */
  tryAdd(entry: ReadEntry): boolean {
    if (this.#error !== undefined) return false;
    try {
      this.#add(entry);
      return true;
    } catch (err) {
      this.#error = err instanceof BatonError ? err : invalid(String(err));
      return false;
    }
  }

  #add(entry: ReadEntry): void {
    const kind = kindOf(entry);
    const rel = normalizeEntryPath(entry.path, kind);
    this.#count += 1;
    if (this.#count > this.#limits.maxEntries) {
      throw new BatonError('ERR_ARTIFACT_TOO_LARGE', `artifact has more than ${this.#limits.maxEntries} entries`);
    }
    if (kind === 'file') this.#bytes += entry.size;
    if (this.#bytes > this.#limits.maxUnpackedBytes) {
      throw new BatonError('ERR_ARTIFACT_TOO_LARGE', `artifact unpacks to more than ${this.#limits.maxUnpackedBytes} bytes`);
    }
    const previous = this.#entries.get(rel);
    if (previous !== undefined && (previous.kind !== 'directory' || kind !== 'directory')) {
      throw invalid(`duplicate entry ${JSON.stringify(rel)}`);
    }
    if (kind === 'symlink') this.#symlinks.set(rel, checkLinkTarget(rel, entry.linkpath ?? ''));
    this.#entries.set(rel, { path: rel, kind });
  }

  finish(): ArchiveSummary {
    if (this.#error !== undefined) throw this.#error;
    for (const rel of this.#entries.keys()) {
      const parts = rel.split('/');
      for (let i = 1; i < parts.length; i++) {
        const prefix = parts.slice(0, i).join('/');
        if (this.#symlinks.has(prefix)) throw invalid(`entry ${JSON.stringify(rel)} goes through the symlink ${JSON.stringify(prefix)}`);
      }
    }
    for (const [rel, target] of this.#symlinks) {
      const start = rel.split('/').slice(0, -1);
      if (resolveInTree([...start, ...target.split('/')], this.#symlinks) === undefined) {
        throw invalid(`symlink ${JSON.stringify(rel)} -> ${JSON.stringify(target)} points outside the artifact`);
      }
    }
    return { entryCount: this.#count, unpackedBytes: this.#bytes };
  }
}

function invalid(message: string): BatonError {
  return new BatonError('ERR_INVALID_ARTIFACT', `invalid artifact: ${message}`);
}

function kindOf(entry: ReadEntry): EntryKind {
  switch (entry.type) {
    case 'File':
    case 'OldFile':
    case 'ContiguousFile':
      return 'file';
    case 'Directory':
      return 'directory';
    case 'SymbolicLink':
      return 'symlink';
    case 'Link':
      throw invalid(`hard link ${JSON.stringify(entry.path)} is not allowed`);
    default:
      throw invalid(`entry ${JSON.stringify(entry.path)} of type ${entry.type} is not allowed`);
  }
}

/** `./a//b/` → `a/b`; refuses absolute paths, `..` segments, backslashes and NUL. */
function normalizeEntryPath(raw: string, kind: EntryKind): string {
  if (raw.includes('\0') || raw.includes('\\')) throw invalid(`entry path ${JSON.stringify(raw)} has a NUL or backslash`);
  if (raw.startsWith('/') || /^[A-Za-z]:/.test(raw)) throw invalid(`entry path ${JSON.stringify(raw)} is absolute`);
  const parts = raw.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) throw invalid(`entry path ${JSON.stringify(raw)} contains '..'`);
  if (parts.length === 0 && kind !== 'directory') throw invalid(`entry path ${JSON.stringify(raw)} is empty`);
  return parts.join('/');
}

function checkLinkTarget(rel: string, target: string): string {
  if (target === '' || target.includes('\0') || target.includes('\\')) throw invalid(`symlink ${JSON.stringify(rel)} has a bad target`);
  if (target.startsWith('/') || /^[A-Za-z]:/.test(target)) throw invalid(`symlink ${JSON.stringify(rel)} has an absolute target`);
  return target;
}

/**
 * Resolves `components` from the artifact root through the archive's own symlinks. Returns the
 * resolved segments, or undefined when the path leaves the root or loops (more than 40 links,
 * as Linux's ELOOP).
 */
function resolveInTree(components: readonly string[], symlinks: ReadonlyMap<string, string>): string[] | undefined {
  const pending = [...components];
  const current: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const part = pending.shift() as string;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (current.length === 0) return undefined;
      current.pop();
      continue;
    }
    current.push(part);
    const target = symlinks.get(current.join('/'));
    if (target === undefined) continue;
    if (++hops > 40 || target.startsWith('/')) return undefined;
    current.pop();
    pending.unshift(...target.split('/'));
  }
  return current;
}
