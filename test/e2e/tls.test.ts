import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';
import { CERT_ROLES, certFilesIn, certsInit, type CertRole } from '../../src/core/certs.ts';
import { RpcConnection } from '../../src/transport/rpc-client.ts';
import { memberHeaders, ROOT, runCliProcess, startCluster, type Cluster } from '../kit/cluster.ts';
import { startUp } from '../kit/up.ts';
import { waitFor } from '../kit/wait-for.ts';

/**
 * A cluster whose three daemons run with TLS (certificates from `baton certs init`, made by the
 * openssl CLI): functions deploy and run over https, the planes talk over mutual TLS, a plain-text
 * client is refused on every port and a certificate of another CA makes no member.
 */

const run = promisify(execFile);
let dir: string;
let cluster: Cluster;
/** Trusts the cluster CA and shows no certificate (a user, the CLI). */
let userAgent: Agent;
/** Trusts the cluster CA and shows a worker certificate of another CA. */
let foreignAgent: Agent;
/** Trusts the cluster CA and shows the cluster's own worker certificate. */
let memberAgent: Agent;

const tlsArgs = (role: CertRole): string[] => {
  const files = certFilesIn(join(dir, 'certs'));
  return ['--tls-cert-file', files.roles[role].cert, '--tls-key-file', files.roles[role].key, '--tls-ca-file', files.caCert];
};

/** An agent that trusts the cluster CA and shows the cluster's certificate of `role`. */
async function roleAgent(role: CertRole): Promise<Agent> {
  const files = certFilesIn(join(dir, 'certs'));
  return new Agent({ connect: { ca: await readFile(files.caCert), cert: await readFile(files.roles[role].cert), key: await readFile(files.roles[role].key) } });
}

const cli = (...args: string[]) => runCliProcess([...args, '--url', cluster.cpUrl, '--ca', certFilesIn(join(dir, 'certs')).caCert], { BATON_DATAPLANE_URL: cluster.dpUrl });

/** A plain-text HTTP/1.1 request to `url`'s port: resolves with its status, or rejects when the connection is refused or closed. */
function plainRequest(url: string, path: string): Promise<number> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port: Number(port), path, method: 'GET', headers: memberHeaders(), agent: false, timeout: 10_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

async function call(agent: Agent, url: string, init: { method?: 'GET' | 'POST'; body?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await request(url, { dispatcher: agent, method: init.method ?? 'GET', headers: { 'content-type': 'application/json', ...init.headers }, ...(init.body === undefined ? {} : { body: init.body }) });
  const text = await res.body.text();
  return { status: res.statusCode, body: text === '' ? {} : JSON.parse(text) as Record<string, unknown> };
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'baton-tls-'));
  const files = await certsInit(join(dir, 'certs'), { hosts: ['127.0.0.1', 'localhost'], days: 2 });
  const foreign = await certsInit(join(dir, 'foreign'), { hosts: ['127.0.0.1', 'localhost'], days: 2 });
  const ca = await readFile(files.caCert);
  userAgent = new Agent({ connect: { ca } });
  foreignAgent = new Agent({ connect: { ca, cert: await readFile(foreign.roles.worker.cert), key: await readFile(foreign.roles.worker.key) } });
  memberAgent = new Agent({ connect: { ca, cert: await readFile(files.roles.worker.cert), key: await readFile(files.roles.worker.key) } });
  cluster = await startCluster({ controlplane: tlsArgs('controlplane'), worker: tlsArgs('worker'), dataplane: tlsArgs('dataplane') });
});

after(async () => {
  await cluster?.stop();
  await Promise.all([userAgent?.close(), foreignAgent?.close(), memberAgent?.close()]);
  await rm(dir, { recursive: true, force: true });
});

describe('baton certs init', () => {
  it('makes a CA and one certificate per role that openssl verifies, with the hosts as SANs and serverAuth + clientAuth', async () => {
    const files = certFilesIn(join(dir, 'certs'));
    assert.equal((await stat(files.caKey)).mode & 0o777, 0o600);
    for (const role of CERT_ROLES) {
      const verified = await run('openssl', ['verify', '-CAfile', files.caCert, files.roles[role].cert]);
      assert.match(verified.stdout, /: OK/);
      const text = (await run('openssl', ['x509', '-in', files.roles[role].cert, '-noout', '-text'])).stdout;
      assert.match(text, /IP Address:127\.0\.0\.1/);
      assert.match(text, /DNS:localhost/);
      assert.match(text, /TLS Web Server Authentication, TLS Web Client Authentication/);
      assert.match(text, new RegExp(`OU ?= ?${role}`));
      assert.equal((await stat(files.roles[role].key)).mode & 0o777, 0o600);
    }
    // A certificate of another CA is not one of this cluster's.
    await assert.rejects(run('openssl', ['verify', '-CAfile', files.caCert, certFilesIn(join(dir, 'foreign')).roles.worker.cert]));
  });

  it('keeps an existing CA unless --force, and refuses a malformed host', async () => {
    const caBefore = await readFile(certFilesIn(join(dir, 'foreign')).caCert, 'utf8');
    const again = await runCliProcess(['certs', 'init', join(dir, 'foreign')]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /ERR_INVALID_REQUEST.*exists/);
    assert.equal(await readFile(certFilesIn(join(dir, 'foreign')).caCert, 'utf8'), caBefore);
    const bad = await runCliProcess(['certs', 'init', join(dir, 'bad'), '--hosts', 'exa mple']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /ERR_INVALID_REQUEST/);
    const forced = await runCliProcess(['certs', 'init', join(dir, 'foreign'), '--force', '--hosts', '127.0.0.1']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.notEqual(await readFile(certFilesIn(join(dir, 'foreign')).caCert, 'utf8'), caBefore);
  });
});

describe('a cluster with TLS', () => {
  it('advertises https on every port', () => {
    for (const url of [cluster.cpUrl, cluster.dpUrl, cluster.dpInternalUrl, cluster.workerUrl]) assert.match(url, /^https:\/\//);
  });

  it('deploys through the CLI with --ca and serves a cold then a warm invocation over https', async () => {
    const deployed = await cli('deploy', 'hello-tls', '--dir', join(ROOT, 'examples/hello'), '--handler', 'index.handler');
    assert.equal(deployed.code, 0, deployed.stderr);
    const cold = await call(userAgent, `${cluster.dpUrl}/fn/hello-tls/greet`);
    assert.equal(cold.status, 200, JSON.stringify(cold.body));
    const warm = await call(userAgent, `${cluster.dpUrl}/fn/hello-tls/greet`);
    assert.equal(warm.status, 200);
    assert.equal(typeof cold.body['sandboxId'], 'string');
    assert.equal(warm.body['sandboxId'], cold.body['sandboxId']);
    const listed = await cli('list', '--json');
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /hello-tls/);
  });

  it('runs an asynchronous invocation, delivered by the data plane to its own https port', async () => {
    const accepted = await call(userAgent, `${cluster.dpUrl}/fn/hello-tls/greet`, { method: 'POST', body: '{}', headers: { 'x-baton-invocation-type': 'Event' } });
    assert.equal(accepted.status, 202, JSON.stringify(accepted.body));
    const id = accepted.body['id'] as string;
    const done = await waitFor(async () => {
      const view = await call(userAgent, `${cluster.dpUrl}/v1/invocations/${id}`);
      return view.body['state'] === 'succeeded' || view.body['state'] === 'dead-lettered' ? view.body : undefined;
    }, { timeoutMs: 30_000, message: 'the asynchronous invocation to finish' });
    assert.equal(done['state'], 'succeeded', JSON.stringify(done));
  });

  it('the CLI without the CA cannot reach the https control plane', async () => {
    const res = await runCliProcess(['list', '--url', cluster.cpUrl]);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /ERR_UNAVAILABLE/);
  });

  it('refuses a plain-text client on every port', async () => {
    await assert.rejects(plainRequest(cluster.cpUrl, '/v1/functions'));
    await assert.rejects(plainRequest(cluster.cpUrl, '/internal/v1/workers'));
    await assert.rejects(plainRequest(cluster.dpUrl, '/fn/hello-tls/greet'));
    await assert.rejects(plainRequest(cluster.dpInternalUrl, '/internal/v1/routing'));
    await assert.rejects(plainRequest(cluster.workerUrl, '/internal/v1/sandboxes'));
  });

  it('serves the management API to a TLS client without a certificate, and no internal call', async () => {
    const listed = await call(userAgent, `${cluster.cpUrl}/v1/functions`);
    assert.equal(listed.status, 200);
    const internal = await call(userAgent, `${cluster.cpUrl}/internal/v1/workers/register`, { method: 'POST', body: '{}', headers: memberHeaders() });
    assert.equal(internal.status, 401);
    assert.equal((internal.body['error'] as { code: string }).code, 'ERR_UNAUTHENTICATED');
    // The worker's port and the data plane's internal port want a cluster certificate at the handshake.
    await assert.rejects(call(userAgent, `${cluster.workerUrl}/internal/v1/sandboxes`, { headers: memberHeaders() }));
    await assert.rejects(call(userAgent, `${cluster.dpInternalUrl}/healthz`));
  });

  it('a certificate of another CA cannot register a worker or a data plane, nor open the RPC stream; the cluster\'s own gets past the check only for its own role\'s calls', async () => {
    for (const path of ['/internal/v1/workers/register', '/internal/v1/dataplanes/register']) {
      const foreign = await call(foreignAgent, `${cluster.cpUrl}${path}`, { method: 'POST', body: '{}', headers: memberHeaders() });
      assert.equal(foreign.status, 401, path);
      assert.equal((foreign.body['error'] as { code: string }).code, 'ERR_UNAUTHENTICATED');
    }
    // With the cluster's certificate of the right role and the join key a call reaches the route
    // (which finds the body malformed); with another role's, it is refused like a stranger's.
    const dataplaneAgent = await roleAgent('dataplane');
    try {
      for (const [agent, path, status] of [
        [memberAgent, '/internal/v1/workers/register', 400], [dataplaneAgent, '/internal/v1/dataplanes/register', 400],
        [memberAgent, '/internal/v1/dataplanes/register', 401], [dataplaneAgent, '/internal/v1/workers/register', 401],
        [dataplaneAgent, '/internal/v1/workers/heartbeat', 401], [memberAgent, '/internal/v1/demand', 401],
      ] as const) {
        const answer = await call(agent, `${cluster.cpUrl}${path}`, { method: 'POST', body: '{}', headers: memberHeaders() });
        assert.equal(answer.status, status, `${agent === memberAgent ? 'worker' : 'data plane'} certificate: ${path}`);
      }
    } finally {
      await dataplaneAgent.close();
    }
    await assert.rejects(call(foreignAgent, `${cluster.workerUrl}/internal/v1/sandboxes`, { headers: memberHeaders() }));
    await assert.rejects(call(foreignAgent, `${cluster.dpInternalUrl}/healthz`));
    const files = certFilesIn(join(dir, 'foreign'));
    const rpc = new RpcConnection(cluster.cpUrl, {
      authorization: memberHeaders()['authorization'] as string,
      tls: { ca: await readFile(certFilesIn(join(dir, 'certs')).caCert), cert: await readFile(files.roles.worker.cert), key: await readFile(files.roles.worker.key) },
    });
    try {
      await assert.rejects(rpc.call('POST', '/internal/v1/workers/register', {}, 5_000), (err: { code?: string }) => err.code === 'ERR_UNAUTHENTICATED');
    } finally {
      rpc.close();
    }
    // A stream opened with a worker's certificate carries a worker's calls only.
    const own = certFilesIn(join(dir, 'certs'));
    const workerRpc = new RpcConnection(cluster.cpUrl, {
      authorization: memberHeaders()['authorization'] as string,
      tls: { ca: await readFile(own.caCert), cert: await readFile(own.roles.worker.cert), key: await readFile(own.roles.worker.key) },
    });
    try {
      await assert.rejects(workerRpc.call('POST', '/internal/v1/dataplanes/register', {}, 5_000), (err: { code?: string }) => err.code === 'ERR_UNAUTHENTICATED');
      await assert.rejects(workerRpc.call('POST', '/internal/v1/workers/register', {}, 5_000), (err: { code?: string }) => err.code === 'ERR_INVALID_REQUEST', 'a worker\'s call reaches the route');
    } finally {
      workerRpc.close();
    }
  });
});

describe('a cluster with TLS and the http internal transport', () => {
  it('registers its members and serves a cold then a warm invocation', async () => {
    const args = (role: CertRole): string[] => [...tlsArgs(role), '--internal-transport', 'http'];
    const plain = await startCluster({ controlplane: args('controlplane'), worker: args('worker'), dataplane: args('dataplane') });
    try {
      const deployed = await runCliProcess(['deploy', 'hello-tls-http', '--dir', join(ROOT, 'examples/hello'), '--handler', 'index.handler', '--url', plain.cpUrl, '--ca', certFilesIn(join(dir, 'certs')).caCert]);
      assert.equal(deployed.code, 0, deployed.stderr);
      const cold = await call(userAgent, `${plain.dpUrl}/fn/hello-tls-http/`);
      assert.equal(cold.status, 200, JSON.stringify(cold.body));
      const warm = await call(userAgent, `${plain.dpUrl}/fn/hello-tls-http/`);
      assert.equal(warm.body['sandboxId'], cold.body['sandboxId']);
      assert.ok(!plain.controlplane.logs.some((l) => l['msg'] === 'an RPC connection broke the protocol; closed'));
    } finally {
      await plain.stop();
    }
  });
});

describe('baton up --tls', () => {
  it('makes the certificates, runs every daemon with TLS, and the CLI works with no flag', async (t) => {
    const up = await startUp(t, ['--tls']);
    const { offset } = up;
    const caFile = join(up.dir, 'certs', 'ca.crt');
    assert.match(up.output.stdout, new RegExp(`curl --cacert ${caFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} https://127\\.0\\.0\\.1:${8080 + offset}/fn/hello/`));
    const config = JSON.parse(await readFile(join(up.configHome, 'baton', 'config.json'), 'utf8')) as { url: string; dataplaneUrl: string; ca: string };
    assert.deepEqual([config.url, config.dataplaneUrl, config.ca], [`https://127.0.0.1:${9090 + offset}`, `https://127.0.0.1:${8080 + offset}`, caFile]);
    const listed = await runCliProcess(['list'], up.cliEnv);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^hello\s+process/m);
    const invoked = await runCliProcess(['invoke', 'hello'], up.cliEnv);
    assert.equal(invoked.code, 0, invoked.stderr);
    assert.match(invoked.stdout, /hello/i);
    for (const port of [8080, 8081, 9090, 10010]) await assert.rejects(plainRequest(`http://127.0.0.1:${port + offset}`, '/healthz'), `port ${port + offset} refuses plain text`);
    assert.equal(await up.interrupt(), 0, up.output.stderr.slice(-1000));
  });

  it('with --data-planes 2, HAProxy serves HTTPS and calls the data planes over HTTPS', { skip: existsSync('/usr/sbin/haproxy') ? false : 'haproxy is not installed' }, async (t) => {
    const up = await startUp(t, ['--tls', '--data-planes', '2', '--runtime', 'emulated'], { ports: (o) => [8000 + o, 8090 + o, 8091 + o] });
    const entry = `https://127.0.0.1:${8000 + up.offset}`;
    assert.match(up.output.stdout, new RegExp(`HAProxy +${entry.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    const config = JSON.parse(await readFile(join(up.configHome, 'baton', 'config.json'), 'utf8')) as { dataplaneUrl: string };
    assert.equal(config.dataplaneUrl, entry);
    const pem = await stat(join(up.dir, 'certs', 'haproxy.pem'));
    assert.equal(pem.mode & 0o777, 0o600);
    const agent = new Agent({ connect: { ca: await readFile(join(up.dir, 'certs', 'ca.crt')) } });
    t.after(() => agent.close());
    // The data planes serve HTTPS only: an answer through HAProxy means it called them over TLS.
    for (let i = 0; i < 6; i++) {
      const status = await waitFor(async () => {
        const answer = await request(`${entry}/fn/hello/`, { dispatcher: agent, headers: { 'x-baton-exec-ms': '1' } }).catch(() => undefined);
        await answer?.body.dump();
        return answer?.statusCode === 200 ? 200 : undefined;
      }, { timeoutMs: 30_000, message: 'an invocation through HAProxy over https' });
      assert.equal(status, 200);
    }
    const invoked = await runCliProcess(['invoke', 'hello'], up.cliEnv);
    assert.equal(invoked.code, 0, invoked.stderr);
    await assert.rejects(plainRequest(`http://127.0.0.1:${8000 + up.offset}`, '/fn/hello/'), 'HAProxy refuses plain text');
    assert.equal(await up.interrupt(), 0, up.output.stderr.slice(-1000));
  });
});
