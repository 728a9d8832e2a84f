import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { certsInit, subjectAltNames } from '../../src/core/certs.ts';
import { BatonError } from '../../src/core/errors.ts';
import { readTls, requireJoinSecretWithTls } from '../../src/transport/tls.ts';

const isConfigError = (key: string) => (err: unknown): boolean => err instanceof BatonError && err.code === 'ERR_INVALID_CONFIG' && (err.details as { key?: string }).key === key;

test('TLS config: all three files or none; an unreadable file or TLS without a join secret is ERR_INVALID_CONFIG naming the key', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'baton-tls-config-'));
  try {
    const files = await certsInit(dir, { hosts: ['127.0.0.1'], days: 1 });
    assert.equal(readTls({}), undefined);
    const tls = readTls({ tlsCertFile: files.roles.worker.cert, tlsKeyFile: files.roles.worker.key, tlsCaFile: files.caCert });
    assert.match(tls?.cert.toString() ?? '', /BEGIN CERTIFICATE/);
    assert.throws(() => readTls({ tlsCertFile: files.roles.worker.cert, tlsKeyFile: files.roles.worker.key }), isConfigError('tlsCaFile'));
    assert.throws(() => readTls({ tlsCertFile: files.roles.worker.cert, tlsKeyFile: join(dir, 'missing.key'), tlsCaFile: files.caCert }), isConfigError('tlsKeyFile'));
    assert.throws(() => requireJoinSecretWithTls(tls, undefined), isConfigError('joinSecret'));
    assert.doesNotThrow(() => requireJoinSecretWithTls(tls, 'a-join-secret-of-some-length'));
    assert.doesNotThrow(() => requireJoinSecretWithTls(undefined, undefined));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('certificate hosts: addresses become IP SANs, names DNS SANs; a malformed one, none at all or bad days is ERR_INVALID_REQUEST', async () => {
  assert.equal(subjectAltNames(['127.0.0.1', '::1', 'localhost', 'node-1.example']), 'IP:127.0.0.1,IP:::1,DNS:localhost,DNS:node-1.example');
  for (const bad of [[], ['exa mple'], ['-x'], ['a,b']]) {
    assert.throws(() => subjectAltNames(bad), (err: unknown) => err instanceof BatonError && err.code === 'ERR_INVALID_REQUEST', JSON.stringify(bad));
  }
  await assert.rejects(certsInit(join(tmpdir(), 'baton-never-made'), { hosts: ['127.0.0.1'], days: 0 }), (err: unknown) => err instanceof BatonError && err.code === 'ERR_INVALID_REQUEST');
});
