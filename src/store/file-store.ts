import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { systemClock, type Clock } from '../core/clock.ts';
import { checkLeaseArgs, type LeaseHolder, type LeaseStore, type RecordKind, type Store } from './store.ts';

const KINDS: readonly RecordKind[] = ['functions', 'workers', 'dataplanes', 'tokens', 'quotas'];
const KEY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,254}$/;

/**
 * The embedded store: one JSON file per record under `<dir>/<kind>/`, blobs under `<dir>/blobs/`.
 * Every write goes to a temporary file, is fsync'ed, renamed over the target and the directory is
 * fsync'ed, so a crash at any instant leaves either the old or the new record, never a torn one.
 */
export class FileStore implements Store {
  readonly #dir: string;
  readonly leases: LeaseStore;

  private constructor(dir: string, clock: Clock) {
    this.#dir = dir;
    this.leases = new FileLeases(join(dir, 'leases'), clock);
  }

  /** `clock` measures lease expiry (the system clock unless a test drives it). */
  static async open(dir: string, options: { clock?: Clock } = {}): Promise<FileStore> {
    for (const kind of [...KINDS, 'blobs', 'leases']) await mkdir(join(dir, kind), { recursive: true });
    return new FileStore(dir, options.clock ?? systemClock);
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

/**
 * Leases of one process (the file store has one control plane): holdings live in memory and
 * expire by the injected clock; each lease's highest epoch is written durably before it is handed
 * out, so that an epoch never repeats across restarts. Operations on one lease run one at a time.
 */
class FileLeases implements LeaseStore {
  readonly #dir: string;
  readonly #clock: Clock;
  readonly #holdings = new Map<string, { holder: string; epoch: number; expiresAtMs: number }>();
  readonly #queues = new Map<string, Promise<unknown>>();

  constructor(dir: string, clock: Clock) {
    this.#dir = dir;
    this.#clock = clock;
  }

  async acquire(name: string, holder: string, ttlMs: number): Promise<LeaseHolder | undefined> {
    checkLeaseArgs(name, holder, ttlMs);
    return this.#serial(name, async () => {
      if (this.#live(name) !== undefined) return undefined;
      const epoch = (await this.#readEpoch(name)) + 1;
      await writeDurably(this.#dir, `${name}.json`, Buffer.from(JSON.stringify({ epoch })));
      this.#holdings.set(name, { holder, epoch, expiresAtMs: this.#clock.now() + ttlMs });
      return { holder, epoch };
    });
  }

  async renew(name: string, holding: LeaseHolder, ttlMs: number): Promise<boolean> {
    checkLeaseArgs(name, holding.holder, ttlMs);
    return this.#serial(name, async () => {
      const live = this.#live(name);
      if (live === undefined || live.holder !== holding.holder || live.epoch !== holding.epoch) return false;
      live.expiresAtMs = this.#clock.now() + ttlMs;
      return true;
    });
  }

  release(name: string, holding: LeaseHolder): Promise<void> {
    return this.#serial(name, async () => {
      const live = this.#live(name);
      if (live !== undefined && live.holder === holding.holder && live.epoch === holding.epoch) this.#holdings.delete(name);
    });
  }

  current(name: string): Promise<LeaseHolder | undefined> {
    return this.#serial(name, async () => {
      const live = this.#live(name);
      return live === undefined ? undefined : { holder: live.holder, epoch: live.epoch };
    });
  }

  #live(name: string): { holder: string; epoch: number; expiresAtMs: number } | undefined {
    const holding = this.#holdings.get(name);
    if (holding !== undefined && holding.expiresAtMs <= this.#clock.now()) {
      this.#holdings.delete(name);
      return undefined;
    }
    return holding;
  }

  async #readEpoch(name: string): Promise<number> {
    try {
      const { epoch } = JSON.parse(await readFile(join(this.#dir, `${name}.json`), 'utf8')) as { epoch: number };
      return epoch;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw err;
    }
  }

  #serial<T>(name: string, run: () => Promise<T>): Promise<T> {
    const previous = this.#queues.get(name) ?? Promise.resolve();
    const next = previous.then(run, run);
    const settled = next.catch(() => undefined);
    this.#queues.set(name, settled);
    void settled.then(() => { if (this.#queues.get(name) === settled) this.#queues.delete(name); });
    return next;
  }
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
