import { Pool } from 'undici';
import { H2Upstream } from './h2-upstream.ts';

/** How the data plane talks to a function's sandboxes (the spec's `protocol`). */
export type UpstreamProtocol = 'http1' | 'h2c';
export type Upstream = Pool | H2Upstream;

/**
 * Connections to sandboxes, one upstream per protocol and `host:port`, shared by the endpoints
 * that name that address and closed when the last of them is released.
 *
 * HTTP/1.1: a keep-alive pool with pipelining 1 — a sandbox serves one request per connection at
 * a time, and the data plane already limits in-flight invocations per endpoint to the function's
 * concurrency, so the pool opens at most that many connections. h2c: one HTTP/2 session, one
 * stream per invocation (as many at once as the same limit allows).
 */
export class UpstreamPools {
  readonly #upstreams = new Map<string, { upstream: Upstream; refs: number }>();

  acquire(address: string, protocol: UpstreamProtocol = 'http1'): Upstream {
    const key = protocol === 'http1' ? address : `h2c/${address}`;
    let slot = this.#upstreams.get(key);
    if (slot === undefined) {
      const upstream = protocol === 'http1'
        ? new Pool(`http://${address}`, { pipelining: 1, keepAliveTimeout: 4_000, connectTimeout: 5_000 })
        : new H2Upstream(address);
      slot = { upstream, refs: 0 };
      this.#upstreams.set(key, slot);
    }
    slot.refs++;
    return slot.upstream;
  }

  /** Drops one reference to `upstream`; the last one closes it gracefully (requests in flight still finish). */
  release(address: string, upstream: unknown): void {
    const key = upstream instanceof H2Upstream ? `h2c/${address}` : address;
    const slot = this.#upstreams.get(key);
    if (slot === undefined) return;
    if (--slot.refs > 0) return;
    this.#upstreams.delete(key);
    slot.upstream.close().catch(() => undefined);
  }

  get size(): number {
    return this.#upstreams.size;
  }

  /** Closes every upstream; with `force`, cuts their connections at once. */
  async closeAll(force: boolean): Promise<void> {
    const upstreams = [...this.#upstreams.values()].map((s) => s.upstream);
    this.#upstreams.clear();
    await Promise.all(upstreams.map((upstream) => {
      if (upstream instanceof H2Upstream) {
        if (force) upstream.destroy();
        return force ? Promise.resolve() : upstream.close();
      }
      return (force ? upstream.destroy() : upstream.close()).catch(() => undefined);
    }));
  }
}
