import { createHash, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { BatonError } from '../core/errors.ts';
import type { Logger } from '../observability/logger.ts';
import type { CertRole } from '../core/certs.ts';
import { isClientVerified, peerCertRole, readTls, requireJoinSecretWithTls, type TlsConfig, type TlsMaterial } from './tls.ts';

/**
 * Credentials of the links between the planes (docs/security.md, "Links between the planes"):
 *
 *   join key       HKDF-SHA256 of the cluster's join secret. Every member (worker, data plane)
 *                  sends it on its calls to the control plane; a worker or data plane also
 *                  accepts it for its read-only views (a worker's sandbox list, a data plane's
 *                  routing view).
 *   command token  32 random bytes a worker or data plane makes when it starts and hands to the
 *                  control plane in its registration, over the authenticated link. It is the only
 *                  credential its commands (sandbox creations and deletions, logs, routing
 *                  updates, drain waits) are accepted with: another member, which knows the join
 *                  secret but never sees this token, cannot command it.
 *
 * Both travel as `authorization: Bearer …`, on every request over HTTP and once, at the upgrade,
 * for the RPC stream. They are compared in constant time (SHA-256 of both, `timingSafeEqual`).
 */

/** The shortest join secret accepted (characters). */
export const MIN_JOIN_SECRET_LENGTH = 16;

/** The join key (base64url) of a join secret; the secret itself never leaves the process. */
export function deriveJoinKey(joinSecret: string): string {
  return Buffer.from(hkdfSync('sha256', joinSecret, 'baton', 'baton/v1 join key', 32)).toString('base64url');
}

/** A fresh command token (32 random bytes, base64url). */
export function newCommandToken(): string {
  return randomBytes(32).toString('base64url');
}

/** A fresh join secret, for `baton up` (32 random bytes, base64url: 43 characters). */
export function newJoinSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** The `authorization` header value carrying `token`. */
export function bearer(token: string): string {
  return `Bearer ${token}`;
}

/**
 * What a daemon's config says of its links, checked at start: the join key (undefined: no join
 * secret, open, allowed on loopback only) and its TLS material (undefined: TLS off; it needs a join secret).
 * @throws BatonError ERR_INVALID_CONFIG (see readJoinSecret, checkOpenMode, readTls)
 */
export function readLinkCredentials(
  config: { readonly host: string; readonly joinSecret?: string | undefined; readonly joinSecretFile?: string | undefined } & TlsConfig, log: Logger,
): { readonly joinKey: string | undefined; readonly tls: TlsMaterial | undefined } {
  const joinSecret = readJoinSecret(config);
  checkOpenMode(config.host, joinSecret, log);
  const tls = readTls(config);
  requireJoinSecretWithTls(tls, joinSecret);
  return { joinKey: joinSecret === undefined ? undefined : deriveJoinKey(joinSecret), tls };
}

/**
 * The join secret a daemon is configured with: `joinSecret`, or the contents of `joinSecretFile`
 * (surrounding whitespace trimmed), or undefined when neither is set.
 * @throws BatonError ERR_INVALID_CONFIG when both are set, the file cannot be read, or the secret is too short
 */
export function readJoinSecret(config: { readonly joinSecret?: string | undefined; readonly joinSecretFile?: string | undefined }): string | undefined {
  if (config.joinSecret !== undefined && config.joinSecretFile !== undefined) {
    throw new BatonError('ERR_INVALID_CONFIG', 'joinSecret and joinSecretFile cannot both be set', { details: { key: 'joinSecretFile' } });
  }
  let secret = config.joinSecret;
  if (config.joinSecretFile !== undefined) {
    try {
      secret = readFileSync(config.joinSecretFile, 'utf8').trim();
    } catch (err) {
      throw new BatonError('ERR_INVALID_CONFIG', `joinSecretFile: cannot read ${config.joinSecretFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { details: { key: 'joinSecretFile' } });
    }
  }
  if (secret !== undefined && secret.length < MIN_JOIN_SECRET_LENGTH) {
    throw new BatonError('ERR_INVALID_CONFIG', `the join secret must be at least ${MIN_JOIN_SECRET_LENGTH} characters`, { details: { key: config.joinSecretFile === undefined ? 'joinSecret' : 'joinSecretFile', rule: `length >= ${MIN_JOIN_SECRET_LENGTH}` } });
  }
  return secret;
}

/** Whether `host` (a listen address) is reachable only from this machine. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * A daemon without a join secret runs open, on loopback only: its internal API is then anyone's
 * on this machine, which is said once, loudly. Listening beyond loopback needs a join secret.
 * @throws BatonError ERR_INVALID_CONFIG when `host` is not loopback and there is no secret
 */
export function checkOpenMode(host: string, secret: string | undefined, log: Logger): void {
  if (secret !== undefined) return;
  if (!isLoopbackHost(host)) {
    throw new BatonError('ERR_INVALID_CONFIG', `listening on ${host} needs a join secret (joinSecret or joinSecretFile): without one, anyone who reaches the internal API could join the cluster or command it`, { details: { key: 'joinSecret', host } });
  }
  log.warn({ host }, 'NO JOIN SECRET: the internal API is unauthenticated (anyone on this machine can join or command this daemon); set joinSecret or joinSecretFile');
}

/** Checks a bearer against a set of accepted tokens, in constant time. */
export class CredentialSet {
  readonly #digests: readonly Buffer[];

  constructor(tokens: readonly string[]) {
    this.#digests = tokens.map(digestOf);
  }

  /** Whether `authorization` is `Bearer <one of the tokens>`. */
  accepts(authorization: string | undefined): boolean {
    if (authorization === undefined || !authorization.startsWith('Bearer ')) return false;
    const given = digestOf(authorization.slice(7));
    let isMatch = false;
    // Every token is compared (no early exit): the time says nothing about which one matched.
    for (const digest of this.#digests) isMatch = timingSafeEqual(given, digest) || isMatch;
    return isMatch;
  }
}

function digestOf(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/** What an internal call needs: nothing, a member's credential (join key) or the control plane's (command token). */
export type AccessLevel = 'open' | 'member' | 'control-plane';

export interface InternalGuardOptions {
  /** Accepted for `member` calls (the join key, and the command token, which the control plane holds). */
  readonly member: CredentialSet;
  /** Accepted for `control-plane` calls (this daemon's command token); undefined where there is none (the control plane). */
  readonly controlPlane?: CredentialSet;
  /** What a request needs, by method and path (without the query). */
  readonly levelOf: (method: string, pathname: string) => AccessLevel;
  /** What an RPC upgrade needs (every call on the stream is then allowed). */
  readonly rpcLevel: Exclude<AccessLevel, 'open'>;
  readonly log: Logger;
  /** With TLS: a call that is not open also needs a client certificate from the cluster CA (besides its credential). */
  readonly isClientCertRequired?: boolean;
  /**
   * With TLS: the plane roles whose certificate may make a call that is not open (by method and
   * path, without the query; undefined: any of the cluster's), so that a worker's certificate
   * cannot register a data plane nor a data plane's command a worker. The role is the certificate
   * subject's OU (`baton certs init`).
   */
  readonly certRolesOf?: (method: string, pathname: string) => readonly CertRole[] | undefined;
  /** With TLS: the roles whose certificate may open the RPC stream (each call on it is then judged by `certRolesOf` too, see `admitsOnStream`). */
  readonly rpcCertRoles?: readonly CertRole[];
}

/** Peer addresses whose refusal has been logged, at most this many (then refusals are counted only). */
const MAX_LOGGED_PEERS = 1024;

/**
 * The check in front of a daemon's internal API. A refused call is answered 401
 * ERR_UNAUTHENTICATED, changes nothing, and is logged once per peer address (never with what it
 * sent).
 */
export class InternalGuard {
  readonly #o: InternalGuardOptions;
  readonly #loggedPeers = new Set<string>();
  #refusals = 0;

  constructor(options: InternalGuardOptions) {
    this.#o = options;
  }

  /** Refusals so far (tests, diagnostics). */
  get refusals(): number {
    return this.#refusals;
  }

  /** True when the request may go on; otherwise it has been answered 401. */
  admit(req: IncomingMessage, res: ServerResponse): boolean {
    const method = req.method ?? 'GET';
    const pathname = pathOf(req.url ?? '/');
    const level = this.#o.levelOf(method, pathname);
    if (level === 'open' || this.#accepts(level, req, method, pathname)) return true;
    this.#refuse(req, `${method} ${pathname}`);
    req.resume();
    res.shouldKeepAlive = false;
    const body = JSON.stringify(unauthenticated().toBody());
    res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer', 'content-length': Buffer.byteLength(body) });
    res.end(body);
    return false;
  }

  /** True when the RPC upgrade may go on; otherwise the socket has been answered 401 and closed. */
  admitUpgrade(req: IncomingMessage, socket: Duplex): boolean {
    if (this.#accepts(this.#o.rpcLevel, req, req.method ?? 'GET', pathOf(req.url ?? '/')) && this.#hasRole(this.#o.rpcCertRoles, req)) return true;
    this.#refuse(req, 'RPC upgrade');
    const body = JSON.stringify(unauthenticated().toBody());
    socket.end(`HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\nwww-authenticate: Bearer\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    return false;
  }

  /**
   * Whether a call on an RPC stream opened by `upgrade` may be made by that stream's certificate
   * (`certRolesOf`); a refusal is counted and logged like any other.
   */
  admitsOnStream(upgrade: IncomingMessage, method: string, path: string): boolean {
    const pathname = pathOf(path);
    if (this.#o.levelOf(method, pathname) === 'open' || this.#hasRole(this.#o.certRolesOf?.(method, pathname), upgrade)) return true;
    this.#refuse(upgrade, `${method} ${pathname} on the RPC stream`);
    return false;
  }

  #hasRole(roles: readonly CertRole[] | undefined, req: IncomingMessage): boolean {
    if (roles === undefined) return true;
    const role = peerCertRole(req);
    return role !== undefined && roles.includes(role);
  }

  #accepts(level: Exclude<AccessLevel, 'open'>, req: IncomingMessage, method: string, pathname: string): boolean {
    if (this.#o.isClientCertRequired === true && !isClientVerified(req)) return false;
    if (!this.#hasRole(this.#o.certRolesOf?.(method, pathname), req)) return false;
    const authorization = req.headers.authorization;
    if (level === 'member') return this.#o.member.accepts(authorization);
    return this.#o.controlPlane?.accepts(authorization) ?? false;
  }

  #refuse(req: IncomingMessage, what: string): void {
    this.#refusals++;
    const peer = req.socket.remoteAddress ?? 'unknown';
    if (this.#loggedPeers.has(peer) || this.#loggedPeers.size >= MAX_LOGGED_PEERS) return;
    this.#loggedPeers.add(peer);
    this.#o.log.warn({ peer, call: what, hasCredential: req.headers.authorization !== undefined }, 'refused an internal call without a valid credential (further refusals from this peer are not logged)');
  }
}

/** `url` without its query. */
function pathOf(url: string): string {
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

/** The refusal of an internal call without a valid credential (says nothing about which was expected). */
export function unauthenticated(): BatonError {
  return new BatonError('ERR_UNAUTHENTICATED', 'this call needs a valid cluster credential');
}
