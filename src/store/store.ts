/**
 * The persistence interface of the control plane. Only slow-changing state goes here (functions,
 * workers, data planes, API tokens, artifact blobs, the leader lease); nothing on the invocation or cold-start
 * path calls it. A `put` resolves only once the record is durable: an acknowledged registration
 * survives a `kill -9` of the control plane.
 *
 * Two backends implement it: the embedded `FileStore` (one control plane, one machine) and
 * `RedisStore` (shared by several control planes). `test/integration/store-contract.test.ts`
 * runs the same suite against both.
 */
/** `tokens`: API tokens by id, as hashes only (src/api/tokens.ts); `quotas`: per-scope quotas (src/api/quotas.ts). */
export type RecordKind = 'functions' | 'workers' | 'dataplanes' | 'tokens' | 'quotas';

export interface Store {
  /** Every record of a kind, in no particular order. */
  list<T>(kind: RecordKind): Promise<T[]>;
  put(kind: RecordKind, key: string, value: unknown): Promise<void>;
  delete(kind: RecordKind, key: string): Promise<void>;
  putBlob(digest: string, data: Buffer): Promise<void>;
  /** The blob, or undefined when none has that digest. */
  getBlob(digest: string): Promise<Buffer | undefined>;
  hasBlob(digest: string): Promise<boolean>;
  /** The lease primitives the leader election is built on (see `leader-lease.ts`). */
  readonly leases: LeaseStore;
  close(): Promise<void>;
}

/** Who holds a lease, and in which epoch. */
export interface LeaseHolder {
  readonly holder: string;
  readonly epoch: number;
}

/**
 * Leases with a fencing token. Each operation is atomic in the backend (a Lua script in Redis; one
 * process's event loop in the file store). Expiry is measured by the backend (Redis: the server's
 * clock; the file store: its injected clock), so a holder must stop acting before its own clock
 * says the TTL has passed since it *sent* the last successful renewal.
 */
export interface LeaseStore {
  /**
   * Set-if-absent with expiry: takes lease `name` for `holder` for `ttlMs` when nobody holds it
   * (or the holding expired). Each successful acquisition gets the next epoch: an integer that
   * only grows, across holders and restarts of the backend (it is durable like a record).
   * Resolves with the new holding, or `undefined` when someone else (or this holder, in an
   * earlier epoch) holds it.
   */
  acquire(name: string, holder: string, ttlMs: number): Promise<LeaseHolder | undefined>;
  /** Compare-and-set renewal: extends the holding to `ttlMs` from now only if `holding` is still the current one. */
  renew(name: string, holding: LeaseHolder, ttlMs: number): Promise<boolean>;
  /** Gives the lease up if `holding` is still the current one (a no-op otherwise). */
  release(name: string, holding: LeaseHolder): Promise<void>;
  /** The current holding, or `undefined` when nobody holds it. */
  current(name: string): Promise<LeaseHolder | undefined>;
}

const LEASE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
const HOLDER = /^[A-Za-z0-9][A-Za-z0-9_.:@/[\]-]{0,254}$/;

/** @throws Error naming the bad lease name, holder or TTL */
export function checkLeaseArgs(name: string, holder: string, ttlMs: number): void {
  if (!LEASE_NAME.test(name)) throw new Error(`invalid lease name '${name}'`);
  if (!HOLDER.test(holder)) throw new Error(`invalid lease holder '${holder}'`);
  if (!Number.isInteger(ttlMs) || ttlMs < 1 || ttlMs > 3_600_000) throw new Error(`invalid lease TTL ${ttlMs} (an integer of ms in [1, 3600000])`);
}
