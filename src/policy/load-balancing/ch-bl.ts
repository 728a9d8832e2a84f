import { BatonError } from '../../core/errors.ts';
import type { Random } from '../../core/random.ts';
import { isEligible } from './eligible.ts';
import { pickLeastInflight } from './least-inflight.ts';
import type { EndpointView, LoadBalancer } from './types.ts';

/** Points per endpoint on the ring: 40 keeps the spread of keys within a few percent for tens of endpoints. */
const VIRTUAL_NODES = 40;
export const DEFAULT_CHBL_EPSILON = 0.25;

/**
 * The most in flight an endpoint may hold after taking one more invocation:
 * ceil((1 + ε) × (total + 1) / n) over the n non-draining endpoints.
 * ε 0.25, 4 endpoints with 6 in flight → ceil(1.25 × 7 / 4) = ceil(2.19) = 3.
 */
export function boundedLoad(epsilon: number, totalInflight: number, endpointCount: number): number {
  return Math.ceil(((1 + epsilon) * (totalInflight + 1)) / endpointCount);
}

/**
 * Consistent hashing with bounded loads (Mirrokni et al.): the key hashes onto a ring of
 * endpoints (by sandbox id, with virtual nodes); walking clockwise from it, the first eligible
 * endpoint whose load after this invocation stays within `boundedLoad` takes it. So one key keeps
 * landing on the same sandbox (warm caches) until that sandbox is over its share. Without a key,
 * a fixed per-instance key is used.
 *
 * The ring depends only on the set of sandbox ids, not on array order, so every data plane maps a
 * key to the same sandbox. It is rebuilt only when the id set changes; a reordering just
 * re-indexes. A pick allocates nothing.
 */
export class ChBlBalancer implements LoadBalancer {
  readonly name = 'ch-bl';
  readonly #epsilon: number;
  readonly #defaultKeyHash: number;
  /** Owner number → sandbox id, and back. */
  #ids: string[] = [];
  #ownerOf = new Map<string, number>();
  /** Ring points sorted by hash, and the owner of each. */
  #ringHashes = new Uint32Array(0);
  #ringOwners = new Uint32Array(0);
  /** Owner number → index in the endpoint array of the latest pick. */
  #position = new Int32Array(0);

  /** @throws BatonError ERR_INVALID_CONFIG when epsilon is negative or not finite. */
  constructor(random: Random, epsilon: number = DEFAULT_CHBL_EPSILON) {
    if (!(epsilon >= 0) || !Number.isFinite(epsilon)) {
      throw new BatonError('ERR_INVALID_CONFIG', `ch-bl epsilon must be a finite number ≥ 0 (got ${epsilon})`, { details: { epsilon } });
    }
    this.#epsilon = epsilon;
    this.#defaultKeyHash = hashString(`default-key-${random.int(2 ** 31)}`);
  }

  pick(endpoints: readonly EndpointView[], key?: string): EndpointView | undefined {
    this.#sync(endpoints);
    const bound = this.#bound(endpoints);
    if (bound === undefined) return undefined;
    const length = this.#ringHashes.length;
    const start = lowerBound(this.#ringHashes, key === undefined ? this.#defaultKeyHash : hashString(key));
    for (let step = 0; step < length; step++) {
      const owner = this.#ringOwners[(start + step) % length] ?? 0;
      const endpoint = endpoints[this.#position[owner] ?? -1];
      if (endpoint !== undefined && isEligible(endpoint) && endpoint.inflight + 1 <= bound) return endpoint;
    }
    // Only reachable when endpoints have unequal capacities (the least loaded one is full):
    // fall back to the least loaded eligible endpoint rather than refuse.
    return pickLeastInflight(endpoints);
  }

  /** boundedLoad over the non-draining endpoints; undefined when all are draining. */
  #bound(endpoints: readonly EndpointView[]): number | undefined {
    let total = 0;
    let count = 0;
    for (const endpoint of endpoints) {
      if (endpoint.isDraining) continue;
      total += endpoint.inflight;
      count++;
    }
    return count === 0 ? undefined : boundedLoad(this.#epsilon, total, count);
  }

  #sync(endpoints: readonly EndpointView[]): void {
    if (this.#isSameOrder(endpoints)) return;
    if (endpoints.length === this.#ids.length && endpoints.every((e) => this.#ownerOf.has(e.sandboxId))) {
      this.#reposition(endpoints);
      return;
    }
    this.#rebuild(endpoints);
  }

  #isSameOrder(endpoints: readonly EndpointView[]): boolean {
    if (endpoints.length !== this.#ids.length) return false;
    for (let owner = 0; owner < this.#ids.length; owner++) {
      if (endpoints[this.#position[owner] ?? -1]?.sandboxId !== this.#ids[owner]) return false;
    }
    return true;
  }

  #reposition(endpoints: readonly EndpointView[]): void {
    // An owner missing from the array (ids repeated in it) must not keep a stale index.
    this.#position.fill(-1);
    endpoints.forEach((endpoint, index) => {
      const owner = this.#ownerOf.get(endpoint.sandboxId);
      if (owner !== undefined) this.#position[owner] = index;
    });
  }

  #rebuild(endpoints: readonly EndpointView[]): void {
    this.#ids = [...new Set(endpoints.map((e) => e.sandboxId))];
    this.#ownerOf = new Map(this.#ids.map((id, owner) => [id, owner]));
    this.#position = new Int32Array(this.#ids.length);
    this.#reposition(endpoints);
    const points: Array<{ hash: number; owner: number }> = [];
    this.#ids.forEach((id, owner) => {
      for (let v = 0; v < VIRTUAL_NODES; v++) points.push({ hash: hashString(`${id}#${v}`), owner });
    });
    // Equal hashes are ordered by sandbox id, so the ring does not depend on array order.
    const ids = this.#ids;
    points.sort((a, b) => a.hash - b.hash || compareStrings(ids[a.owner] ?? '', ids[b.owner] ?? ''));
    this.#ringHashes = Uint32Array.from(points, (p) => p.hash);
    this.#ringOwners = Uint32Array.from(points, (p) => p.owner);
  }
}

/** FNV-1a over UTF-16 code units, then murmur3's finaliser to spread nearby strings. */
export function hashString(value: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < value.length; i++) hash = Math.imul(hash ^ value.charCodeAt(i), 0x01000193);
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash >>> 0;
}

/** Index of the first ring point with hash ≥ `hash`, wrapping to 0 past the end. */
function lowerBound(hashes: Uint32Array, hash: number): number {
  let low = 0;
  let high = hashes.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if ((hashes[mid] ?? 0) < hash) low = mid + 1;
    else high = mid;
  }
  return low === hashes.length ? 0 : low;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
