import { Pool } from 'undici';

/**
 * Keep-alive connection pools to sandboxes, one per `host:port`, shared by the endpoints that name
 * that address and closed when the last of them is released. Pipelining is 1: a sandbox serves one
 * request per connection at a time, and the data plane already limits in-flight invocations per
 * endpoint to the function's concurrency, so the pool opens at most that many connections.
 */
export class UpstreamPools {
  readonly #pools = new Map<string, { pool: Pool; refs: number }>();

  acquire(address: string): Pool {
    let slot = this.#pools.get(address);
    if (slot === undefined) {
      slot = { pool: new Pool(`http://${address}`, { pipelining: 1, keepAliveTimeout: 4_000, connectTimeout: 5_000 }), refs: 0 };
      this.#pools.set(address, slot);
    }
    slot.refs++;
    return slot.pool;
  }

  /** Drops one reference; the last one closes the pool gracefully (its queued requests still run). */
  release(address: string): void {
    const slot = this.#pools.get(address);
    if (slot === undefined) return;
    if (--slot.refs > 0) return;
    this.#pools.delete(address);
    slot.pool.close().catch(() => undefined);
  }

  get size(): number {
    return this.#pools.size;
  }

  /** Closes every pool; with `force`, cuts their connections at once. */
  async closeAll(force: boolean): Promise<void> {
    const pools = [...this.#pools.values()].map((s) => s.pool);
    this.#pools.clear();
    await Promise.all(pools.map((pool) => (force ? pool.destroy() : pool.close()).catch(() => undefined)));
  }
}
