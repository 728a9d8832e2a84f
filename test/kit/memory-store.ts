import type { LeaseStore, RecordKind, Store } from '../../src/store/store.ts';

const noLeases = (): never => {
  throw new Error('MemoryStore has no leases: test leader election against FileStore or RedisStore (test/integration/store-contract.test.ts)');
};

/** A Store in memory, for unit tests of the control plane's components (the real ones use FileStore). */
export class MemoryStore implements Store {
  readonly records = new Map<RecordKind, Map<string, unknown>>();
  readonly blobs = new Map<string, Buffer>();
  readonly leases: LeaseStore = { acquire: noLeases, renew: noLeases, release: noLeases, current: noLeases };

  async list<T>(kind: RecordKind): Promise<T[]> {
    return [...(this.records.get(kind)?.values() ?? [])].map((v) => structuredClone(v) as T);
  }

  async put(kind: RecordKind, key: string, value: unknown): Promise<void> {
    let records = this.records.get(kind);
    if (records === undefined) this.records.set(kind, (records = new Map()));
    records.set(key, structuredClone(value));
  }

  async delete(kind: RecordKind, key: string): Promise<void> {
    this.records.get(kind)?.delete(key);
  }

  async putBlob(digest: string, data: Buffer): Promise<void> {
    this.blobs.set(digest, data);
  }

  async getBlob(digest: string): Promise<Buffer | undefined> {
    return this.blobs.get(digest);
  }

  async hasBlob(digest: string): Promise<boolean> {
    return this.blobs.has(digest);
  }

  async close(): Promise<void> {}
}
