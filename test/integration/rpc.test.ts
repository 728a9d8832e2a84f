import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { BatonError } from '../../src/core/errors.ts';
import { JsonClient } from '../../src/transport/json-client.ts';
import { JsonRouter, reply } from '../../src/transport/json-router.ts';
import { RpcConnection } from '../../src/transport/rpc-client.ts';
import { RPC_PATH, RPC_PROTOCOL, serveRpc, type RpcServer } from '../../src/transport/rpc-server.ts';
import { waitFor } from '../kit/wait-for.ts';

interface Running {
  readonly url: string;
  readonly server: Server;
  readonly rpc: RpcServer | undefined;
  /** HTTP requests the server answered (the RPC stream's calls are not among them). */
  httpRequests: number;
  close(): Promise<void>;
}

/** A router with echo, slow, failing and raw routes, served over HTTP and (unless `withRpc` is false) the RPC stream. */
async function serve(options: { withRpc?: boolean; maxFrameBytes?: number } = {}): Promise<Running> {
  const release: (() => void)[] = [];
  const router = new JsonRouter()
    .on('POST', '/echo/:name', async (ctx) => ({ name: ctx.params['name'], q: ctx.query.get('q'), body: await ctx.json() }))
    .on('POST', '/slow', async (ctx) => {
      const body = await ctx.json() as { id: number };
      await new Promise<void>((resolve) => release.push(resolve));
      return { id: body.id };
    })
    .on('POST', '/release', () => {
      for (const r of release.splice(0)) r();
      return reply(204);
    })
    .on('POST', '/fail', () => { throw new BatonError('ERR_FUNCTION_NOT_FOUND', 'no such function', { details: { name: 'f' } }); })
    .on('GET', '/raw', () => ({ status: 200, raw: { data: 'text', contentType: 'text/plain' } }));
  const running: Running = {
    url: '', server: createServer((req, res) => { running.httpRequests++; router.handle(req, res); }), rpc: undefined, httpRequests: 0,
    async close() {
      for (const r of release.splice(0)) r();
      running.rpc?.close();
      running.server.closeAllConnections();
      await new Promise<void>((resolve) => running.server.close(() => resolve()));
    },
  };
  const rpc = options.withRpc === false ? undefined : serveRpc(running.server, router.dispatch, options.maxFrameBytes === undefined ? {} : { maxFrameBytes: options.maxFrameBytes });
  await new Promise<void>((resolve) => running.server.listen(0, '127.0.0.1', resolve));
  return Object.assign(running, { url: `http://127.0.0.1:${(running.server.address() as AddressInfo).port}`, rpc });
}

async function rejectsWithCode(promise: Promise<unknown>, code: string): Promise<BatonError> {
  const err = await promise.then(() => assert.fail(`expected ${code}`), (e: unknown) => e);
  assert.ok(err instanceof BatonError, `expected a BatonError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  return err;
}

describe('rpc stream', () => {
  let peer: Running;
  before(async () => { peer = await serve(); });
  after(async () => { await peer.close(); });

  test('calls travel on one upgraded connection and get the same answers as over HTTP', async () => {
    const connection = new RpcConnection(peer.url);
    const viaRpc = new JsonClient(`${peer.url}/`, { rpc: connection });
    const viaHttp = new JsonClient(peer.url);
    try {
      const before = peer.httpRequests;
      const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => viaRpc.post(`/echo/n${i}?q=${i}`, { i })));
      assert.deepEqual(answers[7], { name: 'n7', q: '7', body: { i: 7 } });
      assert.deepEqual(answers[7], await viaHttp.post('/echo/n7?q=7', { i: 7 }));
      assert.equal(peer.httpRequests - before, 1, 'only the HTTP client made an HTTP request');
      assert.equal(peer.rpc?.connections, 1);
      assert.equal(await viaRpc.post('/release', {}), undefined, 'an answer without a body is undefined, as over HTTP');
    } finally {
      connection.close();
      await viaHttp.close();
    }
  });

  test('an error answer is the peer\'s BatonError, code and details kept', async () => {
    const connection = new RpcConnection(peer.url);
    try {
      const client = new JsonClient(peer.url, { rpc: connection });
      const err = await rejectsWithCode(client.post('/fail', {}), 'ERR_FUNCTION_NOT_FOUND');
      assert.deepEqual(err.details, { name: 'f' });
      await rejectsWithCode(client.post('/nowhere', {}), 'ERR_NOT_FOUND');
      await rejectsWithCode(client.get('/raw'), 'ERR_INVALID_REQUEST');
    } finally {
      connection.close();
    }
  });

  test('calls do not wait for each other: a slow call does not hold up later ones', async () => {
    const connection = new RpcConnection(peer.url);
    try {
      const client = new JsonClient(peer.url, { rpc: connection });
      const slow = client.post<{ id: number }>('/slow', { id: 1 });
      assert.deepEqual(await client.post('/echo/x', { fast: true }), { name: 'x', q: null, body: { fast: true } });
      assert.equal(connection.pending, 1, 'the slow call is still in flight');
      await client.post('/release', {});
      assert.deepEqual(await slow, { id: 1 });
    } finally {
      connection.close();
    }
  });

  test('a call past its deadline fails with ERR_TIMEOUT; an aborted one at once', async () => {
    const connection = new RpcConnection(peer.url);
    try {
      const client = new JsonClient(peer.url, { rpc: connection });
      await rejectsWithCode(client.post('/slow', { id: 2 }, { timeoutMs: 100 }), 'ERR_TIMEOUT');
      const controller = new AbortController();
      const aborted = client.post('/slow', { id: 3 }, { signal: controller.signal });
      controller.abort();
      await rejectsWithCode(aborted, 'ERR_UNAVAILABLE');
      assert.equal(connection.pending, 0);
      await client.post('/release', {});
    } finally {
      connection.close();
    }
  });

  test('calls beyond the in-flight limit are refused at once with ERR_OVERLOADED', async () => {
    const connection = new RpcConnection(peer.url, { maxPending: 3 });
    try {
      const client = new JsonClient(peer.url, { rpc: connection });
      const held = [1, 2, 3].map((id) => client.post('/slow', { id }));
      await rejectsWithCode(client.post('/echo/x', {}), 'ERR_OVERLOADED');
      const releaser = new JsonClient(peer.url);
      await waitFor(async () => {
        await releaser.post('/release', {});
        return connection.pending === 0;
      });
      assert.deepEqual(await Promise.all(held), [{ id: 1 }, { id: 2 }, { id: 3 }]);
      await releaser.close();
    } finally {
      connection.close();
    }
  });

  test('on an open stream a call answers as before, and a body JSON cannot encode rejects rather than throws', async () => {
    const connection = new RpcConnection(peer.url);
    try {
      const client = new JsonClient(peer.url, { rpc: connection });
      await client.post('/echo/first', { n: 1 });
      assert.equal(connection.isOpen, true);
      const before = peer.httpRequests;
      assert.deepEqual(await client.post('/echo/again', { n: 2 }), await new JsonClient(peer.url).post('/echo/again', { n: 2 }));
      assert.equal(peer.httpRequests, before + 1, 'only the plain client went over HTTP');
      let call: Promise<unknown> | undefined;
      assert.doesNotThrow(() => { call = client.post('/echo/x', { n: 1n }); });
      await assert.rejects(call as Promise<unknown>, TypeError);
    } finally {
      connection.close();
    }
  });

  test('a body over the frame limit is refused before it is sent', async () => {
    const connection = new RpcConnection(peer.url, { maxFrameBytes: 1024 });
    try {
      await rejectsWithCode(new JsonClient(peer.url, { rpc: connection }).post('/echo/x', { s: 'x'.repeat(2000) }), 'ERR_PAYLOAD_TOO_LARGE');
    } finally {
      connection.close();
    }
  });

  test('when the peer goes away, calls in flight fail with ERR_UNAVAILABLE and the next call reconnects', async () => {
    const other = await serve();
    const connection = new RpcConnection(other.url);
    const client = new JsonClient(other.url, { rpc: connection });
    try {
      await client.post('/echo/x', {});
      const inFlight = client.post('/slow', { id: 4 });
      await waitFor(() => connection.pending === 1);
      other.rpc?.close();
      await rejectsWithCode(inFlight, 'ERR_UNAVAILABLE');
      assert.deepEqual(await client.post('/echo/y', { again: true }), { name: 'y', q: null, body: { again: true } });
      assert.equal(other.rpc?.connections, 1, 'a new connection was opened');
    } finally {
      connection.close();
      await other.close();
    }
    await rejectsWithCode(client.post('/echo/z', {}), 'ERR_UNAVAILABLE');
  });

  test('a peer that does not serve the stream is called over HTTP', async () => {
    const plain = await serve({ withRpc: false });
    const connection = new RpcConnection(plain.url);
    try {
      const client = new JsonClient(plain.url, { rpc: connection });
      assert.deepEqual(await client.post('/echo/x', { a: 1 }), { name: 'x', q: null, body: { a: 1 } });
      assert.equal(connection.isUnsupported, true);
      assert.deepEqual(await client.post('/echo/y', {}), { name: 'y', q: null, body: {} });
      assert.equal(plain.httpRequests, 3, 'the refused upgrade and both calls');
    } finally {
      connection.close();
      await plain.close();
    }
  });

  test('a nobody at the address fails the call with ERR_UNAVAILABLE', async () => {
    const gone = await serve();
    const url = gone.url;
    await gone.close();
    const connection = new RpcConnection(url);
    try {
      await rejectsWithCode(new JsonClient(url, { rpc: connection }).post('/echo/x', {}), 'ERR_UNAVAILABLE');
    } finally {
      connection.close();
    }
  });

  test('a connection that breaks the framing is closed by the server; others go on', async () => {
    const small = await serve({ maxFrameBytes: 64 });
    const good = new RpcConnection(small.url);
    try {
      const client = new JsonClient(small.url, { rpc: good });
      await client.post('/echo/x', {});
      const { port } = new URL(small.url);
      const socket = connect(Number(port), '127.0.0.1');
      socket.write(`GET ${RPC_PATH} HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: ${RPC_PROTOCOL}\r\n\r\n`);
      const header = Buffer.alloc(4);
      header.writeUInt32BE(1000, 0);
      socket.write(header);
      await new Promise<void>((resolve) => socket.on('close', () => resolve()).on('error', () => undefined).resume());
      assert.deepEqual(await client.post('/echo/y', {}), { name: 'y', q: null, body: {} });
    } finally {
      good.close();
      await small.close();
    }
  });

  test('an upgrade to another protocol or path is refused', async () => {
    const { port } = new URL(peer.url);
    for (const [path, protocol] of [[RPC_PATH, 'websocket'], ['/other', RPC_PROTOCOL]] as const) {
      const socket = connect(Number(port), '127.0.0.1');
      socket.write(`GET ${path} HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: ${protocol}\r\n\r\n`);
      let text = '';
      await new Promise<void>((resolve) => socket.on('data', (d: Buffer) => { text += d.toString(); }).on('close', () => resolve()).on('error', () => resolve()));
      assert.match(text, /^HTTP\/1\.1 400 /);
    }
  });
});

test('calls to a peer that stops reading are refused with ERR_OVERLOADED once too many bytes wait unsent', async (t) => {
  // A peer that accepts the upgrade and then never reads.
  const sockets: import('node:net').Socket[] = [];
  const server = createNetServer((socket) => {
    sockets.push(socket);
    socket.pause();
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: ${RPC_PROTOCOL}\r\n\r\n`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()); }));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const connection = new RpcConnection(url, { maxUnsentBytes: 1024 * 1024 });
  t.after(() => connection.close());
  const client = new JsonClient(url, { rpc: connection, timeoutMs: 5_000 });
  const body = { s: 'x'.repeat(256 * 1024) };
  const calls: Promise<unknown>[] = [];
  let refused: BatonError | undefined;
  for (let i = 0; i < 400 && refused === undefined; i++) {
    const call = client.post('/echo/x', body);
    calls.push(call.catch(() => undefined));
    const outcome = await Promise.race([call.then(() => undefined, (e: unknown) => e), new Promise((r) => setImmediate(() => r(undefined)))]);
    if (outcome instanceof BatonError && outcome.code === 'ERR_OVERLOADED') refused = outcome;
  }
  assert.ok(refused !== undefined, 'a call was refused once the unsent bytes passed the limit');
  assert.match(refused.message, /bytes already waiting to be sent/);
  assert.ok(connection.pending < 400, `at most a bounded number of calls were accepted (${connection.pending})`);
  connection.close();
  await Promise.all(calls);
});
