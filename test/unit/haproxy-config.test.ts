import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderHaproxyConfig } from '../../src/cli/haproxy-config.ts';

test('haproxy-config with TLS: HTTPS on the bind, HTTPS with the CA and the name checked towards each data plane', () => {
  const config = renderHaproxyConfig({
    bind: '127.0.0.1:8000', dataplanes: ['127.0.0.1:8080', '127.0.0.1:8090'],
    tls: { certFile: '/data/certs/haproxy.pem', caFile: '/data/certs/ca.crt', verifyHost: 'localhost' },
  });
  assert.match(config, /^ {2}bind 127\.0\.0\.1:8000 ssl crt \/data\/certs\/haproxy\.pem alpn http\/1\.1$/m);
  for (const [i, dp] of ['127.0.0.1:8080', '127.0.0.1:8090'].entries()) {
    assert.ok(config.includes(`  server dp${i + 1} ${dp} check ssl verify required ca-file /data/certs/ca.crt verifyhost localhost alpn http/1.1\n`), config);
  }
  const plain = renderHaproxyConfig({ bind: '127.0.0.1:8000', dataplanes: ['127.0.0.1:8080'] });
  assert.ok(!plain.includes('ssl'), 'no TLS unless asked');
});

test('haproxy-config with TLS refuses a path or host HAProxy would misread', () => {
  for (const tls of [
    { certFile: '/data/my certs/haproxy.pem', caFile: '/ca.crt', verifyHost: 'localhost' },
    { certFile: '/haproxy.pem', caFile: '/ca.crt\n  server evil 10.0.0.1:80', verifyHost: 'localhost' },
    { certFile: '/haproxy.pem', caFile: '/ca.crt', verifyHost: 'local host' },
  ]) {
    assert.throws(() => renderHaproxyConfig({ bind: '127.0.0.1:8000', dataplanes: ['127.0.0.1:8080'], tls }), (err: unknown) => (err as { code?: string }).code === 'ERR_INVALID_REQUEST', JSON.stringify(tls));
  }
});
