import { createHash, timingSafeEqual } from 'node:crypto';
import { compileScopes, INVOKING_ROLES, TOKEN_LENGTH, type RoutingToken } from '../api/tokens.ts';
import { BatonError } from '../core/errors.ts';

interface HeldToken {
  readonly hash: Buffer;
  /** False for a role that does not invoke (viewer): its presentation is a 403, not a 401. */
  readonly mayInvoke: boolean;
  readonly inScope: (name: string) => boolean;
  readonly expiresAtMs: number | undefined;
  /** The token's bytes once one presentation matched the hash (in memory only; gone with the entry). */
  verified: Buffer | undefined;
}

/**
 * The tokens that may invoke, as the control plane pushes them with the routing view (hashes,
 * scopes, expiry; revoked ones are removed by a delta). Checking one costs a Map lookup by the
 * token's public id and a constant-time comparison — no call to the control plane. The first
 * presentation of a token is hashed (SHA-256) and compared with the pushed hash; once it matched,
 * the token's bytes are kept in this entry (memory only) and later presentations are compared with
 * them, in constant time too, without hashing: ~0.3 µs instead of ~2.5 µs per invocation. Only
 * functions whose spec says `auth: "token"` are checked; the others pay nothing.
 */
export class InvocationTokens {
  readonly #tokens = new Map<string, HeldToken>();
  /** The data plane's own token (asynchronous deliveries to itself), kept across snapshots. */
  #own: { readonly id: string; readonly held: HeldToken } | undefined;

  get size(): number {
    return this.#tokens.size;
  }

  /** Replaces every token (a routing snapshot); the data plane's own one stays. */
  replaceAll(tokens: readonly RoutingToken[]): void {
    this.#tokens.clear();
    for (const token of tokens) this.put(token);
    if (this.#own !== undefined) this.#tokens.set(this.#own.id, this.#own.held);
  }

  /**
   * Trusts `token` for every function until the process ends: the data plane's asynchronous
   * deliveries send it to its own invocation port (and it is stripped there like any other).
   */
  trustOwn(token: string, id: string, hash: string): void {
    this.#own = { id, held: { hash: Buffer.from(hash, 'hex'), mayInvoke: true, inScope: () => true, expiresAtMs: undefined, verified: undefined } };
    this.#tokens.set(id, this.#own.held);
  }

  put(token: RoutingToken): void {
    this.#tokens.set(token.id, { hash: Buffer.from(token.hash, 'hex'), mayInvoke: INVOKING_ROLES.includes(token.role), inScope: compileScopes(token.scopes), expiresAtMs: token.expiresAtMs, verified: undefined });
  }

  delete(id: string): void {
    if (id !== this.#own?.id) this.#tokens.delete(id);
  }

  /**
   * Undefined when `authorization` carries a live token whose scope covers `fn`; otherwise the
   * refusal: 401 ERR_UNAUTHENTICATED (none, unknown, revoked, expired) or 403 ERR_FORBIDDEN (a role
   * that does not invoke, or out of scope).
   */
  check(authorization: string | undefined, fn: string, nowMs: number): BatonError | undefined {
    const token = authorization === undefined ? undefined : presentedToken(authorization);
    // `baton_` + 12 hex id + `_` + secret: the id is at a fixed place.
    const held = token === undefined ? undefined : this.#tokens.get(token.slice(6, 18));
    if (token === undefined || held === undefined || !matches(held, token) || (held.expiresAtMs !== undefined && nowMs >= held.expiresAtMs)) {
      return new BatonError('ERR_UNAUTHENTICATED', `function '${fn}' needs an API token that may invoke it: Authorization: Bearer baton_…`);
    }
    if (!held.mayInvoke || !held.inScope(fn)) return new BatonError('ERR_FORBIDDEN', `the token may not invoke function '${fn}'`);
    return undefined;
  }
}

/** The token of `Bearer <token>` when it has a token's shape (length, prefix, separator), else undefined. */
function presentedToken(authorization: string): string | undefined {
  if (authorization.length < 7 + TOKEN_LENGTH || !/^bearer /i.test(authorization.slice(0, 7))) return undefined;
  const token = authorization.slice(7).trim();
  return token.length === TOKEN_LENGTH && token.startsWith('baton_') && token[18] === '_' ? token : undefined;
}

function matches(held: HeldToken, token: string): boolean {
  const presented = Buffer.from(token, 'latin1');
  if (held.verified !== undefined) return timingSafeEqual(presented, held.verified);
  if (!timingSafeEqual(held.hash, createHash('sha256').update(presented).digest())) return false;
  held.verified = presented;
  return true;
}
