import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BatonError } from '../../src/core/errors.ts';
import { parseDataplaneConfig } from '../../src/dataplane/config.ts';
import { DataplaneMetrics } from '../../src/dataplane/metrics.ts';
import { createRegistry } from '../../src/observability/metrics.ts';
import { responseHeaders, scanRequestHeaders } from '../../src/dataplane/forward-headers.ts';
import { resolveRoute } from '../../src/dataplane/route.ts';

const known = new Map([['echo', 'ECHO'], ['a-b', 'AB']]);
const lookup = (name: string) => known.get(name);

test('resolveRoute: by Host, by first label, then by /fn/NAME prefix', () => {
  const cases: [string, string, { fn: string; path: string } | undefined][] = [
    ['echo', '/x?y=1', { fn: 'ECHO', path: '/x?y=1' }],
    ['echo:8080', '/', { fn: 'ECHO', path: '/' }],
    ['ECHO.example.com:80', '/p', { fn: 'ECHO', path: '/p' }],
    ['127.0.0.1:8080', '/fn/echo/a/b?c=d', { fn: 'ECHO', path: '/a/b?c=d' }],
    ['127.0.0.1:8080', '/fn/echo?c=d', { fn: 'ECHO', path: '/?c=d' }],
    ['127.0.0.1:8080', '/fn/echo', { fn: 'ECHO', path: '/' }],
    ['127.0.0.1:8080', '/fn/echo/', { fn: 'ECHO', path: '/' }],
    ['[::1]:8080', '/fn/a-b/z', { fn: 'AB', path: '/z' }],
    ['', '/fn/a-b', { fn: 'AB', path: '/' }],
    ['localhost', '/fn/echoes/x', undefined],
    ['localhost', '/fn/', undefined],
    ['localhost', '/echo', undefined],
  ];
  for (const [host, url, expected] of cases) assert.deepEqual(resolveRoute(host, url, lookup), expected, `${host} ${url}`);
});

test('scanRequestHeaders drops hop-by-hop headers, keeps Host, adds x-forwarded-*', () => {
  const scanned = scanRequestHeaders([
    'Host', 'echo.local', 'Connection', 'keep-alive, X-Secret', 'Keep-Alive', 'timeout=5', 'X-Secret', 's',
    'Transfer-Encoding', 'chunked', 'Upgrade', 'h2c', 'Te', 'trailers', 'Proxy-Authorization', 'x',
    'X-Forwarded-For', '10.0.0.1', 'Content-Type', 'text/plain', 'Expect', '100-continue',
  ], '127.0.0.1');
  assert.equal(scanned.host, 'echo.local');
  assert.equal(scanned.hasBody, true);
  assert.deepEqual(scanned.headers, [
    'Host', 'echo.local', 'Content-Type', 'text/plain',
    'x-forwarded-for', '10.0.0.1, 127.0.0.1', 'x-forwarded-host', 'echo.local', 'x-forwarded-proto', 'http',
  ]);
  assert.equal(scanRequestHeaders(['content-length', '0'], undefined).hasBody, false);
  assert.equal(scanRequestHeaders(['content-length', '12'], undefined).hasBody, true);
  assert.equal(scanRequestHeaders([], undefined).hasBody, false);
});

test('responseHeaders drops hop-by-hop headers and those named in Connection, keeps case and repeats', () => {
  const raw = ['Connection', 'keep-alive, X-Hop', 'Keep-Alive', 'timeout=5', 'x-hop', '1', 'Transfer-Encoding', 'chunked',
    'Content-Type', 'a/b', 'Set-Cookie', 'a=1', 'set-cookie', 'b=2', 'Proxy-Authenticate', 'Basic', 'TE', 'trailers'].map((s) => Buffer.from(s, 'latin1'));
  assert.deepEqual(responseHeaders(raw), ['Content-Type', 'a/b', 'Set-Cookie', 'a=1', 'set-cookie', 'b=2']);
  assert.deepEqual(responseHeaders([]), []);
});

test('config: defaults, derived keys, unknown keys rejected with ERR_INVALID_CONFIG', () => {
  const config = parseDataplaneConfig({ port: 0, dataplaneId: 'dp-1' });
  assert.equal(config.host, '127.0.0.1');
  assert.equal(config.advertiseHost, '127.0.0.1');
  assert.equal(config.internalPort, 8081);
  assert.equal(config.queueCapacity, 1000);
  assert.equal(config.loadBalancingPolicy, 'least-inflight');
  assert.ok(Object.isFrozen(config));
  assert.match(parseDataplaneConfig({}).dataplaneId, /-8080$/);
  assert.throws(() => parseDataplaneConfig({ queueCapcity: 1 }), (err: unknown) => err instanceof BatonError && err.code === 'ERR_INVALID_CONFIG' && err.message.includes('queueCapcity'));
  assert.throws(() => parseDataplaneConfig({ port: -1 }), (err: unknown) => err instanceof BatonError && err.message.includes('port'));
});

test('invocation counts are added to the counter at each scrape, cumulatively; a removed function drops its series', async () => {
  const registry = createRegistry('dataplane');
  const metrics = new DataplaneMetrics(registry, () => []);
  const hello = metrics.forFunction('hello');
  hello.countInvocation('2xx');
  hello.countInvocation('2xx');
  hello.countInvocation('ERR_QUEUE_FULL');
  assert.match(await registry.metrics(), /baton_dataplane_invocations_total\{function="hello",code="2xx"\} 2/);
  hello.countInvocation('2xx');
  const text = await registry.metrics();
  assert.match(text, /baton_dataplane_invocations_total\{function="hello",code="2xx"\} 3/);
  assert.match(text, /baton_dataplane_invocations_total\{function="hello",code="ERR_QUEUE_FULL"\} 1/);
  hello.remove();
  assert.doesNotMatch(await registry.metrics(), /function="hello"/);
});
