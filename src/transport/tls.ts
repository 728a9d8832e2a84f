import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { CERT_ROLES, type CertRole } from '../core/certs.ts';
import { BatonError } from '../core/errors.ts';

/** A daemon's TLS keys (flat, like the rest of its config): all three or none. */
export interface TlsConfig {
  readonly tlsCertFile?: string | undefined;
  readonly tlsKeyFile?: string | undefined;
  readonly tlsCaFile?: string | undefined;
}

/** A daemon's certificate and key, and the cluster CA it trusts: what it serves with and calls its peers with. */
export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer;
}

const TLS_KEYS = ['tlsCertFile', 'tlsKeyFile', 'tlsCaFile'] as const;

/**
 * The TLS material a daemon's config names, read once at start; undefined when TLS is off (none
 * of the keys set). Some but not all set, or a file that cannot be read: ERR_INVALID_CONFIG.
 */
export function readTls(config: TlsConfig): TlsMaterial | undefined {
  const set = TLS_KEYS.filter((key) => config[key] !== undefined);
  if (set.length === 0) return undefined;
  if (set.length < TLS_KEYS.length) {
    const missing = TLS_KEYS.filter((key) => config[key] === undefined);
    throw new BatonError('ERR_INVALID_CONFIG', `TLS needs tlsCertFile, tlsKeyFile and tlsCaFile together (missing ${missing.join(', ')})`, { details: { key: missing[0] } });
  }
  const read = (key: (typeof TLS_KEYS)[number]): Buffer => {
    const path = config[key] as string;
    try {
      return readFileSync(path);
    } catch (err) {
      throw new BatonError('ERR_INVALID_CONFIG', `${key}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { details: { key } });
    }
  };
  return { cert: read('tlsCertFile'), key: read('tlsKeyFile'), ca: read('tlsCaFile') };
}

/**
 * TLS options of a server. `clientCert`: `required` — a client without a certificate from the
 * cluster CA fails the handshake (the worker's port, the data plane's internal port); `requested` —
 * one is asked for and checked, but a client without one still connects (the control plane's port,
 * where people with only an API token reach the management API; `isClientVerified` tells the two
 * apart).
 */
export function serverTlsOptions(tls: TlsMaterial, clientCert: 'required' | 'requested'): { cert: Buffer; key: Buffer; ca: Buffer; requestCert: boolean; rejectUnauthorized: boolean; minVersion: 'TLSv1.2' } {
  return { cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: clientCert === 'required', minVersion: 'TLSv1.2' };
}

/** What a TLS client trusts (the cluster CA) and, inside the cluster, the certificate it shows (the CLI has none). */
export interface ClientTls {
  readonly ca: Buffer;
  readonly cert?: Buffer | undefined;
  readonly key?: Buffer | undefined;
}

/** TLS options of a client (undici's `connect`, `https.request`): the cluster CA and, where there is one, this daemon's certificate. */
export function clientTlsOptions(tls: ClientTls): { ca: Buffer; cert?: Buffer; key?: Buffer } {
  return tls.cert === undefined || tls.key === undefined ? { ca: tls.ca } : { ca: tls.ca, cert: tls.cert, key: tls.key };
}

/**
 * Whether the request came over TLS with a client certificate that the cluster CA signed.
 * `authorized` alone is not enough: on a resumed TLS session of a client that showed no
 * certificate, Node reports the socket authorized (there was nothing to fail verification), so the
 * peer's certificate must be there too (a resumed session of a member keeps it).
 */
export function isClientVerified(req: IncomingMessage): boolean {
  const socket = req.socket as Partial<TLSSocket>;
  return socket.authorized === true && socket.getPeerCertificate?.().raw !== undefined;
}

/**
 * The plane role a verified client certificate names (its subject's OU, as `baton certs init`
 * writes it: `/O=Baton/OU=worker/CN=baton-worker`), or undefined (no verified certificate, or no
 * role of Baton's in it).
 */
export function peerCertRole(req: IncomingMessage): CertRole | undefined {
  if (!isClientVerified(req)) return undefined;
  const ou = (req.socket as TLSSocket).getPeerCertificate().subject?.OU;
  const units = Array.isArray(ou) ? ou : ou === undefined ? [] : [ou];
  // One role per certificate: a certificate that names several is no plane's.
  const roles = units.filter((unit): unit is CertRole => (CERT_ROLES as readonly string[]).includes(unit));
  return roles.length === 1 ? roles[0] : undefined;
}

/**
 * TLS adds to the join key, it does not replace it: a daemon with TLS and no join secret is
 * refused (ERR_INVALID_CONFIG), so that a certificate alone never makes a member.
 */
export function requireJoinSecretWithTls(tls: TlsMaterial | undefined, joinSecret: string | undefined): void {
  if (tls !== undefined && joinSecret === undefined) {
    throw new BatonError('ERR_INVALID_CONFIG', 'TLS (tlsCertFile, tlsKeyFile, tlsCaFile) needs a join secret too (joinSecret or joinSecretFile)', { details: { key: 'joinSecret' } });
  }
}
