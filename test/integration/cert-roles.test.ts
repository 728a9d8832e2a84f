import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { Agent, request } from 'undici';
import { certsInit, CERT_ROLES, type CertRole } from '../../src/core/certs.ts';
import { CredentialSet, InternalGuard, type AccessLevel } from '../../src/transport/internal-auth.ts';
import { peerCertRole, serverTlsOptions } from '../../src/transport/tls.ts';

/**
 * The plane role a certificate names (its subject's OU, as `baton certs init` writes it) and the
 * guard's check of it, over real TLS: a call that needs the control plane's credential is refused
 * with another plane's certificate even when the credential is right, as a worker and a data plane
 * configure their guards under TLS.
 */

const COMMAND_TOKEN = 'a-command-token-of-the-test-0123456789';
let dir: string;
let url: string;
let close: () => Promise<void>;
const agents = new Map<CertRole, Agent>();
const seenRoles: (CertRole | undefined)[] = [];

const levelOf = (_method: string, pathname: string): AccessLevel => (pathname === '/internal/v1/sandboxes' ? 'control-plane' : pathname === '/internal/v1/view' ? 'member' : 'open');
const CONTROL_PLANE: readonly CertRole[] = ['controlplane'];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'baton-cert-roles-'));
  const files = await certsInit(join(dir, 'certs'), { hosts: ['127.0.0.1'], days: 1 });
  const material = { cert: await readFile(files.roles.worker.cert), key: await readFile(files.roles.worker.key), ca: await readFile(files.caCert) };
  const guard = new InternalGuard({
    member: new CredentialSet(['a-join-key-of-the-test', COMMAND_TOKEN]), controlPlane: new CredentialSet([COMMAND_TOKEN]),
    levelOf, rpcLevel: 'control-plane', log: pino({ level: 'silent' }),
    certRolesOf: (method, pathname) => (levelOf(method, pathname) === 'control-plane' ? CONTROL_PLANE : undefined),
  });
  const server = createServer(serverTlsOptions(material, 'required'), (req, res) => {
    seenRoles.push(peerCertRole(req));
    if (!guard.admit(req, res)) return;
    res.writeHead(200, { 'content-type': 'text/plain' }).end('admitted');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  close = () => new Promise((resolve) => server.close(() => resolve()));
  for (const role of CERT_ROLES) {
    agents.set(role, new Agent({ connect: { ca: material.ca, cert: await readFile(files.roles[role].cert), key: await readFile(files.roles[role].key) } }));
  }
});

after(async () => {
  await Promise.all([...agents.values()].map((a) => a.close()));
  await close?.();
  await rm(dir, { recursive: true, force: true });
});

async function status(role: CertRole, path: string, token: string): Promise<number> {
  const res = await request(`${url}${path}`, { dispatcher: agents.get(role) as Agent, headers: { authorization: `Bearer ${token}` } });
  await res.body.dump();
  return res.statusCode;
}

test('a certificate names its plane role, read from the verified peer certificate', async () => {
  seenRoles.length = 0;
  for (const role of CERT_ROLES) await status(role, '/healthz', COMMAND_TOKEN);
  assert.deepEqual(seenRoles, [...CERT_ROLES]);
});

test('a command needs the control plane\'s certificate besides its credential; a view any of the cluster\'s', async () => {
  assert.equal(await status('controlplane', '/internal/v1/sandboxes', COMMAND_TOKEN), 200);
  assert.equal(await status('worker', '/internal/v1/sandboxes', COMMAND_TOKEN), 401, 'another worker\'s certificate, with the right command token');
  assert.equal(await status('dataplane', '/internal/v1/sandboxes', COMMAND_TOKEN), 401, 'a data plane\'s certificate, with the right command token');
  assert.equal(await status('controlplane', '/internal/v1/sandboxes', 'a-join-key-of-the-test'), 401, 'the control plane\'s certificate does not stand in for the command token');
  for (const role of CERT_ROLES) assert.equal(await status(role, '/internal/v1/view', 'a-join-key-of-the-test'), 200, role);
});
