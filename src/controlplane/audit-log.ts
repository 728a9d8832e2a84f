import { open, readFile, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { AuditEntry } from '../api/audit.ts';
import { wallTimeMs } from '../core/clock.ts';

const FILE = 'audit.log';
const ROTATED = 'audit.log.1';

/** Where the control plane writes its audit entries, and `GET /v1/audit` reads them. */
export interface AuditTrail {
  /** Appends one entry (its `seq` and `at` filled in); resolves once it is durable. Never rejects. */
  record(entry: Omit<AuditEntry, 'seq' | 'at'>, nowMs?: number): Promise<void>;
  /** Entries with a `seq` above `afterSeq` (oldest first), at most `limit` of them — the newest when `afterSeq` is 0. */
  read(options: { afterSeq: number; limit: number }): Promise<AuditEntry[]>;
}

/**
 * The audit log of a control plane with the file store: JSON lines appended to `<dir>/audit.log`, one per management change (allowed or
 * refused). When a line would take the file past `maxBytes` it is renamed to `audit.log.1`
 * (replacing the one before) and a new file begun, so the log holds between `maxBytes` and twice
 * that, the newest entries. Appends are serialised; each is on disk (fdatasync) before the call is
 * answered, so a crash of the machine loses no answered change's line (management changes are few:
 * one sync each costs nothing that matters).
 */
export class AuditLog implements AuditTrail {
  readonly #dir: string;
  readonly #maxBytes: number;
  #seq: number;
  #size: number;
  #tail: Promise<void> = Promise.resolve();

  private constructor(dir: string, maxBytes: number, seq: number, size: number) {
    this.#dir = dir;
    this.#maxBytes = maxBytes;
    this.#seq = seq;
    this.#size = size;
  }

  static async open(dir: string, options: { maxBytes: number }): Promise<AuditLog> {
    const entries = await readEntries(dir);
    const last = entries.at(-1);
    const size = await stat(join(dir, FILE)).then((s) => s.size, () => 0);
    return new AuditLog(dir, options.maxBytes, last?.seq ?? 0, size);
  }

  /** Appends one entry (its `seq` and `at` filled in); resolves once it is written. Never rejects. */
  record(entry: Omit<AuditEntry, 'seq' | 'at'>, nowMs = wallTimeMs()): Promise<void> {
    const full: AuditEntry = { seq: ++this.#seq, at: new Date(nowMs).toISOString(), ...entry };
    const line = `${JSON.stringify(full)}\n`;
    this.#tail = this.#tail.then(async () => {
      const bytes = Buffer.byteLength(line);
      if (this.#size > 0 && this.#size + bytes > this.#maxBytes) {
        await rename(join(this.#dir, FILE), join(this.#dir, ROTATED));
        this.#size = 0;
      }
      const file = await open(join(this.#dir, FILE), 'a', 0o600);
      try {
        await file.appendFile(line);
        await file.datasync();
      } finally {
        await file.close();
      }
      this.#size += bytes;
    }).catch(() => undefined);
    return this.#tail;
  }

  /** Entries with a `seq` above `afterSeq` (oldest first), at most `limit` of them — the newest when `afterSeq` is 0. */
  async read(options: { afterSeq: number; limit: number }): Promise<AuditEntry[]> {
    await this.#tail;
    const after = (await readEntries(this.#dir)).filter((e) => e.seq > options.afterSeq);
    return options.afterSeq === 0 ? after.slice(-options.limit) : after.slice(0, options.limit);
  }
}

async function readEntries(dir: string): Promise<AuditEntry[]> {
  const entries: AuditEntry[] = [];
  for (const name of [ROTATED, FILE]) {
    let text: string;
    try {
      text = await readFile(join(dir, name), 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      if (line === '') continue;
      try {
        entries.push(JSON.parse(line) as AuditEntry);
      } catch {
        // A line torn by a crash mid-write is skipped.
      }
    }
  }
  return entries;
}

/** What `RedisAuditTrail` needs of the Redis store. */
export interface RedisAuditStore {
  appendAudit(entry: Omit<AuditEntry, 'seq'>, maxEntries: number): Promise<number>;
  readAudit(options: { afterSeq: number; limit: number }): Promise<AuditEntry[]>;
}

/**
 * The audit log with the Redis store: one stream for every control plane of the cluster, so that
 * `baton audit` shows every term's changes, whichever control plane led, in one order. Durable as
 * the store is (`appendfsync always`). An entry that cannot be written (Redis unreachable, when the
 * change itself could not be stored either) is reported to `onError` and dropped: the answer is
 * not held back by it.
 */
export class RedisAuditTrail implements AuditTrail {
  readonly #store: RedisAuditStore;
  readonly #maxEntries: number;
  readonly #onError: (err: unknown) => void;

  constructor(store: RedisAuditStore, options: { maxEntries: number; onError: (err: unknown) => void }) {
    this.#store = store;
    this.#maxEntries = options.maxEntries;
    this.#onError = options.onError;
  }

  async record(entry: Omit<AuditEntry, 'seq' | 'at'>, nowMs = wallTimeMs()): Promise<void> {
    try {
      await this.#store.appendAudit({ at: new Date(nowMs).toISOString(), ...entry }, this.#maxEntries);
    } catch (err) {
      this.#onError(err);
    }
  }

  read(options: { afterSeq: number; limit: number }): Promise<AuditEntry[]> {
    return this.#store.readAudit(options);
  }
}
