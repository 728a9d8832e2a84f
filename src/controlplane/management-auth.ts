import type { IncomingHttpHeaders } from 'node:http';
import { bearerToken, type TokenRole } from '../api/tokens.ts';
import type { Clock } from '../core/clock.ts';
import { BatonError } from '../core/errors.ts';
import type { Principal, TokenRegistry } from './token-registry.ts';

/**
 * What a management call needs:
 *   read    viewer, deployer, admin   (GET of functions, sandboxes, logs, workers, data planes, /metrics)
 *   deploy  deployer, admin           (functions and artifacts)
 *   admin   admin                     (tokens, the audit log)
 * An invoker token may call no management route: it only invokes (on the data plane).
 */
export type Access = 'read' | 'deploy' | 'admin';

const ALLOWED: Readonly<Record<Access, readonly TokenRole[]>> = {
  read: ['viewer', 'deployer', 'admin'],
  deploy: ['deployer', 'admin'],
  admin: ['admin'],
};

/** With `authMode: none` every call acts as this: an unscoped admin without a token. */
const ANONYMOUS: Principal = { tokenId: undefined, role: 'admin', isUnscoped: true, inScope: () => true };

export interface ManagementAuthOptions {
  readonly mode: 'token' | 'none';
  readonly tokens: Pick<TokenRegistry, 'authenticate'>;
  readonly clock: Clock;
  /** Calls per second each token may make on average; 0: no limit. */
  readonly ratePerSecond: number;
  /** Calls a token may make at once after being idle (the bucket's size). */
  readonly burst: number;
}

interface Bucket {
  tokens: number;
  atMs: number;
}

/**
 * Authenticates and authorises management calls, and limits each token's rate with a token
 * bucket (refilled at `ratePerSecond`, holding at most `burst`): with 20/s and a burst of 40, a
 * token idle for 2 s may make 40 calls at once, then one every 50 ms; one more is 429
 * ERR_TOO_MANY_REQUESTS with `Retry-After`. Buckets are kept per token id, so there are at most as
 * many as tokens.
 */
export class ManagementAuth {
  readonly #o: ManagementAuthOptions;
  readonly #buckets = new Map<string, Bucket>();

  constructor(options: ManagementAuthOptions) {
    this.#o = options;
  }

  get isEnabled(): boolean {
    return this.#o.mode === 'token';
  }

  /**
   * The caller, once its token is valid, its role allows `access` and it is within its rate.
   * @throws BatonError ERR_UNAUTHENTICATED, ERR_FORBIDDEN or ERR_TOO_MANY_REQUESTS
   */
  check(headers: IncomingHttpHeaders, access: Access): Principal {
    if (this.#o.mode === 'none') return ANONYMOUS;
    const principal = this.#o.tokens.authenticate(bearerToken(headers.authorization));
    if (!ALLOWED[access].includes(principal.role)) {
      throw new BatonError('ERR_FORBIDDEN', `a ${principal.role} token may not make this call (it needs ${ALLOWED[access].join(' or ')})`);
    }
    this.#take(principal.tokenId as string);
    return principal;
  }

  #take(tokenId: string): void {
    const { ratePerSecond, burst } = this.#o;
    if (ratePerSecond <= 0) return;
    const nowMs = this.#o.clock.now();
    const bucket = this.#buckets.get(tokenId) ?? { tokens: burst, atMs: nowMs };
    bucket.tokens = Math.min(burst, bucket.tokens + ((nowMs - bucket.atMs) / 1000) * ratePerSecond);
    bucket.atMs = nowMs;
    this.#buckets.set(tokenId, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return;
    }
    const retryAfterSeconds = Math.max(1, Math.ceil((1 - bucket.tokens) / ratePerSecond));
    throw new BatonError('ERR_TOO_MANY_REQUESTS', `the token made more than ${ratePerSecond} management calls per second`, { details: { retryAfterSeconds } });
  }
}

/**
 * @throws BatonError ERR_FORBIDDEN when `name` is outside the principal's scope — whether or not a
 * function of that name exists (the same answer either way)
 */
export function requireScope(principal: Principal, name: string): void {
  if (!principal.inScope(name)) throw new BatonError('ERR_FORBIDDEN', `the token's scope does not cover function '${name}'`);
}
