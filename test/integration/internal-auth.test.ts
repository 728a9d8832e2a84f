import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createServer, request, type IncomingHttpHeaders } from 'node:http';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino, type Logger } from 'pino';
import { controlPlaneConfigSchema } from '../../src/controlplane/config.ts';
import { startControlPlane } from '../../src/controlplane/main.ts';
import { parseDataplaneConfig } from '../../src/dataplane/config.ts';
import { startDataplane } from '../../src/dataplane/main.ts';
import { parseWorkerConfig } from '../../src/worker/config.ts';
import { startWorker } from '../../src/worker/main.ts';
import { RpcConnection } from '../../src/transport/rpc-client.ts';
import { ensureJoinSecret } from '../../src/cli/daemons.ts';
import { bearer, deriveJoinKey, readJoinSecret } from '../../src/transport/internal-auth.ts';
import { listen } from '../../src/transport/listen.ts';
import { memberHeaders } from '../kit/cluster.ts';
import { tempDirSync } from '../kit/temp-dir.ts';
import { waitFor } from '../kit/wait-for.ts';

/**
 * The links between the planes with a join secret, with the real daemons on loopback: the cluster
 * works over both internal transports, and a process that knows the ports but not the secret —
 * or holds only a member's credential — can neither join, nor get routing views, nor command.
 */

const SECRET = 'a-join-secret-for-the-test-0123456789';
const WRONG = 'not-the-join-secret-of-this-cluster';

/** A logger whose JSON lines are kept. */
function capturedLogger(): { logger: Logger; lines: Record<string, unknown>[]; text: () => string } {
  const raw: string[] = [];
  const stream = new Writable({ write(chunk: Buffer, _enc, done) { raw.push(chunk.toString()); done(); } });
  return {
    logger: pino({ level: 'info' }, stream),
    get lines() { return raw.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>); },
    text: () => raw.join(''),
  };
}

async function call(url: string, method: string, headers: Record<string, string> = {}, body?: unknown): Promise<{ status: number; code: string | undefined; body: unknown }> {
  const res = await fetch(url, {
    method, headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const parsed = await res.json().catch(() => undefined) as { error?: { code?: string } } | undefined;
  return { status: res.status, code: parsed?.error?.code, body: parsed };
}

/** The status a peer answers an RPC upgrade with (101 when it accepts it). */
function upgradeStatus(url: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/internal/v1/rpc`, { headers: { connection: 'Upgrade', upgrade: 'baton-rpc/1', ...headers } });
    req.on('upgrade', (_res, socket) => { socket.destroy(); resolve(101); });
    req.on('response', (res) => { res.resume(); resolve(res.statusCode ?? 0); });
    req.on('error', reject);
    req.end();
  });
}

/** A listener that stands for an intruder's "worker" or "data plane": it counts what reaches it. */
async function intruderListener(t: { after(fn: () => unknown): void }): Promise<{ url: string; received: IncomingHttpHeaders[] }> {
  const received: IncomingHttpHeaders[] = [];
  const server = createServer((req, res) => { received.push(req.headers); req.resume(); res.writeHead(200, { 'content-type': 'application/json' }).end('{}'); });
  server.on('upgrade', (req, socket) => { received.push(req.headers); socket.destroy(); });
  const { url } = await listen(server, { host: '127.0.0.1', port: 0 });
  t.after(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }));
  return { url, received };
}

for (const internalTransport of ['rpc', 'http'] as const) test(`with a join secret the planes work end to end over ${internalTransport}, and nobody without it joins, gets routing views or commands a worker`, async (t) => {
  const logs = { cp: capturedLogger(), dp: capturedLogger(), worker: capturedLogger() };
  const controlPlane = await startControlPlane(controlPlaneConfigSchema.parse({
    port: 0, dataDir: tempDirSync('baton-auth-cp-'), heartbeatIntervalMs: 100, autoscalerBucketMs: 100, autoscalerTickMs: 200, internalTransport, joinSecret: SECRET, authMode: 'none',
  }), { logger: logs.cp.logger });
  t.after(() => controlPlane.close());
  const dataplane = await startDataplane(parseDataplaneConfig({
    port: 0, internalPort: 0, dataDir: tempDirSync('baton-auth-dp-'), dataplaneId: 'dp', controlPlaneUrl: controlPlane.url,
    heartbeatIntervalMs: 100, demandReportIntervalMs: 100, internalTransport, joinSecret: SECRET,
  }), { logger: logs.dp.logger });
  t.after(() => dataplane.close());
  const worker = await startWorker(parseWorkerConfig({
    port: 0, workerId: 'w', controlPlaneUrl: controlPlane.url, runtime: 'emulated', cpuMilli: 4000, memoryMiB: 4096,
    heartbeatIntervalMs: 100, internalTransport, joinSecret: SECRET,
  }), { logger: logs.worker.logger });
  t.after(() => worker.close());

  // End to end: a function created, its sandbox started on the worker, invoked through the data plane.
  const created = await call(`${controlPlane.url}/v1/functions`, 'POST', {}, { name: 'f', runtime: 'emulated', scaling: { minScale: 1 } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const answer = await waitFor(async () => {
    const res = await fetch(`${dataplane.proxyUrl}/fn/f/`, { headers: { 'x-baton-exec-ms': '1' } });
    const text = await res.text();
    return res.status === 404 ? undefined : { status: res.status, text };
  }, { timeoutMs: 20_000, message: 'the first invocation' });
  assert.equal(answer.status, 200, answer.text);
  const member = memberHeaders(SECRET);
  const sandboxes = async () => ((await call(`${worker.url}/internal/v1/sandboxes`, 'GET', member)).body as { sandboxes: { sandboxId: string }[] }).sandboxes;
  const [sandbox] = await sandboxes();
  assert.ok(sandbox !== undefined);
  const routingView = async () => (await call(`${dataplane.url}/internal/v1/routing`, 'GET', member)).body as { functions: { name: string }[]; endpoints: { sandboxId: string }[] };
  await waitFor(async () => (await routingView()).endpoints.some((e) => e.sandboxId === sandbox.sandboxId), { message: 'the sandbox routed' });

  const none = {};
  const wrong = memberHeaders(WRONG);
  const intruder = await intruderListener(t);

  // Joining without the secret: refused, nothing recorded, and nothing is ever sent to the intruder.
  const workerRegistration = { workerId: 'intruder', url: intruder.url, capacity: { cpuMilli: 64_000, memoryMiB: 65_536 }, runtimes: ['emulated'], sandboxes: [], commandToken: 'x'.repeat(43) };
  const dataplaneRegistration = { dataplaneId: 'intruder-dp', url: intruder.url, proxyUrl: intruder.url, commandToken: 'x'.repeat(43) };
  for (const headers of [none, wrong, { authorization: 'Basic Zm9vOmJhcg==' }, { authorization: bearer(SECRET) }]) {
    for (const [path, body] of [
      ['/internal/v1/workers/register', workerRegistration], ['/internal/v1/dataplanes/register', dataplaneRegistration],
      ['/internal/v1/demand', { dataplaneId: 'dp', isPoke: true, entries: [{ function: 'f', concurrency: 500, queued: 500, inflight: 0 }] }],
      ['/internal/v1/workers/heartbeat', { workerId: 'w' }],
    ] as const) {
      const refused = await call(`${controlPlane.url}${path}`, 'POST', headers, body);
      assert.equal(refused.status, 401, `${path} with ${JSON.stringify(headers)}`);
      assert.equal(refused.code, 'ERR_UNAUTHENTICATED');
    }
    assert.equal(await upgradeStatus(controlPlane.url, headers), 401, 'the RPC stream is not opened without the join key');
  }
  const workers = (await call(`${controlPlane.url}/v1/workers`, 'GET')).body as { workers: { workerId: string }[] };
  assert.deepEqual(workers.workers.map((w) => w.workerId), ['w']);
  const dataplanes = (await call(`${controlPlane.url}/v1/dataplanes`, 'GET')).body as { dataplanes: { dataplaneId: string }[] };
  assert.deepEqual(dataplanes.dataplanes.map((d) => d.dataplaneId), ['dp']);
  // A change is published to every data plane the control plane knows: the intruder is not one.
  assert.equal((await call(`${controlPlane.url}/v1/functions`, 'POST', {}, { name: 'g', runtime: 'emulated' })).status, 201);
  await waitFor(async () => (await routingView()).functions.some((fn) => fn.name === 'g'), { message: 'g published to the data plane' });
  assert.deepEqual(intruder.received, [], 'no routing view, command or call reached the intruder');

  // Commanding the worker: refused without a credential, with a wrong one, and with a member's
  // (the join key every data plane holds): only the token it gave its control plane commands it.
  for (const headers of [none, wrong, member]) {
    const deleted = await call(`${worker.url}/internal/v1/sandboxes/delete`, 'POST', headers, { sandboxIds: [sandbox.sandboxId] });
    assert.equal(deleted.status, 401, `delete with ${JSON.stringify(headers)}`);
    assert.equal(deleted.code, 'ERR_UNAUTHENTICATED');
    const createdThere = await call(`${worker.url}/internal/v1/sandboxes`, 'POST', headers, { sandboxes: [] });
    assert.equal(createdThere.status, 401);
    assert.equal((await call(`${worker.url}/internal/v1/sandboxes/${sandbox.sandboxId}/logs`, 'GET', headers)).status, 401);
    assert.equal(await upgradeStatus(worker.url, headers), 401, 'the worker opens its RPC stream to its control plane only');
    // Routing views come from the control plane only, too.
    const view = await call(`${dataplane.url}/internal/v1/routing`, 'POST', headers, { kind: 'snapshot', epoch: 'x', version: 1, functions: [], endpoints: [] });
    assert.equal(view.status, 401);
    assert.equal(await upgradeStatus(dataplane.url, headers), 401);
  }
  assert.equal((await call(`${worker.url}/internal/v1/sandboxes`, 'GET')).status, 401, 'the sandbox list needs a member credential');
  assert.equal((await call(`${dataplane.url}/internal/v1/routing`, 'GET', wrong)).status, 401, 'so does the routing view');
  // (The autoscaler may have added another since; the first one is there still.)
  assert.ok((await sandboxes()).some((s) => s.sandboxId === sandbox.sandboxId), 'the sandbox still runs');
  assert.ok((await routingView()).endpoints.some((e) => e.sandboxId === sandbox.sandboxId), 'and is still routed');
  assert.equal((await fetch(`${dataplane.proxyUrl}/fn/f/`, { headers: { 'x-baton-exec-ms': '1' } })).status, 200);
  assert.equal((await fetch(`${worker.url}/healthz`)).status, 200, 'health stays open');

  // An authenticated RPC stream carries internal calls only: not the management API.
  const stream = new RpcConnection(controlPlane.url, { authorization: bearer(deriveJoinKey(SECRET)) });
  t.after(() => stream.close());
  await assert.rejects(stream.call('GET', '/v1/functions', undefined, 5_000), (err: { code?: string }) => err.code === 'ERR_NOT_FOUND');

  // Each daemon logged its refusals once for the peer, naming it; no log line holds a credential.
  for (const [plane, log] of Object.entries(logs)) {
    const refusals = log.lines.filter((l) => String(l['msg']).startsWith('refused an internal call'));
    assert.equal(refusals.length, 1, `${plane}: ${JSON.stringify(refusals)}`);
    assert.equal(refusals[0]?.['peer'], '127.0.0.1');
    for (const credential of [SECRET, deriveJoinKey(SECRET), WRONG, deriveJoinKey(WRONG)]) assert.ok(!log.text().includes(credential), `${plane} logged a credential`);
  }
});

test('a worker and a data plane started with the wrong join secret are refused: never registered, never given a routing view', async (t) => {
  const controlPlane = await startControlPlane(controlPlaneConfigSchema.parse({
    port: 0, dataDir: tempDirSync('baton-auth-cp-'), heartbeatIntervalMs: 100, joinSecret: SECRET, logLevel: 'silent', authMode: 'none',
  }), { logger: pino({ level: 'silent' }) });
  t.after(() => controlPlane.close());
  assert.equal((await call(`${controlPlane.url}/v1/functions`, 'POST', {}, { name: 'f', runtime: 'emulated' })).status, 201);
  const dpLog = capturedLogger();
  const workerLog = capturedLogger();
  const dataplane = await startDataplane(parseDataplaneConfig({
    port: 0, internalPort: 0, dataDir: tempDirSync('baton-auth-dp-'), dataplaneId: 'dp-wrong', controlPlaneUrl: controlPlane.url, heartbeatIntervalMs: 100, joinSecret: WRONG,
  }), { logger: dpLog.logger });
  t.after(() => dataplane.close());
  const worker = await startWorker(parseWorkerConfig({
    port: 0, workerId: 'w-wrong', controlPlaneUrl: controlPlane.url, runtime: 'emulated', heartbeatIntervalMs: 100, joinSecret: WRONG,
  }), { logger: workerLog.logger });
  t.after(() => worker.close());
  const refused = (log: ReturnType<typeof capturedLogger>) => log.lines.find((l) => l['msg'] === 'the control plane refused the registration');
  const [dpRefusal, workerRefusal] = await Promise.all([
    waitFor(() => refused(dpLog), { message: 'the data plane refused' }),
    waitFor(() => refused(workerLog), { message: 'the worker refused' }),
  ]);
  assert.equal(dpRefusal['code'], 'ERR_UNAUTHENTICATED');
  assert.equal(workerRefusal['code'], 'ERR_UNAUTHENTICATED');
  assert.deepEqual(((await call(`${controlPlane.url}/v1/workers`, 'GET')).body as { workers: unknown[] }).workers, []);
  assert.deepEqual(((await call(`${controlPlane.url}/v1/dataplanes`, 'GET')).body as { dataplanes: unknown[] }).dataplanes, []);
  const view = (await call(`${dataplane.url}/internal/v1/routing`, 'GET', memberHeaders(WRONG))).body as { functions: unknown[] };
  assert.deepEqual(view.functions, [], 'the data plane never got the function');
});

test('without a join secret a daemon runs open on loopback with a warning, and refuses to listen beyond it', async (t) => {
  const log = capturedLogger();
  const controlPlane = await startControlPlane(controlPlaneConfigSchema.parse({ port: 0, dataDir: tempDirSync('baton-auth-cp-') }), { logger: log.logger });
  t.after(() => controlPlane.close());
  assert.ok(log.lines.some((l) => String(l['msg']).startsWith('NO JOIN SECRET')));
  assert.notEqual((await call(`${controlPlane.url}/internal/v1/workers/heartbeat`, 'POST', {}, { workerId: 'nobody' })).status, 401);
  await assert.rejects(startWorker(parseWorkerConfig({ host: '0.0.0.0', port: 0, runtime: 'emulated', logLevel: 'silent' })),
    (err: { code?: string; message?: string }) => err.code === 'ERR_INVALID_CONFIG' && /join secret/.test(err.message ?? ''));
  await assert.rejects(startDataplane(parseDataplaneConfig({ host: '0.0.0.0', port: 0, internalPort: 0, dataDir: tempDirSync('baton-auth-dp-'), logLevel: 'silent' })),
    (err: { code?: string }) => err.code === 'ERR_INVALID_CONFIG');
  await assert.rejects(startControlPlane(controlPlaneConfigSchema.parse({ host: '0.0.0.0', port: 0, dataDir: tempDirSync('baton-auth-cp-'), logLevel: 'silent' })),
    (err: { code?: string }) => err.code === 'ERR_INVALID_CONFIG');
  assert.throws(() => parseWorkerConfig({ joinSecret: 'short' }), (err: { code?: string }) => err.code === 'ERR_INVALID_CONFIG');
});

test('baton up\'s join secret: made once with mode 0600, then reused (a loosened mode is tightened); a daemon reads it from joinSecretFile', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'baton-join-secret-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = await ensureJoinSecret(path.join(dir, 'data'));
  assert.equal(file, path.join(dir, 'data', 'join-secret'));
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  const secret = readJoinSecret({ joinSecretFile: file });
  assert.ok(secret !== undefined && secret.length >= 32);
  await chmod(file, 0o644);
  assert.equal(await ensureJoinSecret(path.join(dir, 'data')), file);
  assert.equal(readJoinSecret({ joinSecretFile: file }), secret, 'the same secret after a restart');
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  // Bad input is a coded error naming the key.
  const invalid = (config: Parameters<typeof readJoinSecret>[0], key: string) => assert.throws(() => readJoinSecret(config),
    (err: { code?: string; details?: { key?: string } }) => err.code === 'ERR_INVALID_CONFIG' && err.details?.key === key);
  invalid({ joinSecretFile: path.join(dir, 'missing') }, 'joinSecretFile');
  invalid({ joinSecret: secret as string, joinSecretFile: file }, 'joinSecretFile');
  await writeFile(path.join(dir, 'short'), 'tiny\n');
  invalid({ joinSecretFile: path.join(dir, 'short') }, 'joinSecretFile');
  assert.equal(readJoinSecret({}), undefined);
});
