import type { RoutingChange } from '../api/dataplane.ts';
import {
  compileScopes, createTokenRequestSchema, generateToken, hashToken, tokenId, tokenMatches,
  type RoutingToken, type TokenRecord, type TokenRole,
} from '../api/tokens.ts';
import { parseOrThrow } from '../api/validate.ts';
import { wallTimeMs } from '../core/clock.ts';
import { BatonError } from '../core/errors.ts';
import type { Logger } from '../observability/logger.ts';
import type { Store } from '../store/store.ts';

/** Who made a call: the token's id (undefined with `authMode: none`), its role and its scope. */
export interface Principal {
  readonly tokenId: string | undefined;
  readonly role: TokenRole;
  /** False when the token has scopes. */
  readonly isUnscoped: boolean;
  inScope(name: string): boolean;
}

interface TokenEntry {
  readonly record: TokenRecord;
  readonly inScope: (name: string) => boolean;
  readonly expiresAtMs: number | undefined;
}

export interface TokenRegistryOptions {
  readonly store: Store;
  readonly log: Logger;
  /** Where token changes go to reach the data planes (as the function registry's). */
  readonly routing: { publish(change: RoutingChange): void; delivered(): Promise<void> };
  /** Wall-clock epoch milliseconds (expiry); default Date.now. */
  readonly now?: () => number;
}

/**
 * The API tokens: created (the token shown once, only its hash kept), listed (never a secret),
 * revoked (the record stays, marked, so that a revoked bootstrap token is not registered again),
 * and checked for every management call — by id, then the hashes compared in constant time.
 * Tokens that may invoke are pushed to the data planes with the routing view; a creation or a
 * revocation is answered once the connected data planes have it, so a revoked token is refused
 * there from the moment `revoke` returns.
 */
export class TokenRegistry {
  readonly #o: TokenRegistryOptions;
  readonly #now: () => number;
  readonly #tokens = new Map<string, TokenEntry>();

  constructor(options: TokenRegistryOptions) {
    this.#o = options;
    this.#now = options.now ?? wallTimeMs;
  }

  async load(): Promise<void> {
    for (const record of await this.#o.store.list<TokenRecord>('tokens')) this.#tokens.set(record.id, toEntry(record));
  }

  /**
   * Registers `token` as an admin token unless a token of its id is known (revoked or not).
   * @throws BatonError ERR_INVALID_CONFIG when it is not a well-formed token
   */
  async bootstrap(token: string): Promise<boolean> {
    const id = tokenId(token);
    if (id === undefined) throw new BatonError('ERR_INVALID_CONFIG', 'the admin token file does not hold a Baton token (baton_<12 hex>_<43 base64url>)');
    if (this.#tokens.has(id)) return false;
    const record: TokenRecord = { id, hash: hashToken(token), role: 'admin', scopes: [], description: 'bootstrap admin token', createdAt: new Date(this.#now()).toISOString() };
    await this.#put(record);
    this.#o.log.info({ tokenId: id }, 'bootstrap admin token registered');
    return true;
  }

  /**
   * A new token; the answer is the only place the token itself ever appears.
   * @throws BatonError ERR_INVALID_REQUEST for a bad request (an admin token with scopes included)
   */
  async create(body: unknown, by: Principal): Promise<{ token: string; record: TokenRecord }> {
    const request = parseOrThrow(createTokenRequestSchema, body, 'ERR_INVALID_REQUEST', 'token request');
    if (request.role === 'admin' && request.scopes.length > 0) {
      throw new BatonError('ERR_INVALID_REQUEST', 'an admin token cannot have scopes (it manages tokens, which are not limited to functions)', { details: { field: 'scopes' } });
    }
    const { token, id } = generateToken();
    const nowMs = this.#now();
    const record: TokenRecord = {
      id, hash: hashToken(token), role: request.role, scopes: [...new Set(request.scopes)], createdAt: new Date(nowMs).toISOString(),
      ...(request.description === undefined ? {} : { description: request.description }),
      ...(by.tokenId === undefined ? {} : { createdBy: by.tokenId }),
      ...(request.expiresInMs === undefined ? {} : { expiresAt: new Date(nowMs + request.expiresInMs).toISOString() }),
    };
    await this.#put(record);
    await this.#o.routing.delivered();
    this.#o.log.info({ tokenId: id, role: record.role, scopes: record.scopes, by: by.tokenId }, 'token created');
    return { token, record };
  }

  /** Every token, revoked ones included, newest first; hashes left out. */
  list(): Omit<TokenRecord, 'hash'>[] {
    return [...this.#tokens.values()].map((e) => withoutHash(e.record)).sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0));
  }

  /**
   * Revokes a token: refused from now on by the control plane, and by every connected data plane
   * once this resolves. Revoking a revoked token changes nothing.
   * @throws BatonError ERR_TOKEN_NOT_FOUND
   */
  async revoke(id: string, by: Principal): Promise<Omit<TokenRecord, 'hash'>> {
    const entry = this.#tokens.get(id);
    if (entry === undefined) throw new BatonError('ERR_TOKEN_NOT_FOUND', `no token '${id}'`);
    if (entry.record.revokedAt !== undefined) return withoutHash(entry.record);
    const record: TokenRecord = { ...entry.record, revokedAt: new Date(this.#now()).toISOString() };
    await this.#put(record);
    await this.#o.routing.delivered();
    this.#o.log.info({ tokenId: id, by: by.tokenId }, 'token revoked');
    return withoutHash(record);
  }

  /**
   * The principal of a bearer token.
   * @throws BatonError ERR_UNAUTHENTICATED for an unknown, mismatching, revoked or expired token
   */
  authenticate(token: string | undefined): Principal {
    const id = token === undefined ? undefined : tokenId(token);
    const entry = id === undefined ? undefined : this.#tokens.get(id);
    if (token === undefined || entry === undefined || !tokenMatches(token, entry.record.hash) || !this.#isLive(entry)) {
      throw unauthenticated(token === undefined ? 'this call needs an API token: Authorization: Bearer baton_…' : 'the API token is unknown, revoked or expired');
    }
    return { tokenId: entry.record.id, role: entry.record.role, isUnscoped: entry.record.scopes.length === 0, inScope: entry.inScope };
  }

  /**
   * The live tokens, as the data planes hold them (the routing snapshot's `tokens`): every role, so
   * that a data plane tells a token that may not invoke (403) from one it does not know (401).
   */
  routingTokens(): RoutingToken[] {
    const tokens: RoutingToken[] = [];
    for (const entry of this.#tokens.values()) {
      if (this.#isLive(entry)) tokens.push(toRoutingToken(entry));
    }
    return tokens;
  }

  #isLive(entry: TokenEntry): boolean {
    return entry.record.revokedAt === undefined && (entry.expiresAtMs === undefined || this.#now() < entry.expiresAtMs);
  }

  async #put(record: TokenRecord): Promise<void> {
    await this.#o.store.put('tokens', record.id, record);
    const entry = toEntry(record);
    this.#tokens.set(record.id, entry);
    this.#o.routing.publish(record.revokedAt === undefined
      ? { type: 'token.put', token: toRoutingToken(entry) }
      : { type: 'token.delete', id: record.id });
  }
}

export function unauthenticated(message: string): BatonError {
  return new BatonError('ERR_UNAUTHENTICATED', message);
}

function toEntry(record: TokenRecord): TokenEntry {
  return { record, inScope: compileScopes(record.scopes), expiresAtMs: record.expiresAt === undefined ? undefined : Date.parse(record.expiresAt) };
}

function toRoutingToken(entry: TokenEntry): RoutingToken {
  const { id, hash, role, scopes } = entry.record;
  return { id, hash, role, scopes, ...(entry.expiresAtMs === undefined ? {} : { expiresAtMs: entry.expiresAtMs }) };
}

function withoutHash(record: TokenRecord): Omit<TokenRecord, 'hash'> {
  const { hash: _hash, ...rest } = record;
  return rest;
}
