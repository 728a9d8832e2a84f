import { execFile } from 'node:child_process';
import { access, chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BatonError } from './errors.ts';

const run = promisify(execFile);

/** The plane roles that get a certificate each. */
export const CERT_ROLES = ['controlplane', 'dataplane', 'worker'] as const;
export type CertRole = (typeof CERT_ROLES)[number];

export interface CertsInitOptions {
  /** The names and addresses the daemons are reached at (subject alternative names of every role's certificate). */
  readonly hosts: readonly string[];
  readonly days: number;
  /** Replace an existing CA (and so every certificate made from it). */
  readonly isForced?: boolean;
  /** The `openssl` binary; default `openssl` on the PATH. */
  readonly openssl?: string;
}

/** What `certsInit` wrote, by file. */
export interface CertFiles {
  readonly caCert: string;
  readonly caKey: string;
  readonly roles: Readonly<Record<CertRole, { readonly cert: string; readonly key: string }>>;
}

/** The files of a certificate directory (made or not). */
export function certFilesIn(dir: string): CertFiles {
  const roles = Object.fromEntries(CERT_ROLES.map((role) => [role, { cert: join(dir, `${role}.crt`), key: join(dir, `${role}.key`) }])) as CertFiles['roles'];
  return { caCert: join(dir, 'ca.crt'), caKey: join(dir, 'ca.key'), roles };
}

const HOST_RE = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/;

/** A SAN list (`IP:127.0.0.1,DNS:localhost`) from host names and addresses; a malformed host is ERR_INVALID_REQUEST. */
export function subjectAltNames(hosts: readonly string[]): string {
  if (hosts.length === 0) throw new BatonError('ERR_INVALID_REQUEST', 'at least one host is needed for the certificates');
  return hosts.map((host) => {
    if (isIP(host) !== 0) return `IP:${host}`;
    if (!HOST_RE.test(host)) throw new BatonError('ERR_INVALID_REQUEST', `'${host}' is neither an IP address nor a host name`);
    return `DNS:${host}`;
  }).join(',');
}

/**
 * Makes a cluster CA (EC P-256, its key mode 0600) in `dir` and, signed by it, one certificate per
 * plane role with `hosts` as subject alternative names and both serverAuth and clientAuth extended
 * key usage (each daemon serves and calls its peers with the same certificate: mutual TLS). The
 * certificates are made by the `openssl` CLI. An existing CA is kept (ERR_INVALID_REQUEST) unless
 * `isForced`.
 */
export async function certsInit(dir: string, options: CertsInitOptions): Promise<CertFiles> {
  if (!Number.isInteger(options.days) || options.days < 1 || options.days > 36_500) {
    throw new BatonError('ERR_INVALID_REQUEST', `days must be an integer from 1 to 36500 (got ${options.days})`);
  }
  const sans = subjectAltNames(options.hosts);
  const files = certFilesIn(dir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (options.isForced !== true && await exists(files.caCert)) {
    throw new BatonError('ERR_INVALID_REQUEST', `${files.caCert} exists: a new CA would invalidate every certificate made from it (--force to replace it)`);
  }
  const openssl = options.openssl ?? 'openssl';
  const days = String(options.days);
  try {
    await newKey(openssl, files.caKey);
    await opensslRun(openssl, [
      'req', '-x509', '-new', '-key', files.caKey, '-sha256', '-days', days, '-subj', '/O=Baton/CN=Baton cluster CA', '-out', files.caCert,
      '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    for (const role of CERT_ROLES) {
      const { cert, key } = files.roles[role];
      const csr = `${cert}.csr`;
      const ext = `${cert}.ext`;
      await newKey(openssl, key);
      await opensslRun(openssl, ['req', '-new', '-key', key, '-subj', `/O=Baton/OU=${role}/CN=baton-${role}`, '-out', csr]);
      await writeFile(ext, [
        'basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature', 'extendedKeyUsage=serverAuth,clientAuth', `subjectAltName=${sans}`, '',
      ].join('\n'));
      try {
        await opensslRun(openssl, ['x509', '-req', '-in', csr, '-CA', files.caCert, '-CAkey', files.caKey, '-CAcreateserial', '-sha256', '-days', days, '-extfile', ext, '-out', cert]);
      } finally {
        await rm(csr, { force: true });
        await rm(ext, { force: true });
      }
    }
  } finally {
    await rm(join(dir, 'ca.srl'), { force: true });
  }
  return files;
}

/** An EC P-256 private key in `path`, which is made 0600 before openssl writes into it (the key is never readable by others, not even for a moment). */
async function newKey(openssl: string, path: string): Promise<void> {
  await rm(path, { force: true });
  await writeFile(path, '', { mode: 0o600, flag: 'wx' });
  await chmod(path, 0o600);
  await opensslRun(openssl, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path]);
}

async function opensslRun(openssl: string, args: string[]): Promise<void> {
  try {
    await run(openssl, args, { timeout: 30_000 });
  } catch (err) {
    const e = err as Error & { code?: string; stderr?: string };
    if (e.code === 'ENOENT') throw new BatonError('ERR_PREREQUISITE_MISSING', `the openssl CLI was not found ('${openssl}'): it makes the certificates`, { cause: err });
    throw new BatonError('ERR_INTERNAL', `openssl ${args[0] ?? ''} failed: ${(e.stderr ?? e.message).trim()}`, { cause: err });
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
