import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { Agent, request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { test } from 'node:test';
import fc from 'fast-check';
import { MAX_HEAD_BYTES, ResponderServer, serveConnection, type ConnectionSocket, type LeanHandler } from '../../src/worker/emulated/http-responder.ts';

/** Answers `{target, x}` (the `x-test` header); `x-delay` ms later when asked. */
const echo: LeanHandler = (req, respond) => {
  const body = JSON.stringify({ target: req.target, x: req.headers.get('x-test') ?? null, method: req.method });
  const delay = Number(req.headers.get('x-delay') ?? 0);
  if (delay === 0) {
    respond({ status: 200, body });
    return undefined;
  }
  const timer = setTimeout(() => respond({ status: 200, body }), delay);
  return () => clearTimeout(timer);
};

async function startServer(t: { after(fn: () => Promise<void>): void }, handler: LeanHandler = echo): Promise<number> {
  const server = new ResponderServer(handler, ['x-test', 'x-delay']);
  const port = await server.listen(0, '127.0.0.1');
  t.after(() => server.close());
  return port;
}

/** Writes raw bytes and collects everything the server sends until it closes (or `ms` pass). */
async function raw(port: number, pieces: readonly string[], ms = 1_000): Promise<{ text: string; isClosedByServer: boolean }> {
  const socket: Socket = connect(port, '127.0.0.1');
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  let text = '';
  socket.setEncoding('utf8').on('data', (d: string) => { text += d; });
  const closed = new Promise<boolean>((resolve) => {
    socket.once('end', () => resolve(true));
    setTimeout(() => resolve(false), ms);
  });
  for (const piece of pieces) {
    socket.write(piece);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const isClosedByServer = await closed;
  socket.destroy();
  return { text, isClosedByServer };
}

/** The status codes of the responses in a byte stream (a response's body is followed directly by the next status line). */
const statuses = (text: string): string[] => [...text.matchAll(/(?:^|\})HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1] as string);
const bodies = (text: string): unknown[] => [...text.matchAll(/\r\n\r\n(\{[^\r]*?\})(?=HTTP|$)/g)].map((m) => JSON.parse(m[1] as string));

test('keep-alive: many requests on one connection, bodies of any framing read and dropped', async (t) => {
  const port = await startServer(t);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.after(async () => agent.destroy());
  const sockets = new Set<unknown>();
  for (let i = 0; i < 5; i++) {
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, agent, path: `/fn/f${i}/?q=${i}`, method: 'POST', headers: { 'x-test': `v${i}` } }, (res) => {
        sockets.add(res.socket);
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => { body += d; }).on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      // Even i: a body with content-length; odd i: a chunked body (no length given).
      if (i % 2 === 0) req.end('x'.repeat(10_000));
      else {
        req.write('a'.repeat(5_000));
        req.end('b'.repeat(70_000));
      }
    });
    assert.equal(answer.status, 200);
    assert.deepEqual(JSON.parse(answer.body), { target: `/fn/f${i}/?q=${i}`, x: `v${i}`, method: 'POST' });
  }
  assert.equal(sockets.size, 1, 'one connection for all five');
});

test('pipelined requests are answered in request order, whichever finishes first', async (t) => {
  const port = await startServer(t);
  const slow = 'GET /slow HTTP/1.1\r\nhost: a\r\nx-delay: 60\r\n\r\n';
  const fast = 'GET /fast HTTP/1.1\r\nhost: a\r\n\r\n';
  const last = 'GET /last HTTP/1.1\r\nhost: a\r\nx-delay: 20\r\nconnection: close\r\n\r\n';
  const { text, isClosedByServer } = await raw(port, [slow + fast + last]);
  assert.deepEqual(bodies(text).map((b) => (b as { target: string }).target), ['/slow', '/fast', '/last']);
  assert.ok(isClosedByServer, 'closed after the request that asked for it');
  assert.match(text, /connection: close\r\n\r\n\{"target":"\/last"/);
});

test('chunked bodies with extensions and trailers; a request split anywhere', async (t) => {
  const port = await startServer(t);
  const chunked = 'POST /c HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nx-trailer: 1\r\n\r\n';
  const next = 'GET /after HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n';
  const whole = chunked + next;
  const pieces = [whole.slice(0, 3), whole.slice(3, 40), whole.slice(40, 41), whole.slice(41, 90), whole.slice(90)];
  const { text } = await raw(port, pieces);
  assert.deepEqual(bodies(text).map((b) => (b as { target: string }).target), ['/c', '/after']);
});

test('bad input gets a coded 4xx/5xx and the connection is closed', async (t) => {
  const port = await startServer(t);
  const cases: [string, string][] = [
    ['NOT A REQUEST\r\n\r\n', '400'],
    ['GET / HTTP/1.1\r\nno colon here\r\n\r\n', '400'],
    ['GET / HTTP/1.1\r\ncontent-length: -1\r\n\r\n', '400'],
    ['POST / HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n', '400'],
    ['POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n', '501'],
    [`GET / HTTP/1.1\r\nx-big: ${'a'.repeat(MAX_HEAD_BYTES + 10)}\r\n\r\n`, '431'],
    [`GET / HTTP/1.1\r\nx-big: ${'a'.repeat(MAX_HEAD_BYTES + 10)}`, '431'],
  ];
  for (const [input, status] of cases) {
    const { text, isClosedByServer } = await raw(port, [input]);
    assert.deepEqual(statuses(text), [status], `${JSON.stringify(input.slice(0, 60))} → ${text.slice(0, 80)}`);
    assert.equal((bodies(text)[0] as { error: { code: string } }).error.code, 'ERR_INVALID_REQUEST');
    assert.ok(isClosedByServer, 'closed');
  }
  // An answer already due goes out before the error: a valid head answered, then its broken body.
  const broken = await raw(port, ['POST /ok HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n']);
  assert.deepEqual(statuses(broken.text), ['200', '400']);
  assert.ok(broken.isClosedByServer);
  const { text } = await raw(port, ['GET /ok HTTP/1.1\r\nhost: a\r\n\r\nBROKEN\r\n\r\n']);
  assert.deepEqual(statuses(text), ['200', '400']);
});

test('a client that goes away cancels the work of its unanswered requests', async (t) => {
  let cancelled = 0;
  const port = await startServer(t, (req, respond) => {
    const timer = setTimeout(() => respond({ status: 200, body: '{}' }), 10_000);
    return () => {
      cancelled++;
      clearTimeout(timer);
    };
  });
  const socket = connect(port, '127.0.0.1');
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  socket.write('GET /1 HTTP/1.1\r\nhost: a\r\n\r\nGET /2 HTTP/1.1\r\nhost: a\r\n\r\n');
  await new Promise((resolve) => setTimeout(resolve, 50));
  socket.destroy();
  const deadline = Date.now() + 2_000;
  while (cancelled < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(cancelled, 2);
});

/** A stand-in socket: records what is written, lets the test push bytes. */
class FakeSocket extends EventEmitter {
  written = '';
  isEnded = false;
  setNoDelay(): this { return this; }
  setEncoding(): this { return this; }
  write(data: string | Uint8Array): boolean {
    this.written += typeof data === 'string' ? data : Buffer.from(data).toString('latin1');
    return true;
  }
  end(): this {
    this.isEnded = true;
    return this;
  }
  destroy(): this { return this; }
}

test('property: any split of any sequence of requests gives the same answers', () => {
  const requestArb = fc.record({
    path: fc.stringMatching(/^\/[a-z0-9/?=]{0,20}$/),
    x: fc.stringMatching(/^[a-z0-9]{1,10}$/),
    body: fc.oneof(
      fc.constant({ kind: 'none' as const, text: '' }),
      fc.string({ maxLength: 200 }).map((text) => ({ kind: 'length' as const, text })),
      fc.array(fc.string({ minLength: 1, maxLength: 50 }), { maxLength: 4 }).map((chunks) => ({ kind: 'chunked' as const, text: chunks.join('\u0000'), chunks })),
    ),
  });
  fc.assert(fc.property(fc.array(requestArb, { minLength: 1, maxLength: 6 }), fc.array(fc.nat(), { maxLength: 12 }), (requests, cuts) => {
    const wire = requests.map((r) => {
      const head = `POST ${r.path} HTTP/1.1\r\nhost: h\r\nx-test: ${r.x}\r\n`;
      if (r.body.kind === 'none') return `${head}\r\n`;
      if (r.body.kind === 'length') {
        const latin1 = Buffer.from(r.body.text, 'utf8').toString('latin1');
        return `${head}content-length: ${latin1.length}\r\n\r\n${latin1}`;
      }
      const chunks = r.body.chunks.map((c) => Buffer.from(c, 'utf8').toString('latin1'));
      return `${head}transfer-encoding: chunked\r\n\r\n${chunks.map((c) => `${c.length.toString(16)}\r\n${c}\r\n`).join('')}0\r\n\r\n`;
    }).join('');
    const points = [...new Set(cuts.map((c) => c % (wire.length + 1)))].sort((a, b) => a - b);
    const socket = new FakeSocket();
    serveConnection(socket as unknown as ConnectionSocket, echo, new Set(['x-test']));
    let from = 0;
    for (const point of [...points, wire.length]) {
      if (point > from) socket.emit('data', wire.slice(from, point));
      from = Math.max(from, point);
    }
    const got = bodies(socket.written) as { target: string; x: string }[];
    assert.deepEqual(got.map((b) => [b.target, b.x]), requests.map((r) => [r.path, r.x]));
    assert.equal(statuses(socket.written).length, requests.length);
    assert.equal(socket.isEnded, false, 'keep-alive: nothing closed');
  }), { numRuns: 300 });
});
