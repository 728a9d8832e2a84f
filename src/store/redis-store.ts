import type { Redis } from 'ioredis';
import type { AuditEntry } from '../api/audit.ts';
import { BatonError } from '../core/errors.ts';
import { checkLeaseArgs, type LeaseHolder, type LeaseStore, type RecordKind, type Store } from './store.ts';

const KEY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,254}$/;
const DIGEST_PATTERN = /^sha256:[0-9a-f]{64}$/;

/**
 * Set-if-absent with expiry, and the next epoch: KEYS[1] the holding (`<epoch> <holder>`, expiring
 * by the server's clock), KEYS[2] the lease's epoch counter (never expires). Answers the new epoch,
 * or 0 when the lease is held.
 */
const ACQUIRE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], epoch .. ' ' .. ARGV[1], 'PX', ARGV[2])
return epoch`;

/** Compare-and-set renewal: extends KEYS[1] only if it still holds ARGV[1]. */
const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;

/**
 * One audit entry: KEYS[1] the stream, KEYS[2] its sequence counter; ARGV[1] the entry (JSON, without
 * its seq), ARGV[2] the entries kept (about). The next seq is the entry's stream id (`<seq>-0`), so
 * every control plane's entries are in one order. Answers the seq.
 */
const AUDIT_APPEND = `
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], seq .. '-0', 'e', ARGV[1])
return seq`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/**
 * The shared store: every control plane of a cluster points at one Redis. Records of a kind are
 * one hash (`<prefix>records:<kind>`, field = key, value = JSON); artifact blobs are strings
 * (`<prefix>blob:<digest>`, written once, never changed), so any control plane — a new leader
 * included — reads every artifact from the same place, with no fetch from a peer that may be the
 * one that died. Leases are Lua scripts, atomic on the server.
 *
 * Durability: a `put` is acknowledged once Redis has it; that it survives a crash of Redis too
 * needs the server's `appendonly yes` with `appendfsync always` (the tests run it so).
 *
 * The client is made (and its connection options chosen) by the composition root.
 */
export class RedisStore implements Store {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly leases: LeaseStore;

  private constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.#prefix = prefix;
    this.leases = new RedisLeases(redis, prefix, (op, run) => this.#call(op, run));
  }

  /**
   * Connects `redis` (made with `lazyConnect: true`) and checks that it answers. `onConnectionError`
   * hears each failed (re)connection, e.g. to log it.
   * @throws BatonError ERR_UNAVAILABLE when Redis cannot be reached
   */
  static async open(redis: Redis, options: { prefix?: string; onConnectionError?: (err: Error) => void } = {}): Promise<RedisStore> {
    // Connection errors also reach the calls that hit them (as ERR_UNAVAILABLE); without a
    // listener the client would report each reconnection attempt as an unhandled error.
    const onError = options.onConnectionError ?? (() => undefined);
    redis.on('error', onError);
    const store = new RedisStore(redis, options.prefix ?? 'baton:');
    await store.#call('connect', async () => {
      if (redis.status === 'wait') await redis.connect();
      await redis.ping();
    });
    return store;
  }

  async list<T>(kind: RecordKind): Promise<T[]> {
    const values = await this.#call('list', () => this.#redis.hvals(this.#records(kind)));
    return values.map((v) => JSON.parse(v) as T);
  }

  async put(kind: RecordKind, key: string, value: unknown): Promise<void> {
    const json = JSON.stringify(value);
    await this.#call('put', () => this.#redis.hset(this.#records(kind), checkKey(key), json));
  }

  async delete(kind: RecordKind, key: string): Promise<void> {
    await this.#call('delete', () => this.#redis.hdel(this.#records(kind), checkKey(key)));
  }

  async putBlob(digest: string, data: Buffer): Promise<void> {
    // Content-addressed: a second write of the same digest changes nothing.
    await this.#call('putBlob', () => this.#redis.set(this.#blob(digest), data, 'NX'));
  }

  async getBlob(digest: string): Promise<Buffer | undefined> {
    const data = await this.#call('getBlob', () => this.#redis.getBuffer(this.#blob(digest)));
    return data ?? undefined;
  }

  async hasBlob(digest: string): Promise<boolean> {
    return (await this.#call('hasBlob', () => this.#redis.exists(this.#blob(digest)))) === 1;
  }

  /**
   * Appends an audit entry (as `AUDIT_APPEND`) to the stream every control plane of the cluster
   * shares; resolves with its seq. Of at most `maxEntries` (about: Redis trims whole nodes).
   */
  async appendAudit(entry: Omit<AuditEntry, 'seq'>, maxEntries: number): Promise<number> {
    const json = JSON.stringify(entry);
    return Number(await this.#call('appendAudit', () => this.#redis.eval(AUDIT_APPEND, 2, this.#auditKey(), `${this.#auditKey()}:seq`, json, String(maxEntries))));
  }

  /** Audit entries with a seq above `afterSeq` (oldest first), at most `limit` — the newest when `afterSeq` is 0. */
  async readAudit(options: { afterSeq: number; limit: number }): Promise<AuditEntry[]> {
    const rows = options.afterSeq === 0
      ? (await this.#call('readAudit', () => this.#redis.xrevrange(this.#auditKey(), '+', '-', 'COUNT', options.limit))).reverse()
      : await this.#call('readAudit', () => this.#redis.xrange(this.#auditKey(), `(${options.afterSeq}-0`, '+', 'COUNT', options.limit));
    const entries: AuditEntry[] = [];
    for (const [id, fields] of rows) {
      const json = fields[fields.indexOf('e') + 1];
      if (json === undefined) continue;
      entries.push({ seq: Number(id.split('-')[0]), ...(JSON.parse(json) as Omit<AuditEntry, 'seq'>) });
    }
    return entries;
  }

  async close(): Promise<void> {
    try {
      await this.#redis.quit();
    } catch {
      this.#redis.disconnect();
    }
  }

  #auditKey(): string {
    return `${this.#prefix}audit`;
  }

  #records(kind: RecordKind): string {
    return `${this.#prefix}records:${kind}`;
  }

  #blob(digest: string): string {
    if (!DIGEST_PATTERN.test(digest)) throw new Error(`invalid digest '${digest}'`);
    return `${this.#prefix}blob:${digest}`;
  }

  async #call<T>(op: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      if (err instanceof BatonError || isArgumentError(err)) throw err;
      throw new BatonError('ERR_UNAVAILABLE', `the Redis store failed (${op}): ${(err as Error).message}`, { cause: err });
    }
  }
}

class RedisLeases implements LeaseStore {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #call: <T>(op: string, run: () => Promise<T>) => Promise<T>;

  constructor(redis: Redis, prefix: string, call: <T>(op: string, run: () => Promise<T>) => Promise<T>) {
    this.#redis = redis;
    this.#prefix = prefix;
    this.#call = call;
  }

  async acquire(name: string, holder: string, ttlMs: number): Promise<LeaseHolder | undefined> {
    checkLeaseArgs(name, holder, ttlMs);
    const epoch = Number(await this.#call('lease acquire', () => this.#redis.eval(ACQUIRE, 2, this.#holding(name), this.#epoch(name), holder, String(ttlMs))));
    return epoch > 0 ? { holder, epoch } : undefined;
  }

  async renew(name: string, holding: LeaseHolder, ttlMs: number): Promise<boolean> {
    checkLeaseArgs(name, holding.holder, ttlMs);
    const renewed = await this.#call('lease renew', () => this.#redis.eval(RENEW, 1, this.#holding(name), `${holding.epoch} ${holding.holder}`, String(ttlMs)));
    return Number(renewed) === 1;
  }

  async release(name: string, holding: LeaseHolder): Promise<void> {
    await this.#call('lease release', () => this.#redis.eval(RELEASE, 1, this.#holding(name), `${holding.epoch} ${holding.holder}`));
  }

  async current(name: string): Promise<LeaseHolder | undefined> {
    const value = await this.#call('lease read', () => this.#redis.get(this.#holding(name)));
    if (value === null) return undefined;
    const space = value.indexOf(' ');
    return { epoch: Number(value.slice(0, space)), holder: value.slice(space + 1) };
  }

  #holding(name: string): string {
    return `${this.#prefix}lease:${name}`;
  }

  #epoch(name: string): string {
    return `${this.#prefix}epoch:${name}`;
  }
}

function checkKey(key: string): string {
  if (!KEY_PATTERN.test(key)) throw new Error(`invalid store key '${key}'`);
  return key;
}

/** Our own validation errors (bad key, digest, lease argument) pass through unchanged. */
function isArgumentError(err: unknown): boolean {
  return err instanceof Error && /^invalid (store key|digest|lease)/.test(err.message);
}
