/**
 * The persistence interface of the control plane. Only slow-changing state goes here (functions,
 * workers, data planes, artifact blobs); nothing on the invocation or cold-start path calls it.
 * A `put` resolves only once the record is durable: an acknowledged registration survives a
 * `kill -9` of the control plane.
 */
export type RecordKind = 'functions' | 'workers' | 'dataplanes';

export interface Store {
  /** Every record of a kind, in no particular order. */
  list<T>(kind: RecordKind): Promise<T[]>;
  put(kind: RecordKind, key: string, value: unknown): Promise<void>;
  delete(kind: RecordKind, key: string): Promise<void>;
  putBlob(digest: string, data: Buffer): Promise<void>;
  /** The blob, or undefined when none has that digest. */
  getBlob(digest: string): Promise<Buffer | undefined>;
  hasBlob(digest: string): Promise<boolean>;
  close(): Promise<void>;
}
