import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, get, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { Agent, request } from 'undici';
import type { DemandReport, RegisterDataplaneRequest, RoutingAck, RoutingChange, RoutingEndpoint, RoutingFunction, RoutingUpdate } from '../../src/api/dataplane.ts';
import { systemClock } from '../../src/core/clock.ts';
import { RoutingPublisher } from '../../src/controlplane/routing-publisher.ts';
import { parseDataplaneConfig, type DataplaneConfigInput } from '../../src/dataplane/config.ts';
import { tempDirSync } from '../kit/temp-dir.ts';
import { startDataplane } from '../../src/dataplane/main.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { JsonClient } from '../../src/transport/json-client.ts';
import { RpcConnection } from '../../src/transport/rpc-client.ts';
import { waitFor } from '../kit/wait-for.ts';

// ---------- fakes: a control plane and sandboxes, real loopback servers on port 0 ----------

interface FakeControlPlane {
  readonly url: string;
  readonly registers: RegisterDataplaneRequest[];
  readonly heartbeats: number[];
  readonly demand: DemandReport[];
  /** Answer the next N heartbeats with 404 ERR_DATAPLANE_NOT_FOUND. */
  forgetDataplane(times: number): void;
}

async function startFakeControlPlane(t: TestContext): Promise<FakeControlPlane> {
  const registers: RegisterDataplaneRequest[] = [];
  const heartbeats: number[] = [];
  const demand: DemandReport[] = [];
  let forget = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
      if (req.url === '/internal/v1/dataplanes/register') registers.push(body as RegisterDataplaneRequest);
      if (req.url === '/internal/v1/demand') demand.push(body as DemandReport);
      if (req.url === '/internal/v1/dataplanes/heartbeat') {
        heartbeats.push(Date.now());
        if (forget > 0) {
          forget--;
          res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'ERR_DATAPLANE_NOT_FOUND', message: 'unknown' } }));
          return;
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  const url = await listen(t, server);
  return { url, registers, heartbeats, demand, forgetDataplane: (times) => { forget = times; } };
}

interface Held { readonly req: IncomingMessage; readonly res: ServerResponse }

interface Upstream {
  readonly name: string;
  readonly address: string;
  readonly server: Server;
  active: number;
  maxActive: number;
  aborted: number;
  readonly requests: { method: string; url: string; headers: Record<string, unknown> }[];
  readonly held: Held[];
  /** Replaces how requests are answered (default: echo method, url and headers as JSON). */
  handler: (req: IncomingMessage, res: ServerResponse) => void;
}

async function startUpstream(t: TestContext, name: string): Promise<Upstream> {
  const upstream: Upstream = {
    name, address: '', server: createServer(), active: 0, maxActive: 0, aborted: 0, requests: [], held: [],
    handler: (req, res) => {
      req.resume();
      req.on('end', () => {
        const body = JSON.stringify({ server: name, method: req.method, url: req.url, headers: req.headers });
        res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name }).end(body);
      });
    },
  };
  upstream.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    upstream.active++;
    upstream.maxActive = Math.max(upstream.maxActive, upstream.active);
    upstream.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    res.on('close', () => {
      upstream.active--;
      if (!res.writableFinished) upstream.aborted++;
    });
    upstream.handler(req, res);
  });
  const url = await listen(t, upstream.server);
  return Object.assign(upstream, { address: url.slice('http://'.length) });
}

/** A handler that parks requests until the test answers them. */
function holdRequests(upstream: Upstream): void {
  upstream.handler = (req, res) => {
    req.resume();
    upstream.held.push({ req, res });
  };
}

function answer(held: Held | undefined, body = 'done'): void {
  assert.ok(held, 'a held request');
  held.res.writeHead(200, { 'content-type': 'text/plain' }).end(body);
}

async function listen(t: TestContext, server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  }));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

// ---------- the data plane under test, and a routing pusher ----------

let nextDataplane = 0;

async function setup(t: TestContext, overrides: Partial<DataplaneConfigInput> = {}) {
  const cp = await startFakeControlPlane(t);
  const config = parseDataplaneConfig({
    port: 0, internalPort: 0, dataDir: tempDirSync('baton-dp-'), dataplaneId: `dp-test-${process.pid}-${nextDataplane++}`, controlPlaneUrl: cp.url,
    demandReportIntervalMs: 50, heartbeatIntervalMs: 50, queueTimeoutMs: 10_000, shutdownGraceMs: 2_000, logLevel: 'silent',
    ...overrides,
  });
  const dp = await startDataplane(config, { logger: silentLogger() });
  t.after(() => dp.close());
  const internal = new JsonClient(dp.url);
  t.after(() => internal.close());
  const agent = new Agent({ keepAliveTimeout: 1_000 });
  t.after(() => agent.close());

  const epoch = `epoch-${nextDataplane}`;
  let version = 0;
  const routing = {
    snapshot: (functions: RoutingFunction[], endpoints: RoutingEndpoint[]) =>
      internal.post('/internal/v1/routing', { kind: 'snapshot', epoch, version: ++version, functions, endpoints }),
    delta: (changes: RoutingChange[]) => {
      const baseVersion = version;
      return internal.post('/internal/v1/routing', { kind: 'delta', epoch, baseVersion, version: ++version, changes });
    },
  };
  const invoke = async (path: string, options: { host?: string; method?: string; body?: Buffer | Readable; headers?: Record<string, string> } = {}) => {
    const headers: Record<string, string> = { ...options.headers };
    if (options.host !== undefined) headers.host = options.host;
    const res = await request(`${dp.proxyUrl}${path}`, {
      dispatcher: agent, method: (options.method ?? 'GET') as 'GET', headers, ...(options.body === undefined ? {} : { body: options.body }),
    });
    const body = Buffer.from(await res.body.arrayBuffer());
    return { status: res.statusCode, headers: res.headers, body, json: () => JSON.parse(body.toString('utf8')) as Record<string, any> };
  };
  return { cp, dp, internal, routing, invoke };
}

const fn = (name: string, extra: Partial<RoutingFunction> = {}): RoutingFunction => ({ name, generation: 1, concurrency: 1, timeoutMs: 10_000, ...extra });
const endpoint = (sandboxId: string, fnName: string, upstream: Upstream, isDraining = false): RoutingEndpoint =>
  ({ sandboxId, function: fnName, address: upstream.address, isDraining });

const pokesFor = (cp: FakeControlPlane, name: string) => cp.demand.filter((r) => r.isPoke && r.entries.some((e) => e.function === name));

// ---------- tests ----------

test('registers its real URLs and heartbeats; registers again when the control plane forgets it', async (t) => {
  const { cp, dp } = await setup(t);
  await waitFor(() => cp.registers.length >= 1, { message: 'registration' });
  assert.deepEqual(cp.registers[0], { dataplaneId: cp.registers[0]?.dataplaneId, url: dp.url, proxyUrl: dp.proxyUrl });
  assert.doesNotMatch(dp.proxyUrl, /:0$/);
  await waitFor(() => cp.heartbeats.length >= 2, { message: 'heartbeats' });
  cp.forgetDataplane(1);
  await waitFor(() => cp.registers.length >= 2, { message: 're-registration after ERR_DATAPLANE_NOT_FOUND' });
});

test('routes by Host, by first Host label and by /fn/NAME prefix (stripped, query kept); forwards Host', async (t) => {
  const { routing, invoke } = await setup(t);
  const up = await startUpstream(t, 'u1');
  await routing.snapshot([fn('echo', { concurrency: 4 })], [endpoint('s1', 'echo', up)]);

  const byHost = await invoke('/a/b?x=1', { host: 'echo' });
  assert.equal(byHost.status, 200);
  assert.equal(byHost.json().url, '/a/b?x=1');
  assert.equal(byHost.json().headers.host, 'echo');
  assert.equal(byHost.json().headers['x-forwarded-host'], 'echo');
  assert.equal(byHost.json().headers['x-forwarded-for'], '127.0.0.1');
  assert.equal(byHost.headers['x-upstream'], 'u1');

  const byLabel = await invoke('/p', { host: 'echo.functions.example:8080' });
  assert.equal(byLabel.json().url, '/p');
  assert.equal(byLabel.json().headers.host, 'echo.functions.example:8080');

  const byPath = await invoke('/fn/echo/a/b?x=1&y=2');
  assert.equal(byPath.status, 200);
  assert.equal(byPath.json().url, '/a/b?x=1&y=2');
  assert.equal((await invoke('/fn/echo?q=1')).json().url, '/?q=1');
  assert.equal((await invoke('/fn/echo')).json().url, '/');

  const post = await invoke('/fn/echo/submit', { method: 'POST', body: Buffer.from('{"a":1}'), headers: { 'content-type': 'application/json' } });
  assert.equal(post.json().method, 'POST');
  assert.equal(post.json().headers['content-type'], 'application/json');
});

test('an unknown function answers 404 ERR_FUNCTION_NOT_FOUND; reserved healthz answers', async (t) => {
  const { routing, invoke } = await setup(t);
  await routing.snapshot([], []);
  for (const [path, host] of [['/fn/nope/x', undefined], ['/', 'nope.example'], ['/nothing', undefined]] as const) {
    const res = await invoke(path, host === undefined ? {} : { host });
    assert.equal(res.status, 404);
    assert.equal(res.headers['content-type'], 'application/json');
    assert.equal(res.json().error.code, 'ERR_FUNCTION_NOT_FOUND');
  }
  const health = await invoke('/_baton/healthz');
  assert.equal(health.status, 200);
});

test('cold start: a request with no endpoint is queued, the control plane is poked, an endpoint arrives and the request completes', async (t) => {
  const { cp, routing, invoke } = await setup(t);
  const up = await startUpstream(t, 'u1');
  await routing.snapshot([fn('cold')], []);
  const pending = invoke('/fn/cold/hello');
  const poke = await waitFor(() => pokesFor(cp, 'cold')[0], { message: 'a poke' });
  assert.deepEqual(poke.entries.find((e) => e.function === 'cold'), { function: 'cold', concurrency: 1, queued: 1, inflight: 0 });
  await routing.delta([{ type: 'endpoint.put', endpoint: endpoint('s1', 'cold', up) }]);
  const res = await pending;
  assert.equal(res.status, 200);
  assert.equal(res.json().url, '/hello');
});

test('a full queue answers 503 ERR_QUEUE_FULL at once', async (t) => {
  const { cp, routing, invoke } = await setup(t, { queueCapacity: 1 });
  const up = await startUpstream(t, 'u1');
  await routing.snapshot([fn('busy')], []);
  const first = invoke('/fn/busy/1');
  await waitFor(() => pokesFor(cp, 'busy').length > 0, { message: 'the first request queued' });
  const second = await invoke('/fn/busy/2');
  assert.equal(second.status, 503);
  assert.equal(second.json().error.code, 'ERR_QUEUE_FULL');
  await routing.delta([{ type: 'endpoint.put', endpoint: endpoint('s1', 'busy', up) }]);
  assert.equal((await first).status, 200);
});

test('a queued request past its deadline answers 504 ERR_COLD_START_TIMEOUT', async (t) => {
  const { routing, invoke } = await setup(t, { queueTimeoutMs: 100 });
  await routing.snapshot([fn('never')], []);
  const res = await invoke('/fn/never/');
  assert.equal(res.status, 504);
  assert.equal(res.json().error.code, 'ERR_COLD_START_TIMEOUT');
});

test('deleting a function fails its queued requests with 404 ERR_FUNCTION_NOT_FOUND', async (t) => {
  const { cp, routing, invoke } = await setup(t);
  await routing.snapshot([fn('gone')], []);
  const pending = invoke('/fn/gone/');
  await waitFor(() => pokesFor(cp, 'gone').length > 0, { message: 'queued' });
  await routing.delta([{ type: 'function.delete', name: 'gone' }]);
  const res = await pending;
  assert.equal(res.status, 404);
  assert.equal(res.json().error.code, 'ERR_FUNCTION_NOT_FOUND');
});

test('concurrency 1: a second concurrent request waits for the first; never two in flight at one endpoint', async (t) => {
  const { cp, routing, invoke } = await setup(t);
  const up = await startUpstream(t, 'u1');
  holdRequests(up);
  await routing.snapshot([fn('one')], [endpoint('s1', 'one', up)]);
  const first = invoke('/fn/one/1');
  await waitFor(() => up.held.length === 1, { message: 'the first at the sandbox' });
  const second = invoke('/fn/one/2');
  await waitFor(() => pokesFor(cp, 'one').length > 0, { message: 'the second queued (poke)' });
  assert.equal(up.held.length, 1);
  answer(up.held[0], 'first');
  await waitFor(() => up.held.length === 2, { message: 'the second at the sandbox' });
  answer(up.held[1], 'second');
  assert.equal((await first).body.toString(), 'first');
  assert.equal((await second).body.toString(), 'second');
  assert.equal(up.maxActive, 1);
  assert.deepEqual(up.requests.map((r) => r.url), ['/1', '/2']);
});

test('many concurrent requests over two endpoints with concurrency 2 never exceed the limit', async (t) => {
  const { routing, invoke } = await setup(t);
  const a = await startUpstream(t, 'a');
  const b = await startUpstream(t, 'b');
  for (const up of [a, b]) {
    up.handler = (req, res) => {
      req.resume();
      setImmediate(() => res.end(up.name));
    };
  }
  await routing.snapshot([fn('par', { concurrency: 2 })], [endpoint('sa', 'par', a), endpoint('sb', 'par', b)]);
  const results = await Promise.all(Array.from({ length: 40 }, (_, i) => invoke(`/fn/par/${i}`)));
  assert.ok(results.every((r) => r.status === 200));
  assert.ok(a.maxActive <= 2 && b.maxActive <= 2, `max active ${a.maxActive}, ${b.maxActive}`);
  assert.equal(a.requests.length + b.requests.length, 40);
});

test('a draining endpoint gets no new request; drain/wait resolves once its in-flight request ends', async (t) => {
  const { routing, invoke, internal } = await setup(t);
  const old = await startUpstream(t, 'old');
  const fresh = await startUpstream(t, 'fresh');
  holdRequests(old);
  await routing.snapshot([fn('dr', { concurrency: 5 })], [endpoint('s-old', 'dr', old)]);
  const inflight = invoke('/fn/dr/long');
  await waitFor(() => old.held.length === 1, { message: 'in flight at the old endpoint' });

  await routing.delta([
    { type: 'endpoint.put', endpoint: endpoint('s-old', 'dr', old, true) },
    { type: 'endpoint.put', endpoint: endpoint('s-new', 'dr', fresh) },
  ]);
  let isDrained = false;
  const drain = internal.post<{ drained: string[]; pending: string[] }>('/internal/v1/drain/wait', { sandboxIds: ['s-old', 'unknown-id'], timeoutMs: 30_000 })
    .then((r) => { isDrained = true; return r; });
  for (let i = 0; i < 5; i++) {
    const res = await invoke(`/fn/dr/${i}`);
    assert.equal(res.json().server, 'fresh');
  }
  assert.equal(old.requests.length, 1, 'no new request reached the draining endpoint');
  assert.equal(isDrained, false, 'drain/wait still waits for the in-flight request');
  answer(old.held[0]);
  assert.equal((await inflight).status, 200);
  assert.deepEqual(await drain, { drained: ['s-old', 'unknown-id'], pending: [] });

  const timedOut = await internal.post('/internal/v1/drain/wait', { sandboxIds: ['s-new'], timeoutMs: 0 });
  assert.deepEqual(timedOut, { drained: ['s-new'], pending: [] });
});

test('drain/wait reports pending sandboxes at its timeout', async (t) => {
  const { routing, invoke, internal } = await setup(t);
  const up = await startUpstream(t, 'u');
  holdRequests(up);
  await routing.snapshot([fn('slow')], [endpoint('s1', 'slow', up, false)]);
  const pending = invoke('/fn/slow/');
  await waitFor(() => up.held.length === 1);
  assert.deepEqual(await internal.post('/internal/v1/drain/wait', { sandboxIds: ['s1'], timeoutMs: 20 }), { drained: [], pending: ['s1'] });
  answer(up.held[0]);
  await pending;
});

test('a deleted endpoint finishes its in-flight request; a version gap answers 409 and a snapshot resyncs', async (t) => {
  const { routing, invoke, internal } = await setup(t);
  const up = await startUpstream(t, 'u');
  holdRequests(up);
  await routing.snapshot([fn('del')], [endpoint('s1', 'del', up)]);
  const pending = invoke('/fn/del/');
  await waitFor(() => up.held.length === 1);
  await routing.delta([{ type: 'endpoint.delete', sandboxId: 's1' }]);
  answer(up.held[0], 'finished');
  assert.equal((await pending).body.toString(), 'finished');

  await assert.rejects(internal.post('/internal/v1/routing', { kind: 'delta', epoch: 'other', baseVersion: 99, version: 100, changes: [] }),
    (err: { code?: string }) => err.code === 'ERR_VERSION_GAP');
  await assert.rejects(internal.post('/internal/v1/routing', { kind: 'delta', epoch: 'x', changes: [] }),
    (err: { code?: string }) => err.code === 'ERR_INVALID_REQUEST');

  const other = await startUpstream(t, 'other');
  await routing.snapshot([fn('resynced')], [endpoint('s2', 'resynced', other)]);
  assert.equal((await invoke('/fn/resynced/')).json().server, 'other');
  assert.equal((await invoke('/fn/del/')).json().error.code, 'ERR_FUNCTION_NOT_FOUND', 'the snapshot replaced the whole view');
});

test('a function that does not answer within timeoutMs gets 504 ERR_FUNCTION_TIMEOUT and the upstream is aborted', async (t) => {
  const { routing, invoke } = await setup(t);
  const up = await startUpstream(t, 'u');
  holdRequests(up);
  await routing.snapshot([fn('slow', { timeoutMs: 150 })], [endpoint('s1', 'slow', up)]);
  const res = await invoke('/fn/slow/');
  assert.equal(res.status, 504);
  assert.equal(res.json().error.code, 'ERR_FUNCTION_TIMEOUT');
  await waitFor(() => up.aborted === 1, { message: 'the upstream request aborted' });
  // The slot was released: the next request is dispatched.
  up.handler = (req, r) => { req.resume(); r.end('ok'); };
  assert.equal((await invoke('/fn/slow/')).status, 200);
});

test('a sandbox that resets the connection answers 502 ERR_SANDBOX_FAILED; one that is gone (connection refused) leaves the invocation waiting for a new endpoint, as a cold start', async (t) => {
  const { routing, invoke, dp } = await setup(t);
  const reset = await startUpstream(t, 'reset');
  reset.handler = (req) => req.socket.destroy();
  const dead = await startUpstream(t, 'dead');
  await new Promise<void>((resolve) => { dead.server.closeAllConnections(); dead.server.close(() => resolve()); });
  await routing.snapshot([fn('r'), fn('d')], [endpoint('s1', 'r', reset), endpoint('s2', 'd', dead)]);

  const res = await invoke('/fn/r/', { method: 'POST', body: Buffer.from('x') });
  assert.equal(res.status, 502);
  assert.equal(res.json().error.code, 'ERR_SANDBOX_FAILED');
  assert.equal(reset.requests.length, 1, 'a reset request is not retried');

  const refused = invoke('/fn/d/');
  await waitFor(async () => (await (await fetch(`${dp.url}/metrics`)).text()).includes('baton_dataplane_queue_depth{function="d"} 1'), { message: 'the refused invocation queued' });
  const replacement = await startUpstream(t, 'replacement');
  await routing.snapshot([fn('r'), fn('d')], [endpoint('s1', 'r', reset), endpoint('s3', 'd', replacement)]);
  const served = await refused;
  assert.equal(served.status, 200);
  assert.equal(served.json().server, 'replacement');
});

test('a refused invocation waits no longer than a cold start does: 504 ERR_COLD_START_TIMEOUT when no endpoint comes', async (t) => {
  const { routing, invoke } = await setup(t, { queueTimeoutMs: 200 });
  const dead = await startUpstream(t, 'dead');
  await new Promise<void>((resolve) => { dead.server.closeAllConnections(); dead.server.close(() => resolve()); });
  await routing.snapshot([fn('d')], [endpoint('s2', 'd', dead)]);
  const res = await invoke('/fn/d/');
  assert.equal(res.status, 504);
  assert.equal(res.json().error.code, 'ERR_COLD_START_TIMEOUT');
});

test('a refused connection is retried on another endpoint, again if that one refuses too, and an endpoint that refused gets no more invocations', async (t) => {
  const { routing, invoke, dp } = await setup(t);
  const good = await startUpstream(t, 'good');
  const dead = await startUpstream(t, 'dead');
  const dead2 = await startUpstream(t, 'dead2');
  for (const up of [dead, dead2]) await new Promise<void>((resolve) => { up.server.closeAllConnections(); up.server.close(() => resolve()); });
  await routing.snapshot([fn('rt', { concurrency: 4 })], [endpoint('s-dead', 'rt', dead), endpoint('s-dead2', 'rt', dead2), endpoint('s-good', 'rt', good)]);
  for (let i = 0; i < 6; i++) {
    const res = await invoke('/fn/rt/', { method: 'POST', body: Buffer.from('payload') });
    assert.equal(res.status, 200);
    assert.equal(res.json().server, 'good');
  }
  const view = await (await fetch(`${dp.url}/internal/v1/routing`)).json() as { endpoints: { sandboxId: string; isRefused: boolean }[] };
  assert.deepEqual(view.endpoints.map((e) => [e.sandboxId, e.isRefused]).sort(), [['s-dead', true], ['s-dead2', true], ['s-good', false]]);
  // With the good one full, an invocation waits for a slot rather than going to the refused one.
  holdRequests(good);
  const held = Array.from({ length: 4 }, () => invoke('/fn/rt/'));
  await waitFor(() => good.held.length === 4, { message: 'four invocations held by the good endpoint' });
  const fifth = invoke('/fn/rt/');
  await waitFor(async () => (await (await fetch(`${dp.url}/metrics`)).text()).includes('baton_dataplane_queue_depth{function="rt"} 1'), { message: 'the fifth queued' });
  good.handler = (req, res) => { req.resume(); res.end('{"server":"good"}'); };
  for (const h of good.held.splice(0)) answer(h, '{"server":"good"}');
  const served = await fifth;
  assert.equal(served.status, 200);
  assert.equal(served.json().server, 'good');
  for (const res of await Promise.all(held)) assert.equal(res.status, 200);
});

test('a client that goes away aborts the upstream request and frees the slot', async (t) => {
  const { routing, invoke, dp } = await setup(t);
  const up = await startUpstream(t, 'u');
  holdRequests(up);
  await routing.snapshot([fn('ab')], [endpoint('s1', 'ab', up)]);
  const controller = new AbortController();
  const aborted = request(`${dp.proxyUrl}/fn/ab/`, { signal: controller.signal }).catch((err: unknown) => err);
  await waitFor(() => up.held.length === 1);
  controller.abort();
  await aborted;
  await waitFor(() => up.aborted === 1, { message: 'the upstream saw the abort' });
  up.handler = (req, res) => { req.resume(); res.end('next'); };
  assert.equal((await invoke('/fn/ab/')).body.toString(), 'next');
});

test('a 5 MiB body streams both ways intact', async (t) => {
  const { routing, invoke } = await setup(t);
  const up = await startUpstream(t, 'u');
  let upstreamDigest = '';
  let upstreamChunks = 0;
  up.handler = (req, res) => {
    const hash = createHash('sha256');
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    req.on('data', (chunk: Buffer) => {
      upstreamChunks++;
      hash.update(chunk);
      res.write(chunk);
    });
    req.on('end', () => {
      upstreamDigest = hash.digest('hex');
      res.end();
    });
  };
  await routing.snapshot([fn('big')], [endpoint('s1', 'big', up)]);
  const payload = randomBytes(5 * 1024 * 1024);
  const digest = createHash('sha256').update(payload).digest('hex');
  const chunks = Array.from({ length: 80 }, (_, i) => payload.subarray(i * 65_536, (i + 1) * 65_536));
  const res = await invoke('/fn/big/upload', { method: 'PUT', body: Readable.from(chunks) });
  assert.equal(res.status, 200);
  assert.equal(upstreamDigest, digest, 'the sandbox received the body intact');
  assert.equal(res.body.length, payload.length);
  assert.equal(createHash('sha256').update(res.body).digest('hex'), digest, 'the client received it back intact');
  assert.ok(upstreamChunks > 1, 'the body arrived in pieces, not as one buffered blob');
});

test('a client that stops reading pauses the upstream response (backpressure), then gets every byte', async (t) => {
  const { routing, dp } = await setup(t);
  const up = await startUpstream(t, 'u');
  const totalBytes = 64 * 1024 * 1024;
  const chunk = Buffer.alloc(64 * 1024, 7);
  let written = 0;
  let isFinished = false;
  let blockedSince: number | undefined;
  up.handler = (req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(totalBytes) });
    const pump = (): void => {
      blockedSince = undefined;
      while (written < totalBytes) {
        written += chunk.length;
        if (!res.write(chunk)) {
          blockedSince = Date.now();
          res.once('drain', pump);
          return;
        }
      }
      res.end();
      isFinished = true;
    };
    pump();
  };
  await routing.snapshot([fn('stream')], [endpoint('s1', 'stream', up)]);
  const res = await new Promise<IncomingMessage>((resolve, reject) => get(`${dp.proxyUrl}/fn/stream/`, resolve).once('error', reject));
  res.pause();
  // Good case: the upstream stays blocked until the client reads. A proxy that buffered the
  // response would let the upstream finish; the 300 ms only bounds how long we wait to see that.
  await waitFor(() => isFinished || (blockedSince !== undefined && Date.now() - blockedSince > 300), { timeoutMs: 20_000 });
  assert.equal(isFinished, false, 'the upstream could not finish while the client was not reading');
  assert.ok(written < totalBytes);
  let received = 0;
  res.on('data', (c: Buffer) => { received += c.length; });
  res.resume();
  await new Promise((resolve) => res.once('end', resolve));
  assert.equal(res.statusCode, 200);
  assert.equal(received, totalBytes);
  assert.equal(isFinished, true);
});

test('demand reports arrive batched with the average concurrency, then a final zero', async (t) => {
  const { cp, routing, invoke } = await setup(t);
  const up = await startUpstream(t, 'u');
  holdRequests(up);
  await routing.snapshot([fn('dem', { concurrency: 2 })], [endpoint('s1', 'dem', up)]);
  const a = invoke('/fn/dem/a');
  const b = invoke('/fn/dem/b');
  await waitFor(() => up.held.length === 2);
  const busy = await waitFor(() => cp.demand.find((r) => !r.isPoke && r.entries.some((e) => e.function === 'dem' && e.inflight === 2 && e.concurrency === 2)),
    { message: 'a periodic report with 2 in flight' });
  assert.equal(busy.dataplaneId, cp.registers[0]?.dataplaneId);
  answer(up.held[0]);
  answer(up.held[1]);
  await Promise.all([a, b]);
  await waitFor(() => cp.demand.some((r) => !r.isPoke && r.entries.some((e) => e.function === 'dem' && e.concurrency === 0 && e.inflight === 0)),
    { message: 'a final zero entry' });
});

test('metrics expose invocations, in flight, queue depth, endpoints and cold-start wait', async (t) => {
  const { routing, invoke, internal, dp } = await setup(t);
  const up = await startUpstream(t, 'u');
  await routing.snapshot([fn('m')], []);
  const pending = invoke('/fn/m/');
  await waitFor(async () => (await metricsText(dp.url)).includes('baton_dataplane_queue_depth{function="m"} 1'), { message: 'queue depth 1' });
  await routing.delta([{ type: 'endpoint.put', endpoint: endpoint('s1', 'm', up) }]);
  await pending;
  await invoke('/fn/nope/');
  const text = await metricsText(dp.url);
  assert.match(text, /baton_dataplane_invocations_total\{function="m",code="2xx"\} 1/);
  assert.match(text, /baton_dataplane_endpoints\{function="m"\} 1/);
  assert.match(text, /baton_dataplane_inflight\{function="m"\} 0/);
  assert.match(text, /^baton_dataplane_cold_start_wait_seconds_count 1$/m);
  // A function with no endpoint and nothing in flight or queued has no gauge series.
  assert.doesNotMatch(text, /baton_dataplane_endpoints\{function="nope"\}/);
  await routing.snapshot([fn('m'), fn('idle')], [endpoint('s1', 'm', up)]);
  const after = await metricsText(dp.url);
  assert.doesNotMatch(after, /function="idle"/);
  assert.match(after, /baton_dataplane_endpoints\{function="m"\} 1/);
  const health = await internal.get<{ status: string; version: number }>('/healthz');
  assert.equal(health.status, 'ok');
});

test('close: new requests get 503 ERR_SHUTTING_DOWN, queued ones fail, in-flight ones finish', async (t) => {
  const { cp, routing, invoke, dp } = await setup(t);
  const up = await startUpstream(t, 'u');
  holdRequests(up);
  await routing.snapshot([fn('c')], [endpoint('s1', 'c', up)]);
  const inflight = invoke('/fn/c/1');
  await waitFor(() => up.held.length === 1);
  const queued = invoke('/fn/c/2');
  await waitFor(() => pokesFor(cp, 'c').length > 0);
  const closed = dp.close();
  const queuedRes = await queued;
  assert.equal(queuedRes.status, 503);
  assert.equal(queuedRes.json().error.code, 'ERR_SHUTTING_DOWN');
  answer(up.held[0], 'finished');
  assert.equal((await inflight).body.toString(), 'finished');
  await closed;
});

async function metricsText(baseUrl: string): Promise<string> {
  const res = await request(`${baseUrl}/metrics`);
  return res.body.text();
}

test('ch-bl: invocations with the same affinity header value go to the same sandbox; different values spread', async (t) => {
  const { routing, invoke } = await setup(t, { loadBalancingPolicy: 'ch-bl' });
  const ups = await Promise.all(['u1', 'u2', 'u3', 'u4'].map((name) => startUpstream(t, name)));
  await routing.snapshot([fn('aff', { concurrency: 100, affinityHeader: 'x-user' })], ups.map((u, i) => endpoint(`s${i}`, 'aff', u)));
  const serverFor = async (user: string) => {
    const seen = new Set<unknown>();
    for (let i = 0; i < 5; i++) seen.add((await invoke('/fn/aff/', { headers: { 'x-user': user } })).json().server);
    assert.equal(seen.size, 1, `every invocation of user ${user} went to one sandbox`);
    return [...seen][0];
  };
  const servers = new Set<unknown>();
  for (let user = 0; user < 24; user++) servers.add(await serverFor(`user-${user}`));
  assert.ok(servers.size >= 2, `24 keys spread over more than one sandbox (${servers.size})`);
});

test('routing deltas pipelined by the publisher on one RPC stream apply in order: no gap, no second snapshot', async (t) => {
  const { dp } = await setup(t);
  const connection = new RpcConnection(dp.url);
  t.after(() => connection.close());
  const client = new JsonClient(dp.url, { rpc: connection });
  const outcomes: string[] = [];
  let maxInFlight = 0;
  let inFlight = 0;
  const transport = {
    async send(update: RoutingUpdate): Promise<RoutingAck> {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try {
        const ack = await client.post<RoutingAck>('/internal/v1/routing', update);
        outcomes.push(`${update.kind}:ok`);
        return ack;
      } catch (err) {
        outcomes.push(`${update.kind}:${(err as { code?: string }).code ?? 'error'}`);
        throw err;
      } finally {
        inFlight--;
      }
    },
  };
  const functions = [fn('p')];
  const publisher = new RoutingPublisher(transport, { snapshot: () => ({ functions, endpoints: [] }) }, systemClock, silentLogger());
  t.after(() => publisher.close());
  publisher.enqueue({ type: 'function.put', function: functions[0] as RoutingFunction });
  await publisher.flushed();
  // 200 endpoints over 100 event-loop turns: many deltas leave before the first is acknowledged.
  for (let i = 0; i < 200; i++) {
    publisher.enqueue({ type: 'endpoint.put', endpoint: { sandboxId: `s-${i}`, function: 'p', address: `127.0.0.1:${10_000 + i}`, isDraining: false } });
    if (i % 2 === 1) await new Promise<void>((resolve) => setImmediate(resolve));
  }
  await publisher.flushed();
  assert.ok(maxInFlight > 1, `deltas were pipelined (at most ${maxInFlight} in flight)`);
  assert.deepEqual(outcomes.filter((o) => !o.endsWith(':ok')), [], 'every update applied');
  assert.equal(outcomes.filter((o) => o.startsWith('snapshot')).length, 1, 'only the first message was a snapshot');
  const view = await client.get<{ version: number; endpoints: { sandboxId: string }[] }>('/internal/v1/routing');
  assert.equal(view.endpoints.length, 200);
  assert.equal(view.version, publisher.version);
});
