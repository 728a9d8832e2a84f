import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { Readable } from 'node:stream';
import { Client } from 'undici';
import { createResponder, MAX_WAITING_REQUESTS, type ResponderHandler } from '../../src/worker/emulated/http-responder.ts';

/** Answers `{"url", "wait", "header"}` after `x-wait` ms; records every request it saw. */
async function start(t: TestContext, options: { idleTimeoutMs?: number; maxHeadBytes?: number } = {}) {
  const seen: { method: string; url: string; answeredBefore: number }[] = [];
  let answered = 0;
  const handler: ResponderHandler = (req, reply) => {
    seen.push({ method: req.method, url: req.url, answeredBefore: answered });
    const wait = Number(req.header('x-wait') ?? 0);
    const send = (): void => {
      answered++;
      reply.send(200, JSON.stringify({ url: req.url, header: req.header('x-echo') ?? null }));
    };
    if (wait > 0) setTimeout(send, wait);
    else send();
  };
  const responder = createResponder(handler, options);
  const port = await responder.listen(0, '127.0.0.1');
  t.after(() => responder.close());
  return { port, seen };
}

/** Writes raw bytes (in the given pieces, each once the one before has been written out) and collects everything until the server closes or `until` matches. */
function raw(port: number, pieces: string[], until?: (text: string) => boolean): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket: Socket = connect(port, '127.0.0.1');
    let text = '';
    let done = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      socket.destroy();
      resolve({ text, closed });
    };
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      text += chunk;
      if (until?.(text) === true) finish(false);
    });
    socket.on('end', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('error', reject);
    socket.on('connect', async () => {
      for (const piece of pieces) await new Promise<void>((written) => socket.write(piece, 'latin1', () => written()));
    });
  });
}

const count = (text: string, what: string): number => text.split(what).length - 1;

describe('emulated sandbox responder (HTTP/1.1 on a real socket)', () => {
  it('serves an ordinary HTTP client, keep-alive: many requests on one connection, bodies of both framings', async (t) => {
    const { port, seen } = await start(t);
    const client = new Client(`http://127.0.0.1:${port}`, { pipelining: 1 });
    t.after(() => client.close());
    for (let i = 0; i < 5; i++) {
      const res = await client.request({ path: `/fn/a/${i}`, method: 'POST', body: 'x'.repeat(i * 1000), headers: { 'x-echo': `v${i}` } });
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers['content-type'], 'application/json');
      assert.deepEqual(await res.body.json(), { url: `/fn/a/${i}`, header: `v${i}` });
    }
    // A streamed body goes chunked.
    const res = await client.request({ path: '/chunked', method: 'POST', body: Readable.from(['abc', 'def']) });
    assert.deepEqual(await res.body.json(), { url: '/chunked', header: null });
    assert.deepEqual(seen.map((s) => s.url), ['/fn/a/0', '/fn/a/1', '/fn/a/2', '/fn/a/3', '/fn/a/4', '/chunked']);
  });

  it('answers pipelined requests in request order, whichever is ready first', async (t) => {
    const { port } = await start(t);
    const head = (url: string, wait: number): string => `GET ${url} HTTP/1.1\r\nhost: x\r\nx-wait: ${wait}\r\n\r\n`;
    const { text } = await raw(port, [head('/slow', 60) + head('/fast', 0) + head('/mid', 20)], (s) => count(s, 'HTTP/1.1 200') === 3 && s.endsWith('}'));
    const order = [...text.matchAll(/"url":"([^"]+)"/g)].map((m) => m[1]);
    assert.deepEqual(order, ['/slow', '/fast', '/mid']);
  });

  it('reads bodies split across packets (Content-Length and chunked with extensions and trailers) and the request after them', async (t) => {
    const { port, seen } = await start(t);
    const pieces = [
      'POST /one HTTP/1.1\r\nContent-Length: 10\r\n\r\n01234', '56789',
      'POST /two HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nabcd\r', '\n0\r\nx-trailer: 1\r\n\r\n',
      'GET /three HTTP/1.1\r\n\r\n',
    ];
    const { text } = await raw(port, pieces, (s) => count(s, 'HTTP/1.1 200') === 3 && s.endsWith('}'));
    assert.equal(count(text, 'HTTP/1.1 200 OK'), 3);
    assert.deepEqual(seen.map((s) => `${s.method} ${s.url}`), ['POST /one', 'POST /two', 'GET /three']);
  });

  it('closes after a request that asks to, and HTTP/1.0 unless it asks for keep-alive', async (t) => {
    const { port } = await start(t);
    const closing = await raw(port, ['GET /a HTTP/1.1\r\nConnection: close\r\n\r\n']);
    assert.ok(closing.closed);
    assert.match(closing.text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(closing.text, /\r\nconnection: close\r\n/);
    const old = await raw(port, ['GET /b HTTP/1.0\r\n\r\n']);
    assert.ok(old.closed);
    const oldKept = await raw(port, ['GET /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n'], (s) => s.endsWith('}'));
    assert.equal(oldKept.closed, false);
    assert.match(oldKept.text, /\r\nkeep-alive: timeout=5\r\n/);
  });

  it('refuses malformed requests with a coded JSON error and closes the connection', async (t) => {
    const { port, seen } = await start(t, { maxHeadBytes: 256 });
    const cases: [string, number][] = [
      ['BAD\r\n\r\n', 400],
      ['GET / HTTP/2.0\r\n\r\n', 400],
      ['GET / HTTP/1.1\r\nno-colon\r\n\r\n', 400],
      ['GET / HTTP/1.1\r\nname : value\r\n\r\n', 400],
      ['GET / HTTP/1.1\r\nx: 1\r\n folded\r\n\r\n', 400],
      ['POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n', 400],
      ['POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n', 400],
      ['POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n', 501],
      ['POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n', 400],
      ['POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', 400],
      [`GET / HTTP/1.1\r\nx: ${'a'.repeat(300)}\r\n\r\n`, 431],
      [`GET / HTTP/1.1\r\nx: ${'a'.repeat(300)}`, 431],
    ];
    for (const [request, status] of cases) {
      const { text, closed } = await raw(port, [request]);
      assert.ok(closed, `closed after ${JSON.stringify(request.slice(0, 40))}`);
      // The refusal is the last answer (a chunked request with a bad size line was answered before).
      const last = text.slice(text.lastIndexOf('HTTP/1.1 '));
      assert.match(last, new RegExp(`^HTTP/1\\.1 ${status} `), JSON.stringify(request.slice(0, 40)));
      const body = JSON.parse(last.slice(last.indexOf('\r\n\r\n') + 4)) as { error: { code: string } };
      assert.equal(body.error.code, 'ERR_INVALID_REQUEST');
    }
    // The chunked body with a bad size line was a valid request up to it.
    assert.equal(seen.length, 1);
  });

  it('answers the requests before a malformed one first, and reads nothing after it', async (t) => {
    const { port, seen } = await start(t);
    const { text, closed } = await raw(port, ['GET /ok HTTP/1.1\r\nx-wait: 30\r\n\r\nBROKEN\r\n\r\nGET /never HTTP/1.1\r\n\r\n']);
    assert.ok(closed);
    assert.match(text, /^HTTP\/1\.1 200 OK[\s\S]*HTTP\/1\.1 400 Bad Request/);
    assert.deepEqual(seen.map((s) => s.url), ['/ok']);
  });

  it('a client that half-closes after its request still gets the answer; an idle connection is closed after the timeout', async (t) => {
    const { port } = await start(t, { idleTimeoutMs: 100 });
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => socket.end('GET /late HTTP/1.1\r\nx-wait: 30\r\n\r\n'));
      let text = '';
      socket.setEncoding('latin1').on('data', (c: string) => { text += c; }).on('close', () => resolve(text)).on('error', reject);
    });
    assert.match(answer, /^HTTP\/1\.1 200 OK[\s\S]*"url":"\/late"/);
    const startedAt = Date.now();
    const idle = await raw(port, ['GET /x HTTP/1.1\r\n\r\n']);
    assert.ok(idle.closed);
    assert.ok(Date.now() - startedAt >= 90, 'closed by the idle timeout, not before');
  });

  it('tells the handler when the connection is reset before its answer', async (t) => {
    let closedBeforeAnswer = false;
    let received: () => void = () => undefined;
    const isReceived = new Promise<void>((resolve) => { received = resolve; });
    const isClosed = new Promise<void>((resolve) => {
      const responder = createResponder((_req, reply) => {
        reply.onClose(() => {
          closedBeforeAnswer = reply.isClosed;
          resolve();
        });
        received();
      });
      t.after(() => responder.close());
      void responder.listen(0, '127.0.0.1').then((port) => {
        const socket = connect(port, '127.0.0.1', () => socket.write('GET / HTTP/1.1\r\n\r\n'));
        void isReceived.then(() => socket.resetAndDestroy());
      });
    });
    await isClosed;
    assert.equal(closedBeforeAnswer, true);
  });
});

describe('emulated sandbox responder under a flood of pipelined requests', () => {
  it(`reads at most ${MAX_WAITING_REQUESTS} requests ahead of their answers, then the rest as answers leave, in order`, async (t) => {
    const { port, seen } = await start(t);
    const total = MAX_WAITING_REQUESTS * 3;
    const heads = Array.from({ length: total }, (_, i) => `GET /r${i} HTTP/1.1\r\nx-wait: 40\r\n\r\n`).join('');
    const socket = connect(port, '127.0.0.1', () => socket.write(heads, 'latin1'));
    t.after(() => socket.destroy());
    let text = '';
    const done = new Promise<void>((resolve) => {
      socket.setEncoding('latin1').on('data', (c: string) => {
        text += c;
        if (count(text, 'HTTP/1.1 200') === total && text.endsWith('}')) resolve();
      });
    });
    await done;
    // No request was read while MAX_WAITING_REQUESTS before it were still unanswered.
    const ahead = seen.map((r, i) => i - r.answeredBefore);
    assert.ok(Math.max(...ahead) < MAX_WAITING_REQUESTS, `read up to ${Math.max(...ahead) + 1} requests ahead of their answers`);
    assert.ok(seen.slice(0, MAX_WAITING_REQUESTS).every((r) => r.answeredBefore === 0), 'the first ones were read before any answer');
    const order = [...text.matchAll(/"url":"\/r(\d+)"/g)].map((m) => Number(m[1]));
    assert.deepEqual(order, Array.from({ length: total }, (_, i) => i));
  });
});
