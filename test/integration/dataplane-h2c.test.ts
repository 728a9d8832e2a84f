import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { connect, createServer as createHttp2Server, type ClientHttp2Session, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import { connect as netConnect, type AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import type { RoutingEndpoint, RoutingFunction } from '../../src/api/dataplane.ts';
import { parseDataplaneConfig } from '../../src/dataplane/config.ts';
import { startDataplane } from '../../src/dataplane/main.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { JsonClient } from '../../src/transport/json-client.ts';
import { tempDirSync } from '../kit/temp-dir.ts';
import { waitFor } from '../kit/wait-for.ts';

/**
 * The data plane's h2c paths against real loopback servers: HTTP/2 clients in, HTTP/2 sandboxes
 * out (a node:http2 server per sandbox), routing pushed as the control plane would.
 */

/** A control plane that accepts everything (registration, heartbeats, demand). */
async function startFakeControlPlane(t: TestContext): Promise<string> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
  });
  return `http://127.0.0.1:${await listen(t, server)}`;
}

async function listen(t: TestContext, server: Server | Http2Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as AddressInfo).port;
}

interface H2Sandbox {
  readonly address: string;
  readonly sessions: ServerHttp2Session[];
  active: number;
  maxActive: number;
  served: number;
  /** Streams parked until the test answers them (when `isHolding`). */
  readonly held: ServerHttp2Stream[];
  isHolding: boolean;
  /** Replaces how streams are answered. */
  onStream?: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void;
}

async function startH2Sandbox(t: TestContext, name: string): Promise<H2Sandbox> {
  const server = createHttp2Server();
  const sandbox: H2Sandbox = { address: '', sessions: [], active: 0, maxActive: 0, served: 0, held: [], isHolding: false };
  server.on('session', (session: ServerHttp2Session) => sandbox.sessions.push(session));
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    sandbox.active++;
    sandbox.maxActive = Math.max(sandbox.maxActive, sandbox.active);
    stream.on('close', () => sandbox.active--);
    stream.on('error', () => undefined);
    if (sandbox.onStream !== undefined) {
      sandbox.onStream(stream, headers);
      return;
    }
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const respond = (): void => {
        sandbox.served++;
        stream.respond({ ':status': 200, 'content-type': 'application/json', 'x-sandbox': name });
        stream.end(JSON.stringify({
          sandbox: name, path: headers[':path'], authority: headers[':authority'], method: headers[':method'], body: Buffer.concat(chunks).toString('utf8'),
          te: headers['te'] ?? null, grpcTimeout: headers['grpc-timeout'] ?? null,
        }));
      };
      if (sandbox.isHolding) sandbox.held.push(Object.assign(stream, { respond2: respond }));
      else respond();
    });
  });
  t.after(() => {
    for (const s of sandbox.sessions) s.destroy();
  });
  const port = await listen(t, server);
  return Object.assign(sandbox, { address: `127.0.0.1:${port}` });
}

function release(stream: ServerHttp2Stream | undefined): void {
  assert.ok(stream, 'a held stream');
  (stream as ServerHttp2Stream & { respond2: () => void }).respond2();
}

let nextDataplane = 0;

async function setup(t: TestContext, overrides: Record<string, unknown> = {}) {
  const cpUrl = await startFakeControlPlane(t);
  const config = parseDataplaneConfig({
    port: 0, internalPort: 0, dataDir: tempDirSync('baton-dp-h2c-'), dataplaneId: `dp-h2c-${process.pid}-${nextDataplane++}`, controlPlaneUrl: cpUrl,
    demandReportIntervalMs: 50, heartbeatIntervalMs: 50, queueTimeoutMs: 10_000, shutdownGraceMs: 2_000, logLevel: 'silent', ...overrides,
  });
  const dp = await startDataplane(config, { logger: silentLogger() });
  t.after(() => dp.close());
  const internal = new JsonClient(dp.url);
  t.after(() => internal.close());
  const epoch = `epoch-${nextDataplane}`;
  let version = 0;
  const routing = {
    snapshot: (functions: RoutingFunction[], endpoints: RoutingEndpoint[]) =>
      internal.post('/internal/v1/routing', { kind: 'snapshot', epoch, version: ++version, functions, endpoints }),
    delta: (changes: unknown[]) => {
      const baseVersion = version;
      return internal.post('/internal/v1/routing', { kind: 'delta', epoch, baseVersion, version: ++version, changes });
    },
  };
  const client = connect(dp.proxyUrl);
  client.on('error', () => undefined);
  t.after(() => client.destroy());
  return { dp, routing, client };
}

const fn = (name: string, extra: Partial<RoutingFunction> = {}): RoutingFunction => ({ name, generation: 1, concurrency: 1, timeoutMs: 10_000, protocol: 'h2c', ...extra });
const endpoint = (sandboxId: string, fnName: string, sandbox: { address: string }, isDraining = false): RoutingEndpoint =>
  ({ sandboxId, function: fnName, address: sandbox.address, isDraining });

async function h2(session: ClientHttp2Session, headers: Record<string, string>, body?: string): Promise<{ head: IncomingHttpHeaders; body: string; trailers: IncomingHttpHeaders | undefined }> {
  const stream = session.request(headers, { endStream: body === undefined });
  if (body !== undefined) stream.end(body);
  let trailers: IncomingHttpHeaders | undefined;
  stream.on('trailers', (t: IncomingHttpHeaders) => { trailers = t; });
  const [head] = await once(stream, 'response') as [IncomingHttpHeaders];
  let text = '';
  for await (const chunk of stream) text += (chunk as Buffer).toString('utf8');
  return { head, body: text, trailers };
}

test('h2c in and out: a cold start queues, then the streams share one session within the function\'s concurrency', async (t) => {
  const { routing, client } = await setup(t);
  const sandbox = await startH2Sandbox(t, 'sb1');
  await routing.snapshot([fn('echo', { concurrency: 2 })], []);
  const pending = Array.from({ length: 5 }, (_, i) => h2(client, { ':method': 'POST', ':path': `/call/${i}`, ':authority': 'echo', te: 'trailers' }, `body-${i}`));
  // Nothing answers until the sandbox joins the routing view.
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(sandbox.served, 0);
  await routing.delta([{ type: 'endpoint.put', endpoint: endpoint('s1', 'echo', sandbox) }]);
  const answers = await Promise.all(pending);
  for (const [i, answer] of answers.entries()) {
    assert.equal(answer.head[':status'], 200);
    assert.equal(answer.head['x-sandbox'], 'sb1');
    const body = JSON.parse(answer.body) as Record<string, unknown>;
    assert.deepEqual([body['path'], body['authority'], body['method'], body['body'], body['te']], [`/call/${i}`, 'echo', 'POST', `body-${i}`, 'trailers']);
  }
  assert.equal(sandbox.sessions.length, 1, 'one session to the sandbox');
  assert.ok(sandbox.maxActive <= 2, `at most concurrency (2) streams at once, saw ${sandbox.maxActive}`);
});

test('an endpoint that leaves the routing view finishes its stream in flight, then its session is closed', async (t) => {
  const { routing, client } = await setup(t);
  const sandbox = await startH2Sandbox(t, 'sb1');
  sandbox.isHolding = true;
  await routing.snapshot([fn('echo')], [endpoint('s1', 'echo', sandbox)]);
  const pending = h2(client, { ':method': 'GET', ':path': '/', ':authority': 'echo' });
  await waitFor(() => sandbox.held.length === 1, { message: 'the stream reached the sandbox' });
  await routing.delta([{ type: 'endpoint.delete', sandboxId: 's1' }]);
  assert.equal(sandbox.sessions[0]?.closed, false, 'the session stays while its stream is in flight');
  release(sandbox.held[0]);
  assert.equal((await pending).head[':status'], 200);
  await waitFor(() => sandbox.sessions[0]?.closed === true || sandbox.sessions[0]?.destroyed === true, { message: 'the session closed' });
});

test('h2c sandbox failures answer as over HTTP/1.1: a reset is 502, no answer within timeoutMs is 504, a refused connection tries another endpoint with the body whole', async (t) => {
  // Round robin: of consecutive invocations, every other one tries the refusing endpoint first.
  const { routing, client } = await setup(t, { loadBalancingPolicy: 'round-robin' });
  const resetting = await startH2Sandbox(t, 'reset');
  resetting.onStream = (stream) => stream.close(2 /* INTERNAL_ERROR */);
  const silent = await startH2Sandbox(t, 'silent');
  silent.onStream = () => undefined;
  const good = await startH2Sandbox(t, 'good');
  // An address nothing listens on: a port that was just free.
  const closed = createServer();
  const closedPort = await new Promise<number>((resolve) => closed.listen(0, '127.0.0.1', () => resolve((closed.address() as AddressInfo).port)));
  await new Promise<void>((resolve) => closed.close(() => resolve()));

  await routing.snapshot([fn('resets'), fn('slow', { timeoutMs: 200 }), fn('refused', { concurrency: 1 })], [
    endpoint('r1', 'resets', resetting), endpoint('w1', 'slow', silent),
  ]);
  const reset = await h2(client, { ':method': 'GET', ':path': '/', ':authority': 'resets' });
  assert.deepEqual([reset.head[':status'], reset.head['x-baton-error']], [502, 'ERR_SANDBOX_FAILED']);
  const slow = await h2(client, { ':method': 'GET', ':path': '/', ':authority': 'slow' });
  assert.deepEqual([slow.head[':status'], slow.head['x-baton-error']], [504, 'ERR_FUNCTION_TIMEOUT']);

  await routing.delta([{ type: 'endpoint.put', endpoint: endpoint('c1', 'refused', { address: `127.0.0.1:${closedPort}` }) }]);
  const alone = await h2(client, { ':method': 'GET', ':path': '/', ':authority': 'refused' });
  assert.deepEqual([alone.head[':status'], alone.head['x-baton-error']], [502, 'ERR_SANDBOX_FAILED']);
  await routing.delta([{ type: 'endpoint.put', endpoint: endpoint('g1', 'refused', good) }]);
  // Whichever endpoint the balancer picks first, the invocation is served by the one that listens,
  // and a streamed body (no content-length) arrives whole after the refusal.
  for (let i = 0; i < 4; i++) {
    const sent = `payload-${i}-${'y'.repeat(50_000)}`;
    const retried = await h2(client, { ':method': 'POST', ':path': '/', ':authority': 'refused' }, sent);
    assert.deepEqual([retried.head[':status'], retried.head['x-sandbox']], [200, 'good']);
    const received = (JSON.parse(retried.body) as { body: string }).body;
    assert.ok(received === sent, `body ${i}: ${received.length} of ${sent.length} bytes arrived, starting '${received.slice(0, 12)}'`);
  }
});

test('a gRPC call waiting for a cold start leaves the queue at its grpc-timeout with DEADLINE_EXCEEDED; an unknown function is NOT_FOUND', async (t) => {
  const { dp, routing, client } = await setup(t, { queueCapacity: 1 });
  await routing.snapshot([fn('grpc-fn')], []);
  const grpcHeaders = { ':method': 'POST', ':path': '/pkg.Svc/Call', ':authority': 'grpc-fn', 'content-type': 'application/grpc', te: 'trailers' };
  const expired = await h2(client, { ...grpcHeaders, 'grpc-timeout': '150m' }, '\u0000\u0000\u0000\u0000\u0000');
  assert.equal(expired.head[':status'], 200);
  assert.equal(expired.head['x-baton-error'], 'ERR_DEADLINE_EXCEEDED');
  assert.equal(expired.trailers?.['grpc-status'], '4');
  // It left the queue (capacity 1): another can wait in its place, and is refused only when the queue is full.
  const waiting = h2(client, { ...grpcHeaders, 'grpc-timeout': '5S' }, '\u0000\u0000\u0000\u0000\u0000');
  await new Promise((resolve) => setTimeout(resolve, 50));
  const full = await h2(client, grpcHeaders, '\u0000\u0000\u0000\u0000\u0000');
  assert.deepEqual([full.head['x-baton-error'], full.trailers?.['grpc-status']], ['ERR_QUEUE_FULL', '14']);
  const sandbox = await startH2Sandbox(t, 'late');
  await routing.delta([{ type: 'endpoint.put', endpoint: endpoint('l1', 'grpc-fn', sandbox) }]);
  const served = await waiting;
  assert.equal(served.head['x-sandbox'], 'late');
  // The sandbox is given what was left of the 5 s after the wait for it, in milliseconds.
  const grpcTimeout = String((JSON.parse(served.body) as { grpcTimeout: unknown }).grpcTimeout);
  assert.match(grpcTimeout, /^\d+m$/);
  assert.ok(Number.parseInt(grpcTimeout, 10) < 5_000 && Number.parseInt(grpcTimeout, 10) > 0, grpcTimeout);

  const unknown = await h2(client, { ...grpcHeaders, ':authority': 'nope' });
  assert.deepEqual([unknown.head[':status'], unknown.trailers?.['grpc-status']], [200, '5']);
  assert.match(decodeURIComponent(String(unknown.trailers?.['grpc-message'])), /^ERR_FUNCTION_NOT_FOUND: /);

  // Over HTTP/2 a plain request keeps the ordinary coded body.
  const plain = await h2(client, { ':method': 'GET', ':path': '/', ':authority': 'nope' });
  assert.equal(plain.head[':status'], 404);
  assert.equal((JSON.parse(plain.body) as { error: { code: string } }).error.code, 'ERR_FUNCTION_NOT_FOUND');
  // More header fields than maxHeaderCount (100) is 431 over HTTP/2 as over HTTP/1.1.
  const many = Object.fromEntries(Array.from({ length: 102 }, (_, i) => [`x-field-${i}`, 'v']));
  const crowded = await h2(client, { ':method': 'GET', ':path': '/', ':authority': 'grpc-fn', ...many });
  assert.deepEqual([crowded.head[':status'], crowded.head['x-baton-error']], [431, 'ERR_HEADERS_TOO_LARGE']);
  assert.ok(dp.proxyUrl.startsWith('http://127.0.0.1:'));
});

test('over HTTP/1.1 to an h2c function, a body arrives whole; closing, the data plane lets a stream in flight finish', async (t) => {
  const { dp, routing, client } = await setup(t);
  const sandbox = await startH2Sandbox(t, 'sb1');
  await routing.snapshot([fn('echo', { concurrency: 2 })], [endpoint('s1', 'echo', sandbox)]);
  const body = 'x'.repeat(200_000);
  const res = await fetch(`${dp.proxyUrl}/fn/echo/upload`, { method: 'POST', body, headers: { 'content-type': 'text/plain' } });
  assert.equal(res.status, 200);
  const answer = await res.json() as Record<string, unknown>;
  assert.deepEqual([answer['path'], answer['method'], answer['authority'], (answer['body'] as string).length], ['/upload', 'POST', dp.proxyUrl.slice('http://'.length), body.length]);

  sandbox.isHolding = true;
  const pending = h2(client, { ':method': 'GET', ':path': '/', ':authority': 'echo' });
  await waitFor(() => sandbox.held.length === 1, { message: 'the stream reached the sandbox' });
  const closed = dp.close();
  await new Promise((resolve) => setTimeout(resolve, 50));
  release(sandbox.held[0]);
  assert.equal((await pending).head[':status'], 200);
  await closed;
});

test('a connection that has sent nothing yet does not hold up the data plane\'s close', { timeout: 30_000 }, async (t) => {
  const { dp, routing } = await setup(t);
  await routing.snapshot([], []);
  const silent = netConnect(Number(new URL(dp.proxyUrl).port), '127.0.0.1');
  await once(silent, 'connect');
  const ended = once(silent, 'close');
  // Without the data plane closing it, this socket would keep close() waiting until its first-bytes timeout.
  await dp.close();
  await ended;
});
