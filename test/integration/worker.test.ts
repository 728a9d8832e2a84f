import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type {
  RegisterWorkerRequest, SandboxEvent, SandboxEventsRequest, SandboxFunction, SandboxInfo, SandboxLogsResponse,
} from '../../src/api/worker.ts';
import { digestOf, packDirectory } from '../../src/core/archive.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { parseWorkerConfig } from '../../src/worker/config.ts';
import { startWorker, type RunningWorker } from '../../src/worker/main.ts';
import { isAlive } from '../kit/process.ts';
import { waitFor } from '../kit/wait-for.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** A control plane that serves artifacts and records what the worker tells it. */
class FakeControlPlane {
  readonly artifacts = new Map<string, Buffer>();
  readonly registrations: RegisterWorkerRequest[] = [];
  readonly heartbeats: string[] = [];
  readonly events: SandboxEvent[] = [];
  readonly known = new Set<string>();
  #server: Server | undefined;
  url = '';

  async start(): Promise<void> {
    this.#server = createServer((req, res) => void this.#handle(req, res));
    await new Promise<void>((resolve) => this.#server?.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#server?.close(() => resolve());
      this.#server?.closeAllConnections();
    });
  }

  event(sandboxId: string): SandboxEvent | undefined {
    return this.events.find((e) => e.sandboxId === sandboxId);
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = chunks.length === 0 ? undefined : JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
    const url = req.url ?? '/';
    if (req.method === 'GET' && url.startsWith('/internal/v1/artifacts/')) {
      const bytes = this.artifacts.get(decodeURIComponent(url.slice('/internal/v1/artifacts/'.length)));
      if (bytes === undefined) return json(res, 404, { error: { code: 'ERR_ARTIFACT_NOT_FOUND', message: 'no such artifact' } });
      res.writeHead(200, { 'content-type': 'application/gzip', 'content-length': bytes.length }).end(bytes);
      return;
    }
    if (url === '/internal/v1/workers/register') {
      const request = body as RegisterWorkerRequest;
      this.registrations.push(request);
      this.known.add(request.workerId);
      return json(res, 200, { heartbeatIntervalMs: 50 });
    }
    if (url === '/internal/v1/workers/heartbeat') {
      const { workerId } = body as { workerId: string };
      this.heartbeats.push(workerId);
      if (!this.known.has(workerId)) return json(res, 404, { error: { code: 'ERR_WORKER_NOT_FOUND', message: 'register again' } });
      return json(res, 200, {});
    }
    if (url === '/internal/v1/workers/events') {
      this.events.push(...(body as SandboxEventsRequest).events);
      return json(res, 200, {});
    }
    json(res, 404, { error: { code: 'ERR_NOT_FOUND', message: url } });
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) }).end(data);
}

async function deploy(cp: FakeControlPlane, dir: string): Promise<string> {
  const tgz = await packDirectory(path.join(ROOT, dir));
  const digest = digestOf(tgz);
  cp.artifacts.set(digest, tgz);
  return digest;
}

function fnOf(name: string, artifact: string, code: { handler: string } | { command: string[] }, env: Record<string, string> = {}): SandboxFunction {
  return {
    name, generation: 1, runtime: 'process', artifact, ...code, concurrency: 1, timeoutMs: 30_000, env,
    resources: { cpuMilli: 100, memoryMiB: 128 },
  };
}

async function post(url: string, body: unknown): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url);
  assert.equal(res.status, 200, `GET ${url}`);
  return await res.json() as T;
}

async function tempDir(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), 'baton-worker-'));
}

async function createAndWaitReady(worker: RunningWorker, cp: FakeControlPlane, sandboxId: string, fn: SandboxFunction) {
  const created = await post(`${worker.url}/internal/v1/sandboxes`, { sandboxes: [{ sandboxId, function: fn }] });
  assert.equal(created.status, 202);
  const event = await waitFor(() => cp.event(sandboxId), { message: `event for ${sandboxId}` });
  assert.equal(event.type, 'ready', JSON.stringify(event));
  return event as Extract<SandboxEvent, { type: 'ready' }>;
}

async function sandboxInfo(worker: RunningWorker, sandboxId: string): Promise<SandboxInfo | undefined> {
  const { sandboxes } = await getJson<{ sandboxes: SandboxInfo[] }>(`${worker.url}/internal/v1/sandboxes`);
  return sandboxes.find((s) => s.sandboxId === sandboxId);
}

describe('worker with the process runtime', () => {
  const cp = new FakeControlPlane();
  let worker: RunningWorker;
  let dataDir: string;
  const digests: Record<string, string> = {};
  const savedEnv = { NODE_EXTRA_CA_CERTS: process.env['NODE_EXTRA_CA_CERTS'], BATON_TEST_DAEMON_SECRET: process.env['BATON_TEST_DAEMON_SECRET'] };

  before(async () => {
    // Variables of the daemon's own environment that must never reach a sandbox.
    process.env['NODE_EXTRA_CA_CERTS'] ??= '/nonexistent/ca.pem';
    process.env['BATON_TEST_DAEMON_SECRET'] = 'do-not-leak';
    await cp.start();
    for (const dir of ['examples/hello', 'examples/python-echo', 'test/fixtures/env-dump', 'test/fixtures/throws']) {
      digests[dir] = await deploy(cp, dir);
    }
    dataDir = await tempDir();
    worker = await startWorker(parseWorkerConfig({ port: 0, dataDir, controlPlaneUrl: cp.url, heartbeatIntervalMs: 50 }), { logger: silentLogger() });
  });

  after(async () => {
    await worker.close();
    await cp.close();
    await rm(dataDir, { recursive: true, force: true });
    for (const [key, value] of Object.entries(savedEnv)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  });

  test('registers with its real URL and heartbeats', async () => {
    const registration = await waitFor(() => cp.registrations.find((r) => r.workerId === worker.workerId));
    assert.equal(registration.url, worker.url);
    assert.match(worker.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.doesNotMatch(worker.url, /:0$/);
    assert.deepEqual(registration.runtimes, ['process']);
    await waitFor(() => cp.heartbeats.filter((id) => id === worker.workerId).length >= 2, { message: 'two heartbeats' });
    const health = await getJson<{ status: string }>(`${worker.url}/healthz`);
    assert.equal(health.status, 'ok');
  });

  test('a hello sandbox becomes ready and answers with its id', async () => {
    const event = await createAndWaitReady(worker, cp, 'hello-1', fnOf('hello', digests['examples/hello'] as string, { handler: 'index.handler' }));
    for (const phase of ['fetchMs', 'startMs', 'readyMs', 'totalMs'] as const) assert.ok(event.breakdown[phase] >= 0, phase);
    const res = await fetch(`http://${event.address}/greet?x=1`);
    assert.equal(res.status, 200);
    const body = await res.json() as { sandboxId: string; method: string; path: string; version: string };
    assert.deepEqual({ ...body, message: undefined }, { message: undefined, sandboxId: 'hello-1', method: 'GET', path: '/greet', version: 'v1' });
    const info = await sandboxInfo(worker, 'hello-1');
    assert.equal(info?.state, 'ready');
    assert.equal(info?.address, event.address);
    assert.ok(info?.pid !== undefined && isAlive(info.pid));
    const metrics = await (await fetch(`${worker.url}/metrics`)).text();
    assert.match(metrics, /baton_worker_sandbox_creations_total\{function="hello",outcome="ready"\} 1/);
    assert.match(metrics, /baton_worker_cold_start_seconds_count\{phase="total"\} \d+/);
    assert.match(metrics, /baton_worker_sandboxes\{state="ready"\} \d+/);
  });

  test('a second create of the same id is ignored', async () => {
    const again = await post(`${worker.url}/internal/v1/sandboxes`, {
      sandboxes: [{ sandboxId: 'hello-1', function: fnOf('hello', digests['examples/hello'] as string, { handler: 'index.handler' }) }],
    });
    assert.deepEqual(again, { status: 202, body: { accepted: 0 } });
  });

  test('a python command sandbox works', async () => {
    const event = await createAndWaitReady(worker, cp, 'py-1',
      fnOf('python-echo', digests['examples/python-echo'] as string, { command: ['/usr/bin/python3', 'server.py'] }));
    const res = await fetch(`http://${event.address}/echo`, { method: 'POST', body: 'hello' });
    assert.deepEqual(await res.json(), { method: 'POST', path: '/echo', bodyLength: 5, sandboxId: 'py-1' });
  });

  test('a thrown error answers 500 and the sandbox stays up', async () => {
    const event = await createAndWaitReady(worker, cp, 'throws-1', fnOf('throws', digests['test/fixtures/throws'] as string, { handler: 'index.handler' }));
    const failed = await fetch(`http://${event.address}/fail`);
    assert.equal(failed.status, 500);
    assert.deepEqual(await failed.json(), { errorMessage: 'this handler failed on purpose', errorType: 'TypeError' });
    const ok = await fetch(`http://${event.address}/`);
    assert.equal(ok.status, 200);
    assert.equal((await sandboxInfo(worker, 'throws-1'))?.state, 'ready');
    const logs = await waitFor(async () => {
      const l = await getJson<SandboxLogsResponse>(`${worker.url}/internal/v1/sandboxes/throws-1/logs?tail=50`);
      return l.lines.some((line) => line.stream === 'stderr' && line.line.includes('failed on purpose')) ? l : undefined;
    }, { message: 'the error in the sandbox logs' });
    assert.equal(logs.dropped, 0);
  });

  test('the sandbox environment is clean and explicit', async () => {
    const event = await createAndWaitReady(worker, cp, 'env-1',
      fnOf('env-dump', digests['test/fixtures/env-dump'] as string, { handler: 'index.handler' }, { GREETING: 'hi' }));
    const { env, cwd } = await (await fetch(`http://${event.address}/`)).json() as { env: Record<string, string>; cwd: string };
    assert.equal(env['NODE_EXTRA_CA_CERTS'], undefined);
    assert.equal(env['BATON_TEST_DAEMON_SECRET'], undefined);
    assert.equal(env['NODE_OPTIONS'], undefined);
    assert.equal(env['GREETING'], 'hi');
    assert.equal(env['BATON_SANDBOX_ID'], 'env-1');
    assert.equal(env['BATON_FUNCTION'], 'env-dump');
    assert.equal(env['BATON_GENERATION'], '1');
    assert.equal(env['PATH'], '/usr/local/bin:/usr/bin:/bin');
    assert.equal(env['PORT'], event.address.split(':')[1]);
    assert.ok(env['HOME']?.startsWith(dataDir), `HOME ${env['HOME']} is under the data dir`);
    assert.ok(env['TMPDIR']?.startsWith(env['HOME'] ?? '(none)'));
    assert.ok(cwd.startsWith(path.join(dataDir, 'artifacts')));
    const allowed = new Set(['GREETING', 'PATH', 'HOME', 'TMPDIR', 'PORT', 'BATON_HOST', 'BATON_FUNCTION', 'BATON_SANDBOX_ID',
      'BATON_GENERATION', 'BATON_TIMEOUT_MS', 'BATON_MEMORY_MIB', 'BATON_HANDLER']);
    assert.deepEqual(Object.keys(env).filter((key) => !allowed.has(key)), []);
  });

  test('a sandbox killed from outside is reported as exited', async () => {
    await createAndWaitReady(worker, cp, 'victim-1', fnOf('hello', digests['examples/hello'] as string, { handler: 'index.handler' }));
    const pid = (await sandboxInfo(worker, 'victim-1'))?.pid;
    assert.ok(pid !== undefined);
    process.kill(pid, 'SIGKILL');
    const exited = await waitFor(() => cp.events.find((e) => e.sandboxId === 'victim-1' && e.type === 'exited'));
    assert.deepEqual(exited, { type: 'exited', sandboxId: 'victim-1', exitCode: null, signal: 'SIGKILL', reason: 'signal' });
    await waitFor(async () => (await sandboxInfo(worker, 'victim-1')) === undefined, { message: 'gone from the list' });
  });

  test('delete stops the process and removes the sandbox', async () => {
    await createAndWaitReady(worker, cp, 'doomed-1', fnOf('hello', digests['examples/hello'] as string, { handler: 'index.handler' }));
    const pid = (await sandboxInfo(worker, 'doomed-1'))?.pid;
    assert.ok(pid !== undefined && isAlive(pid));
    const res = await post(`${worker.url}/internal/v1/sandboxes/delete`, { sandboxIds: ['doomed-1', 'nobody'] });
    assert.deepEqual(res, { status: 200, body: { deleted: ['doomed-1'], unknown: ['nobody'] } });
    await waitFor(() => !isAlive(pid), { message: 'the process is gone' });
    await waitFor(async () => (await sandboxInfo(worker, 'doomed-1')) === undefined, { message: 'gone from the list' });
    assert.equal(cp.events.filter((e) => e.sandboxId === 'doomed-1').length, 1, 'a deletion sends no event');
  });

  test('delete cancels a sandbox that is still starting', async () => {
    const fn = fnOf('never-ready', digests['examples/hello'] as string, { command: ['/bin/sleep', '30'] });
    await post(`${worker.url}/internal/v1/sandboxes`, { sandboxes: [{ sandboxId: 'starting-1', function: fn }] });
    await waitFor(async () => (await sandboxInfo(worker, 'starting-1'))?.state === 'starting');
    const res = await post(`${worker.url}/internal/v1/sandboxes/delete`, { sandboxIds: ['starting-1'] });
    assert.deepEqual(res.body, { deleted: ['starting-1'], unknown: [] });
    await waitFor(async () => (await sandboxInfo(worker, 'starting-1')) === undefined, { message: 'gone from the list' });
    assert.equal(cp.event('starting-1'), undefined);
  });

  test('a command that exits at once fails with ERR_SANDBOX_START_FAILED', async () => {
    const fn = fnOf('exits', digests['examples/hello'] as string, { command: ['/bin/false'] });
    await post(`${worker.url}/internal/v1/sandboxes`, { sandboxes: [{ sandboxId: 'exits-1', function: fn }] });
    const event = await waitFor(() => cp.event('exits-1'));
    assert.equal(event.type, 'failed');
    assert.equal(event.type === 'failed' && event.code, 'ERR_SANDBOX_START_FAILED');
  });

  test('a handler module that is missing fails with the runner\'s reason', async () => {
    const fn = fnOf('missing', digests['examples/hello'] as string, { handler: 'nothere.handler' });
    await post(`${worker.url}/internal/v1/sandboxes`, { sandboxes: [{ sandboxId: 'missing-1', function: fn }] });
    const event = await waitFor(() => cp.event('missing-1'));
    assert.equal(event.type, 'failed');
    assert.equal(event.type === 'failed' && event.code, 'ERR_SANDBOX_START_FAILED');
    assert.match(event.type === 'failed' ? event.message : '', /nothere\{\.js,\.mjs,\.cjs\} not found/);
  });

  test('an artifact that does not hash to its digest fails with ERR_DIGEST_MISMATCH', async () => {
    const wrong = `sha256:${'ab'.repeat(32)}`;
    cp.artifacts.set(wrong, cp.artifacts.get(digests['examples/hello'] as string) as Buffer);
    await post(`${worker.url}/internal/v1/sandboxes`, { sandboxes: [{ sandboxId: 'mismatch-1', function: fnOf('hello', wrong, { handler: 'index.handler' }) }] });
    const event = await waitFor(() => cp.event('mismatch-1'));
    assert.equal(event.type, 'failed');
    assert.equal(event.type === 'failed' && event.code, 'ERR_DIGEST_MISMATCH');
  });

  test('a malformed request is refused with ERR_INVALID_REQUEST', async () => {
    const res = await post(`${worker.url}/internal/v1/sandboxes`, { sandboxes: [{ sandboxId: 'x', function: { name: 'x' } }] });
    assert.equal(res.status, 400);
    assert.equal((res.body as { error: { code: string } }).error.code, 'ERR_INVALID_REQUEST');
  });

  test('registers again, with its sandboxes, when the control plane forgets it', async () => {
    const before = cp.registrations.length;
    cp.known.delete(worker.workerId);
    const again = await waitFor(() => cp.registrations[before], { message: 'a new registration' });
    assert.ok(again.sandboxes.some((s) => s.sandboxId === 'hello-1' && s.state === 'ready'));
  });
});

test('a new run of a worker stops the sandboxes an earlier run left behind', async (t) => {
  const cp = new FakeControlPlane();
  await cp.start();
  const dataDir = await tempDir();
  const digest = await deploy(cp, 'examples/hello');
  const config = parseWorkerConfig({ port: 0, dataDir, controlPlaneUrl: cp.url, workerId: 'leftover-test' });
  const first = await startWorker(config, { logger: silentLogger() });
  let second: RunningWorker | undefined;
  let pid: number | undefined;
  t.after(async () => {
    if (pid !== undefined && isAlive(pid)) process.kill(pid, 'SIGKILL');
    await first.close();
    await second?.close();
    await cp.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  await createAndWaitReady(first, cp, 'left-1', fnOf('hello', digest, { handler: 'index.handler' }));
  pid = (await sandboxInfo(first, 'left-1'))?.pid;
  assert.ok(pid !== undefined && isAlive(pid));
  await first.close({ keepSandboxes: true });
  assert.ok(isAlive(pid), 'keepSandboxes leaves the process running');

  second = await startWorker(config, { logger: silentLogger() });
  const stoppedPid = pid;
  await waitFor(() => !isAlive(stoppedPid), { message: 'the leftover process is gone' });
  const registration = await waitFor(() => cp.registrations.filter((r) => r.workerId === 'leftover-test')[1]);
  assert.deepEqual(registration.sandboxes, []);
});
