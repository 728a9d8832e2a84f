import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { JsonRouter } from '../../src/transport/json-router.ts';

test('a known path with another method is 405 ERR_METHOD_NOT_ALLOWED with Allow, an unknown path 404; over HTTP and over the RPC dispatch', async (t) => {
  const router = new JsonRouter();
  router.on('GET', '/v1/things/:name', (ctx) => ({ name: ctx.params.name }));
  router.on('DELETE', '/v1/things/:name', () => ({ deleted: true }));
  router.on('POST', '/v1/things', () => ({ created: true }));
  const server = createServer(router.handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const ok = await fetch(`${base}/v1/things/a`);
  assert.deepEqual([ok.status, await ok.json()], [200, { name: 'a' }]);
  const wrong = await fetch(`${base}/v1/things/a`, { method: 'PUT', body: '{}' });
  assert.equal(wrong.status, 405);
  assert.equal(wrong.headers.get('allow'), 'GET, DELETE');
  const body = await wrong.json() as { error: { code: string; details: { allow: string[] } } };
  assert.equal(body.error.code, 'ERR_METHOD_NOT_ALLOWED');
  assert.deepEqual(body.error.details.allow, ['GET', 'DELETE']);
  const unknown = await fetch(`${base}/v1/nothing`);
  assert.equal(unknown.status, 404);
  assert.equal(((await unknown.json()) as { error: { code: string } }).error.code, 'ERR_NOT_FOUND');

  const rpc = await router.dispatch('GET', '/v1/things', {});
  assert.equal(rpc.status, 405);
  assert.equal((rpc.body as { error: { code: string } }).error.code, 'ERR_METHOD_NOT_ALLOWED');
  assert.equal((await router.dispatch('GET', '/v1/missing', {})).status, 404);
});
