import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino, type Logger } from 'pino';
import { controlPlaneConfigSchema } from '../../src/controlplane/config.ts';
import { startControlPlane } from '../../src/controlplane/main.ts';
import { parseDataplaneConfig } from '../../src/dataplane/config.ts';
import { startDataplane } from '../../src/dataplane/main.ts';
import { parseWorkerConfig } from '../../src/worker/config.ts';
import { startWorker } from '../../src/worker/main.ts';
import { ROOT } from '../kit/cluster.ts';
import { runCli } from '../kit/run-cli.ts';
import { tempDirSync } from '../kit/temp-dir.ts';
import { waitFor } from '../kit/wait-for.ts';

/**
 * `secretEnv` with the real planes and the real CLI: the sandbox gets the values, nothing else
 * shows them — not the API's answers, not `baton deploy` or `baton describe`, not any daemon's log
 * (at debug level), not the data plane's routing view.
 */

const SECRET = 'hunter2-s3cr3t-value-9f8e7d';
const ROTATED = 'rotated-s3cr3t-value-1a2b3c';
const JOIN_SECRET = 'a-join-secret-for-the-test-0123456789';

function capturedLogger(): { logger: Logger; text: () => string } {
  const raw: string[] = [];
  const stream = new Writable({ write(chunk: Buffer, _enc, done) { raw.push(chunk.toString()); done(); } });
  return { logger: pino({ level: 'debug' }, stream), text: () => raw.join('') };
}

test('secretEnv reaches the sandbox and nothing else: not the API, the CLI or any log; an update without it keeps it', async (t) => {
  const logs = { cp: capturedLogger(), dp: capturedLogger(), worker: capturedLogger() };
  const controlPlane = await startControlPlane(controlPlaneConfigSchema.parse({
    port: 0, dataDir: tempDirSync('baton-secret-cp-'), heartbeatIntervalMs: 100, autoscalerBucketMs: 100, autoscalerTickMs: 200, joinSecret: JOIN_SECRET, logLevel: 'debug', authMode: 'none',
  }), { logger: logs.cp.logger });
  t.after(() => controlPlane.close());
  const dataplane = await startDataplane(parseDataplaneConfig({
    port: 0, internalPort: 0, dataDir: tempDirSync('baton-secret-dp-'), dataplaneId: 'dp', controlPlaneUrl: controlPlane.url,
    heartbeatIntervalMs: 100, demandReportIntervalMs: 100, joinSecret: JOIN_SECRET, logLevel: 'debug',
  }), { logger: logs.dp.logger });
  t.after(() => dataplane.close());
  const workerDir = await mkdtemp(path.join(tmpdir(), 'baton-secret-worker-'));
  await chmod(workerDir, 0o711);
  t.after(() => rm(workerDir, { recursive: true, force: true }));
  const worker = await startWorker(parseWorkerConfig({
    port: 0, dataDir: workerDir, controlPlaneUrl: controlPlane.url, heartbeatIntervalMs: 100, joinSecret: JOIN_SECRET, logLevel: 'debug',
  }), { logger: logs.worker.logger });
  t.after(() => worker.close());
  await waitFor(async () => ((await (await fetch(`${controlPlane.url}/v1/workers`)).json()) as { workers: unknown[] }).workers.length === 1, { message: 'the worker registered' });

  const manifest = path.join(workerDir, 'baton.yaml');
  await writeFile(manifest, [
    'name: secretive', 'handler: index.handler', `dir: ${path.join(ROOT, 'test/fixtures/env-dump')}`,
    'env:', '  GREETING: hi', 'secretEnv:', `  DB_PASSWORD: ${SECRET}`, '',
  ].join('\n'));
  const env = { BATON_URL: controlPlane.url };
  const deployed = await runCli(['deploy', '-f', manifest], { env });
  assert.equal(deployed.code, 0, deployed.stderr);
  const deployedJson = await runCli(['deploy', '-f', manifest, '--json'], { env });
  assert.equal(deployedJson.code, 0, deployedJson.stderr);
  assert.deepEqual((JSON.parse(deployedJson.stdout) as { function: { spec: { secretEnv: unknown } } }).function.spec.secretEnv, { DB_PASSWORD: '(secret)' });

  const invokeEnv = async (): Promise<Record<string, string>> => waitFor(async () => {
    const res = await fetch(`${dataplane.proxyUrl}/fn/secretive/`);
    return res.status === 200 ? ((await res.json()) as { env: Record<string, string> }).env : undefined;
  }, { timeoutMs: 20_000, message: 'an invocation of secretive' });
  const first = await invokeEnv();
  assert.equal(first['DB_PASSWORD'], SECRET, 'the sandbox has the secret');
  assert.equal(first['GREETING'], 'hi');
  const { deriveJoinKey } = await import('../../src/transport/internal-auth.ts');
  for (const credential of [JOIN_SECRET, deriveJoinKey(JOIN_SECRET)]) assert.ok(!JSON.stringify(first).includes(credential), 'the sandbox has no cluster credential');

  // The API shows the names only.
  const one = await (await fetch(`${controlPlane.url}/v1/functions/secretive`)).json() as { spec: { secretEnv: Record<string, string>; env: Record<string, string> }; generation: number };
  assert.deepEqual(one.spec.secretEnv, { DB_PASSWORD: '(secret)' });
  const listed = await (await fetch(`${controlPlane.url}/v1/functions`)).text();
  assert.ok(listed.includes('DB_PASSWORD') && !listed.includes(SECRET));
  const described = await runCli(['describe', 'secretive'], { env });
  assert.equal(described.code, 0, described.stderr);
  assert.match(described.stdout, /DB_PASSWORD/);
  const describedJson = await runCli(['describe', 'secretive', '--json'], { env });

  // An update without secretEnv keeps it; one sending back what GET answered keeps it too.
  const { generation } = one;
  const updated = await fetch(`${controlPlane.url}/v1/functions/secretive`, {
    method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...one.spec, env: { GREETING: 'hello again' }, secretEnv: undefined }),
  });
  assert.equal(updated.status, 200);
  const updatedBody = await updated.text();
  assert.ok(!updatedBody.includes(SECRET));
  const roundTrip = await fetch(`${controlPlane.url}/v1/functions/secretive`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...one.spec, env: { GREETING: 'round trip' } }) });
  assert.equal(roundTrip.status, 200);
  const kept = await waitFor(async () => {
    const e = await invokeEnv();
    return e['GREETING'] === 'round trip' ? e : undefined;
  }, { timeoutMs: 20_000, message: 'the new generation serving' });
  assert.equal(kept['DB_PASSWORD'], SECRET, 'an update that does not change the secret keeps it');
  // A placeholder for a secret the function does not have is refused, and changes nothing.
  const bad = await fetch(`${controlPlane.url}/v1/functions/secretive`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...one.spec, secretEnv: { API_KEY: '(secret)' } }) });
  assert.equal(bad.status, 400);
  assert.equal(((await bad.json()) as { error: { code: string } }).error.code, 'ERR_INVALID_SPEC');
  assert.equal(((await (await fetch(`${controlPlane.url}/v1/functions/secretive`)).json()) as { generation: number }).generation, generation + 2);
  // A new value replaces it.
  const rotated = await fetch(`${controlPlane.url}/v1/functions/secretive`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...one.spec, env: { GREETING: 'rotated' }, secretEnv: { DB_PASSWORD: ROTATED } }) });
  assert.equal(rotated.status, 200);
  const after = await waitFor(async () => {
    const e = await invokeEnv();
    return e['GREETING'] === 'rotated' ? e : undefined;
  }, { timeoutMs: 20_000, message: 'the rotated generation serving' });
  assert.equal(after['DB_PASSWORD'], ROTATED);

  const routingView = await (await fetch(`${dataplane.url}/internal/v1/routing`, { headers: { authorization: `Bearer ${deriveJoinKey(JOIN_SECRET)}` } })).text();
  assert.ok(routingView.includes('secretive'));
  for (const [what, text] of [
    ['baton deploy', deployed.stdout + deployed.stderr], ['baton deploy --json', deployedJson.stdout], ['baton describe', described.stdout + described.stderr],
    ['baton describe --json', describedJson.stdout], ['GET /v1/functions', listed], ['PUT answer', updatedBody], ['the data plane\'s routing view', routingView],
    ['the control plane\'s log', logs.cp.text()], ['the data plane\'s log', logs.dp.text()], ['the worker\'s log', logs.worker.text()],
  ] as const) {
    assert.ok(text.length > 0, `${what} is not empty`);
    for (const secret of [SECRET, ROTATED]) assert.ok(!text.includes(secret), `${what} shows a secret`);
  }
  assert.match(logs.cp.text(), /function updated/, 'the control plane logged the updates');
});
