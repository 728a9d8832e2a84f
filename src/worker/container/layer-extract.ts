import { chmod, chown, lchown, link, lstat, mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { Parser, type ReadEntry } from 'tar';
import { MAX_TRAILING_BYTES } from '../../core/archive.ts';
import { BatonError } from '../../core/errors.ts';

/**
 * Applies one image layer (an uncompressed tar stream) on top of `root`, the image's base being
 * built. node-tar parses; every write is ours, so that nothing depends on what tar would strip:
 *
 * - entry paths must be relative and free of `..` (a leading `./` is fine); NUL is refused;
 * - no entry (file, directory, link, whiteout) may go through a symlink already in the tree: a
 *   layer could otherwise write outside `root` through `etc -> /etc`. Symlink *targets* may be
 *   anything: they are resolved inside the container's root, never on the host;
 * - hard links must name a regular file already in the tree, by the same rules;
 * - character and block devices and FIFOs are refused (a container gets its `/dev` from crun);
 * - `.wh.NAME` removes NAME from the lower layers; `.wh..wh..opq` empties its directory of what
 *   the lower layers put there;
 * - set-uid and set-gid bits are dropped; owners are kept (the image's users own their files).
 *
 * Entries are applied in order, asynchronously (a 100 MB binary written synchronously would stall
 * the worker's heartbeats); a layer's parsed entries wait in memory for their turn.
 */
export interface LayerLimits {
  /** Entries allowed across all layers of the image (shared counter). */
  readonly maxEntries: number;
  /** File bytes allowed across all layers of the image. */
  readonly maxBytes: number;
}

export interface LayerBudget {
  entries: number;
  bytes: number;
  /** Decompressed tar bytes read so far over the image's layers (headers and padding included). */
  rawBytes?: number;
}

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';

/** @throws BatonError ERR_INVALID_ARTIFACT (nothing further is written after the first refusal) */
export function applyLayer(tarStream: Readable, root: string, limits: LayerLimits, budget: LayerBudget): Promise<void> {
  const applier = new LayerApplier(root, limits, budget);
  return new Promise<void>((resolve, reject) => {
    let isDone = false;
    const fail = (err: unknown): void => {
      if (isDone) return;
      isDone = true;
      tarStream.destroy();
      reject(err instanceof BatonError ? err : invalid(`layer is not a valid tar: ${err instanceof Error ? err.message : String(err)}`));
    };
    const parser = new Parser({
      strict: true,
      onReadEntry: (entry) => {
        if (isDone || applier.error !== undefined) {
          entry.resume();
          return;
        }
        applier.begin(entry);
      },
    });
    parser.on('error', fail);
    const finish = (): void => {
      if (isDone) return;
      void applier.drained().then(() => {
        if (applier.error !== undefined) fail(applier.error);
        else if (!isDone) {
          isDone = true;
          resolve();
        }
      });
    };
    parser.on('end', finish);
    parser.on('close', finish);
    // Past the end of the layer's tar nothing more is parsed (node-tar would keep appending it to one buffer).
    let trailingBytes = -1;
    parser.on('eof', () => { trailingBytes = 0; });
    // Each entry adds at most 3 header blocks and its padding; each layer 2 end blocks.
    const rawLimit = limits.maxBytes + (limits.maxEntries + 4) * 2048;
    tarStream.on('error', fail);
    tarStream.on('data', (chunk: Buffer) => {
      if (isDone) return;
      if (trailingBytes >= 0) {
        trailingBytes += chunk.length;
        if (trailingBytes > MAX_TRAILING_BYTES) fail(invalid(`more than ${MAX_TRAILING_BYTES} bytes follow the end of a layer's tar`));
        return;
      }
      budget.rawBytes = (budget.rawBytes ?? 0) + chunk.length;
      if (budget.rawBytes > rawLimit) {
        fail(new BatonError('ERR_ARTIFACT_TOO_LARGE', `image layers unpack to more than ${limits.maxBytes} bytes`));
        return;
      }
      try {
        parser.write(chunk);
      } catch (err) {
        fail(err);
      }
      if (applier.error !== undefined) fail(applier.error);
    });
    tarStream.on('end', () => {
      if (isDone) return;
      try {
        parser.end();
      } catch (err) {
        fail(err);
      }
    });
  });
}

interface PendingEntry {
  readonly entry: ReadEntry;
  readonly rel: string;
  readonly chunks: Buffer[];
  isComplete: boolean;
}

class LayerApplier {
  readonly #root: string;
  readonly #limits: LayerLimits;
  readonly #budget: LayerBudget;
  /** Paths this layer wrote: an opaque marker keeps them. */
  readonly #written = new Set<string>();
  readonly #queue: PendingEntry[] = [];
  #running: Promise<void> | undefined;
  error: BatonError | undefined;

  constructor(root: string, limits: LayerLimits, budget: LayerBudget) {
    this.#root = root;
    this.#limits = limits;
    this.#budget = budget;
  }

  /** Queues the entry (its body arrives later) and applies, in order, every entry that is complete. */
  begin(entry: ReadEntry): void {
    try {
      const rel = normalizeLayerPath(entry.path);
      this.#count(entry);
      const pending: PendingEntry = { entry, rel, chunks: [], isComplete: false };
      this.#queue.push(pending);
      entry.on('data', (chunk: Buffer) => pending.chunks.push(chunk));
      entry.on('end', () => {
        pending.isComplete = true;
        this.flush();
      });
    } catch (err) {
      this.#refuse(err);
      entry.resume();
    }
  }

  /** Starts applying the complete entries at the head of the queue, one at a time, unless already doing so. */
  flush(): void {
    this.#running ??= this.#run().finally(() => { this.#running = undefined; });
  }

  /** Resolves once every parsed entry has been applied (or the first refusal stopped the layer). */
  async drained(): Promise<void> {
    while (this.#running !== undefined) await this.#running;
    if (this.error === undefined && this.#queue.length > 0) {
      this.flush();
      await this.drained();
    }
  }

  async #run(): Promise<void> {
    while (this.error === undefined && this.#queue[0]?.isComplete === true) {
      const pending = this.#queue.shift() as PendingEntry;
      try {
        await this.#apply(pending);
      } catch (err) {
        this.#refuse(err);
      }
    }
  }

  #refuse(err: unknown): void {
    this.error ??= err instanceof BatonError ? err : invalid(err instanceof Error ? err.message : String(err));
  }

  #count(entry: ReadEntry): void {
    this.#budget.entries += 1;
    if (this.#budget.entries > this.#limits.maxEntries) {
      throw new BatonError('ERR_ARTIFACT_TOO_LARGE', `image has more than ${this.#limits.maxEntries} entries`);
    }
    if (entry.type === 'File' || entry.type === 'OldFile' || entry.type === 'ContiguousFile') this.#budget.bytes += entry.size;
    if (this.#budget.bytes > this.#limits.maxBytes) {
      throw new BatonError('ERR_ARTIFACT_TOO_LARGE', `image unpacks to more than ${this.#limits.maxBytes} bytes`);
    }
  }

  async #apply({ entry, rel, chunks }: PendingEntry): Promise<void> {
    if (rel === '') {
      if (entry.type !== 'Directory') throw invalid(`entry ${JSON.stringify(entry.path)} names the root but is not a directory`);
      return;
    }
    const parentRel = path.posix.dirname(rel);
    const name = path.posix.basename(rel);
    const parent = await this.#ensureDir(parentRel === '.' ? '' : parentRel, entry.path);
    if (name === OPAQUE) {
      await this.#opaque(parent, parentRel === '.' ? '' : parentRel);
      return;
    }
    if (name.startsWith(WHITEOUT)) {
      const hidden = name.slice(WHITEOUT.length);
      if (hidden === '' || hidden === '.' || hidden === '..') throw invalid(`whiteout ${JSON.stringify(entry.path)} names no entry`);
      await rm(path.join(parent, hidden), { recursive: true, force: true });
      return;
    }
    const target = path.join(parent, name);
    const mode = (entry.mode ?? 0o644) & 0o1777;
    switch (entry.type) {
      case 'Directory':
        if ((await lstatOrUndefined(target))?.isDirectory() !== true) {
          await rm(target, { recursive: true, force: true });
          await mkdir(target);
        }
        await chmod(target, mode);
        await chown(target, entry.uid ?? 0, entry.gid ?? 0);
        break;
      case 'File':
      case 'OldFile':
      case 'ContiguousFile':
        await rm(target, { recursive: true, force: true });
        await writeFile(target, chunks, { flag: 'wx', mode });
        await chmod(target, mode);
        await chown(target, entry.uid ?? 0, entry.gid ?? 0);
        break;
      case 'SymbolicLink':
        if (entry.linkpath === undefined || entry.linkpath === '' || entry.linkpath.includes('\0')) throw invalid(`symlink ${JSON.stringify(entry.path)} has a bad target`);
        await rm(target, { recursive: true, force: true });
        await symlink(entry.linkpath, target);
        await lchown(target, entry.uid ?? 0, entry.gid ?? 0);
        break;
      case 'Link': {
        const source = await this.#existingFile(normalizeLayerPath(entry.linkpath ?? ''), entry.path);
        await rm(target, { recursive: true, force: true });
        await link(source, target);
        break;
      }
      case 'CharacterDevice':
      case 'BlockDevice':
      case 'FIFO':
        throw invalid(`entry ${JSON.stringify(entry.path)} is a device node or FIFO (${entry.type}); images may not carry them`);
      default:
        throw invalid(`entry ${JSON.stringify(entry.path)} of type ${entry.type} is not allowed`);
    }
    // Ancestors too: an opaque marker later in this layer must keep the directories it wrote into.
    for (let at = rel; at !== '.' && at !== ''; at = path.posix.dirname(at)) this.#written.add(at);
  }

  /** The absolute path of directory `rel`, made (0755, root) where missing; refuses a symlink or file on the way. */
  async #ensureDir(rel: string, entryPath: string): Promise<string> {
    let current = this.#root;
    let soFar = '';
    for (const part of rel === '' ? [] : rel.split('/')) {
      current = path.join(current, part);
      soFar = soFar === '' ? part : `${soFar}/${part}`;
      const stat = await lstatOrUndefined(current);
      if (stat === undefined) {
        await mkdir(current, { mode: 0o755 });
      } else if (stat.isSymbolicLink()) {
        throw invalid(`entry ${JSON.stringify(entryPath)} goes through the symlink ${JSON.stringify(soFar)}`);
      } else if (!stat.isDirectory()) {
        throw invalid(`entry ${JSON.stringify(entryPath)} goes through ${JSON.stringify(soFar)}, which is not a directory`);
      }
    }
    return current;
  }

  /** The absolute path of the regular file `rel` already in the tree (a hard link's source). */
  async #existingFile(rel: string, entryPath: string): Promise<string> {
    if (rel === '') throw invalid(`hard link ${JSON.stringify(entryPath)} has no target`);
    const dir = path.posix.dirname(rel);
    let current = this.#root;
    for (const part of dir === '.' ? [] : dir.split('/')) {
      current = path.join(current, part);
      if ((await lstatOrUndefined(current))?.isDirectory() !== true) {
        throw invalid(`hard link ${JSON.stringify(entryPath)} -> ${JSON.stringify(rel)} goes through a symlink or a missing directory`);
      }
    }
    const source = path.join(current, path.posix.basename(rel));
    if ((await lstatOrUndefined(source))?.isFile() !== true) {
      throw invalid(`hard link ${JSON.stringify(entryPath)} -> ${JSON.stringify(rel)} does not name a regular file of the image`);
    }
    return source;
  }

  async #opaque(dir: string, dirRel: string): Promise<void> {
    for (const name of await readdir(dir)) {
      const rel = dirRel === '' ? name : `${dirRel}/${name}`;
      if (!this.#written.has(rel)) await rm(path.join(dir, name), { recursive: true, force: true });
    }
  }
}

/** `./a//b/` → `a/b`; `./` → ''; refuses absolute paths, `..` and NUL. */
export function normalizeLayerPath(raw: string): string {
  if (raw.includes('\0')) throw invalid(`entry path ${JSON.stringify(raw)} has a NUL`);
  if (raw.startsWith('/')) throw invalid(`entry path ${JSON.stringify(raw)} is absolute`);
  const parts = raw.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) throw invalid(`entry path ${JSON.stringify(raw)} contains '..'`);
  return parts.join('/');
}

function lstatOrUndefined(p: string): Promise<Awaited<ReturnType<typeof lstat>> | undefined> {
  return lstat(p).catch(() => undefined);
}

function invalid(message: string): BatonError {
  return new BatonError('ERR_INVALID_ARTIFACT', `invalid image: ${message}`);
}
