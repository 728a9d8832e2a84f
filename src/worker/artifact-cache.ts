import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { digestOf, unpackArchive, type ArchiveLimits } from '../core/archive.ts';
import type { Clock } from '../core/clock.ts';
import { BatonError } from '../core/errors.ts';
import type { Logger } from '../observability/logger.ts';

/** Where artifact bytes come from: the control plane's `GET /internal/v1/artifacts/{digest}`. */
export interface ArtifactSource {
  fetch(digest: string, options: { maxBytes: number; signal?: AbortSignal }): Promise<Buffer>;
}

export interface CachedArtifact {
  /** The unpacked tree (treat as read-only: it is shared by every sandbox of the artifact). */
  readonly dir: string;
  /** Time spent fetching, verifying and unpacking for this request (0 on a hit), ms. */
  readonly fetchMs: number;
  readonly isHit: boolean;
}

/**
 * Artifacts unpacked once per digest under `<dir>/<hex>/`. Concurrent requests for a digest share
 * one fetch; the bytes must hash to the digest (ERR_DIGEST_MISMATCH otherwise) and pass the
 * archive checks before anything is written. A failed fetch is forgotten, so the next request
 * tries again.
 */
export class ArtifactCache {
  readonly #dir: string;
  readonly #source: ArtifactSource;
  readonly #limits: ArchiveLimits;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #cached = new Set<string>();
  readonly #inflight = new Map<string, Promise<string>>();

  constructor(options: { dir: string; source: ArtifactSource; limits: ArchiveLimits; clock: Clock; logger: Logger }) {
    this.#dir = options.dir;
    this.#source = options.source;
    this.#limits = options.limits;
    this.#clock = options.clock;
    this.#logger = options.logger;
  }

  /** Finds what earlier runs unpacked and removes their half-done temporary directories. */
  async load(): Promise<void> {
    await mkdir(this.#dir, { recursive: true });
    for (const name of await readdir(this.#dir)) {
      if (/^[0-9a-f]{64}$/.test(name)) this.#cached.add(`sha256:${name}`);
      else if (name.startsWith('.tmp-')) await rm(path.join(this.#dir, name), { recursive: true, force: true });
    }
  }

  /** Digests unpacked on this worker, e.g. for artifact-locality placement. */
  cachedDigests(): string[] {
    return [...this.#cached];
  }

  /**
   * The unpacked directory of `digest`, fetching it first if needed.
   * @throws BatonError ERR_DIGEST_MISMATCH, ERR_INVALID_ARTIFACT, ERR_ARTIFACT_TOO_LARGE,
   *   ERR_ARTIFACT_NOT_FOUND, ERR_UNAVAILABLE, ERR_TIMEOUT; the signal's reason when aborted
   */
  async ensure(digest: string, signal?: AbortSignal): Promise<CachedArtifact> {
    const dir = this.#pathOf(digest);
    if (this.#cached.has(digest)) return { dir, fetchMs: 0, isHit: true };
    const startedAt = this.#clock.now();
    let pending = this.#inflight.get(digest);
    if (pending === undefined) {
      // Not tied to one caller's signal: other sandboxes may be waiting for the same bytes.
      pending = this.#fetchAndUnpack(digest, dir).finally(() => this.#inflight.delete(digest));
      this.#inflight.set(digest, pending);
      pending.catch(() => undefined); // Handled by each waiter; this only keeps a lone failure from being "unhandled".
    }
    await (signal === undefined ? pending : raceAbort(pending, signal));
    return { dir, fetchMs: this.#clock.now() - startedAt, isHit: false };
  }

  async #fetchAndUnpack(digest: string, dir: string): Promise<string> {
    const bytes = await this.#source.fetch(digest, { maxBytes: this.#limits.maxPackedBytes });
    const actual = digestOf(bytes);
    if (actual !== digest) {
      throw new BatonError('ERR_DIGEST_MISMATCH', `artifact ${digest} hashes to ${actual}`, { details: { expected: digest, actual } });
    }
    await unpackArchive(bytes, dir, this.#limits);
    this.#cached.add(digest);
    this.#logger.info({ digest, bytes: bytes.length }, 'artifact cached');
    return dir;
  }

  #pathOf(digest: string): string {
    return path.join(this.#dir, digest.slice('sha256:'.length));
  }
}

function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
