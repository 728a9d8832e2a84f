import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { RecordKind, Store } from './store.ts';

const KINDS: readonly RecordKind[] = ['functions', 'workers', 'dataplanes'];
const KEY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,254}$/;

/**
 * The embedded store: one JSON file per record under `<dir>/<kind>/`, blobs under `<dir>/blobs/`.
 * Every write goes to a temporary file, is fsync'ed, renamed over the target and the directory is
 * fsync'ed, so a crash at any instant leaves either the old or the new record, never a torn one.
 */
export class FileStore implements Store {
  readonly #dir: string;

  private constructor(dir: string) {
    this.#dir = dir;
  }

  static async open(dir: string): Promise<FileStore> {
    for (const kind of [...KINDS, 'blobs']) await mkdir(join(dir, kind), { recursive: true });
    return new FileStore(dir);
  }

  async list<T>(kind: RecordKind): Promise<T[]> {
    const folder = join(this.#dir, kind);
    const names = (await readdir(folder)).filter((n) => n.endsWith('.json'));
    const records: T[] = [];
    for (const name of names) records.push(JSON.parse(await readFile(join(folder, name), 'utf8')) as T);
    return records;
  }

  async put(kind: RecordKind, key: string, value: unknown): Promise<void> {
    await writeDurably(join(this.#dir, kind), `${checkKey(key)}.json`, Buffer.from(JSON.stringify(value)));
  }

  async delete(kind: RecordKind, key: string): Promise<void> {
    await rm(join(this.#dir, kind, `${checkKey(key)}.json`), { force: true });
    await fsyncDir(join(this.#dir, kind));
  }

  async putBlob(digest: string, data: Buffer): Promise<void> {
    if (await this.hasBlob(digest)) return;
    await writeDurably(join(this.#dir, 'blobs'), blobName(digest), data);
  }

  async getBlob(digest: string): Promise<Buffer | undefined> {
    try {
      return await readFile(join(this.#dir, 'blobs', blobName(digest)));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async hasBlob(digest: string): Promise<boolean> {
    try {
      await stat(join(this.#dir, 'blobs', blobName(digest)));
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {}
}

function checkKey(key: string): string {
  if (!KEY_PATTERN.test(key)) throw new Error(`invalid store key '${key}'`);
  return key;
}

function blobName(digest: string): string {
  const hex = /^sha256:([0-9a-f]{64})$/.exec(digest)?.[1];
  if (hex === undefined) throw new Error(`invalid digest '${digest}'`);
  return `${hex}.tgz`;
}

async function writeDurably(folder: string, name: string, data: Buffer): Promise<void> {
  const tmp = join(folder, `.${name}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(tmp, 'w', 0o600);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, join(folder, name));
  await fsyncDir(folder);
}

async function fsyncDir(folder: string): Promise<void> {
  const handle = await open(folder, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
