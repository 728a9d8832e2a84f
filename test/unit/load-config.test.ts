import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { z } from 'zod';
import { loadConfig, toKebab, toUpperSnake } from '../../src/cli/load-config.ts';
import { BatonError } from '../../src/core/errors.ts';

const schema = z.strictObject({
  listenPort: z.number().int().min(0).max(65_535).default(9090),
  heartbeatIntervalMs: z.number().int().positive().default(1000),
  isVerbose: z.boolean().default(false),
  dataDir: z.string().default('/var/lib/baton'),
  placement: z.enum(['random', 'round-robin']).default('random'),
  limits: z.strictObject({ memoryMiB: z.number().default(128) }).default({ memoryMiB: 128 }),
});
const PREFIX = 'BATON_CONTROLPLANE_';

function tempFile(t: { after(fn: () => void): void }, name: string, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'baton-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

function configError(fn: () => unknown): BatonError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof BatonError, `expected a BatonError, got ${String(err)}`);
    assert.equal(err.code, 'ERR_INVALID_CONFIG');
    return err;
  }
  assert.fail('expected loadConfig to throw');
}

test('key names map to env vars and flags', () => {
  assert.equal(toUpperSnake('heartbeatIntervalMs'), 'HEARTBEAT_INTERVAL_MS');
  assert.equal(toUpperSnake('memoryMiB'), 'MEMORY_MIB');
  assert.equal(toUpperSnake('dataplaneURL'), 'DATAPLANE_URL');
  assert.equal(toKebab('heartbeatIntervalMs'), 'heartbeat-interval-ms');
  assert.equal(toKebab('cpuMilli'), 'cpu-milli');
});

test('defaults apply when no source sets a key, and the result is deep-frozen', () => {
  const config = loadConfig(schema, { env: {}, envPrefix: PREFIX, flags: {} });
  assert.equal(config.listenPort, 9090);
  assert.equal(config.limits.memoryMiB, 128);
  assert.ok(Object.isFrozen(config));
  assert.ok(Object.isFrozen(config.limits));
  assert.throws(() => { (config as { listenPort: number }).listenPort = 1; }, TypeError);
});

test('precedence is file < environment < flags', (t) => {
  const file = tempFile(t, 'cp.yaml', 'listenPort: 1000\nheartbeatIntervalMs: 2000\ndataDir: /from/file\n');
  const config = loadConfig(schema, {
    file,
    env: { BATON_CONTROLPLANE_HEARTBEAT_INTERVAL_MS: '3000', BATON_CONTROLPLANE_DATA_DIR: '/from/env', PATH: '/bin' },
    envPrefix: PREFIX,
    flags: { 'data-dir': '/from/flags', 'is-verbose': true, placement: undefined },
  });
  assert.equal(config.listenPort, 1000);
  assert.equal(config.heartbeatIntervalMs, 3000);
  assert.equal(config.dataDir, '/from/flags');
  assert.equal(config.isVerbose, true);
  assert.equal(config.placement, 'random');
});

test('JSON files are read by extension; nested objects come from JSON in env', (t) => {
  const file = tempFile(t, 'cp.json', JSON.stringify({ placement: 'round-robin', limits: { memoryMiB: 64 } }));
  const config = loadConfig(schema, { file, env: {}, envPrefix: PREFIX, flags: {} });
  assert.equal(config.placement, 'round-robin');
  assert.equal(config.limits.memoryMiB, 64);
  const fromEnv = loadConfig(schema, { file, env: { BATON_CONTROLPLANE_LIMITS: '{"memoryMiB":32}' }, envPrefix: PREFIX, flags: {} });
  assert.equal(fromEnv.limits.memoryMiB, 32);
});

test('strings from env and flags are coerced to numbers and booleans', () => {
  const config = loadConfig(schema, {
    env: { BATON_CONTROLPLANE_IS_VERBOSE: 'true' },
    envPrefix: PREFIX,
    flags: { 'listen-port': '8000', heartbeatIntervalMs: '250' },
  });
  assert.equal(config.listenPort, 8000);
  assert.equal(config.heartbeatIntervalMs, 250);
  assert.equal(config.isVerbose, true);
});

test('unknown keys are errors naming the key and the allowed ones', (t) => {
  const file = tempFile(t, 'cp.yaml', 'listenPort: 1\nlistenPrt: 2\n');
  let err = configError(() => loadConfig(schema, { file, env: {}, envPrefix: PREFIX, flags: {} }));
  assert.match(err.message, new RegExp(`unknown config key 'listenPrt' in .*cp\\.yaml \\(allowed: listenPort, heartbeatIntervalMs`));

  err = configError(() => loadConfig(schema, { env: { BATON_CONTROLPLANE_LISTEN_PRT: '1' }, envPrefix: PREFIX, flags: {} }));
  assert.match(err.message, /unknown config key 'BATON_CONTROLPLANE_LISTEN_PRT' in environment \(allowed: BATON_CONTROLPLANE_LISTEN_PORT/);

  err = configError(() => loadConfig(schema, { env: {}, envPrefix: PREFIX, flags: { 'listen-prt': '1' } }));
  assert.match(err.message, /unknown config key '--listen-prt' in flags \(allowed: --listen-port/);

  const nested = tempFile(t, 'nested.yml', 'limits:\n  memoryMib: 1\n');
  err = configError(() => loadConfig(schema, { file: nested, env: {}, envPrefix: PREFIX, flags: {} }));
  assert.match(err.message, /unknown config key 'limits\.memoryMib' .*\(allowed: limits\.memoryMiB\)/);
});

test('invalid values name the key, the rule and the bad value', (t) => {
  let err = configError(() => loadConfig(schema, { env: { BATON_CONTROLPLANE_LISTEN_PORT: 'abc' }, envPrefix: PREFIX, flags: {} }));
  assert.match(err.message, /'listenPort' from BATON_CONTROLPLANE_LISTEN_PORT: must be a finite number \(got 'abc'\)/);

  err = configError(() => loadConfig(schema, { env: {}, envPrefix: PREFIX, flags: { 'listen-port': 'Infinity' } }));
  assert.match(err.message, /'listenPort' from --listen-port: must be a finite number/);

  err = configError(() => loadConfig(schema, { env: {}, envPrefix: PREFIX, flags: { 'is-verbose': 'yes' } }));
  assert.match(err.message, /'isVerbose' from --is-verbose: must be 'true' or 'false' \(got 'yes'\)/);

  err = configError(() => loadConfig(schema, { env: {}, envPrefix: PREFIX, flags: { 'listen-port': '70000' } }));
  assert.match(err.message, /'listenPort' from --listen-port: .*65535.* \(got 70000\)/);

  const file = tempFile(t, 'cp.yaml', 'placement: spread\n');
  err = configError(() => loadConfig(schema, { file, env: {}, envPrefix: PREFIX, flags: {} }));
  assert.match(err.message, /'placement' from .*cp\.yaml: .*random.* \(got 'spread'\)/);
});

test('unreadable or malformed files are config errors', (t) => {
  configError(() => loadConfig(schema, { file: '/nonexistent/baton.yaml', env: {}, envPrefix: PREFIX, flags: {} }));
  const list = tempFile(t, 'list.yaml', '- a\n- b\n');
  const err = configError(() => loadConfig(schema, { file: list, env: {}, envPrefix: PREFIX, flags: {} }));
  assert.match(err.message, /must hold a mapping/);
  const toml = tempFile(t, 'cp.toml', 'a = 1');
  assert.match(configError(() => loadConfig(schema, { file: toml, env: {}, envPrefix: PREFIX, flags: {} })).message, /unsupported extension/);
});
