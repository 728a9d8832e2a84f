import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { packDirectory } from '../../src/core/archive.ts';
import { FakeControlPlane, startEchoDataplane } from '../kit/fake-controlplane-api.ts';
import { runCli } from '../kit/run-cli.ts';

async function setup(t: TestContext) {
  const cp = new FakeControlPlane();
  await cp.listen();
  t.after(() => cp.close());
  const dp = await startEchoDataplane();
  t.after(() => dp.close());
  const root = mkdtempSync(join(tmpdir(), 'baton-cli-it-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const fnDir = join(root, 'hello');
  mkdirSync(fnDir);
  writeFileSync(join(fnDir, 'index.js'), 'export async function handler(event) { return { statusCode: 200, body: "hello" }; }\n');
  writeFileSync(join(fnDir, 'baton.yaml'), 'name: hello\nhandler: index.handler\nconcurrency: 2\nscaling:\n  maxScale: 3\n');
  // Only the environment the tests choose: BATON_URL points at the fake control plane.
  const env = { BATON_URL: cp.url, BATON_DATAPLANE_URL: dp.url };
  return { cp, dp, root, fnDir, env };
}

test('deploy uploads the artifact, creates, then updates on the second deploy', async (t) => {
  const { cp, fnDir, env } = await setup(t);
  const first = await runCli(['deploy', '-f', join(fnDir, 'baton.yaml')], { env });
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /^created function hello \(generation 1\)/);
  assert.deepEqual(cp.requests.map((r) => `${r.method} ${r.path}`), ['PUT /v1/artifacts', 'POST /v1/functions']);
  assert.equal(cp.requests[0]?.contentType, 'application/gzip');

  const expected = `sha256:${createHash('sha256').update(await packDirectory(fnDir)).digest('hex')}`;
  const record = cp.functions.get('hello');
  assert.equal(record?.spec.artifact, expected, 'the function points at the uploaded artifact');
  assert.equal(record?.spec.concurrency, 2);
  assert.equal(record?.spec.scaling.maxScale, 3);

  cp.requests.length = 0;
  writeFileSync(join(fnDir, 'index.js'), 'export async function handler() { return "v2"; }\n');
  const second = await runCli(['deploy', 'hello', '--dir', fnDir, '--handler', 'index.handler', '--min-scale', '1', '--json'], { env });
  assert.equal(second.code, 0, second.stderr);
  assert.deepEqual(cp.requests.map((r) => `${r.method} ${r.path}`), ['PUT /v1/artifacts', 'POST /v1/functions', 'PUT /v1/functions/hello']);
  const out = JSON.parse(second.stdout) as { action: string; function: { generation: number; spec: { artifact: string } }; artifact: { digest: string } };
  assert.equal(out.action, 'updated');
  assert.equal(out.function.generation, 2);
  assert.notEqual(out.artifact.digest, expected, 'new code, new digest');
  assert.equal(out.function.spec.artifact, out.artifact.digest);
  assert.equal(cp.functions.get('hello')?.spec.scaling.minScale, 1);
});

test('deploy picks up ./baton.yaml from the current folder', async (t) => {
  const { cp, fnDir } = await setup(t);
  const result = await runCli(['deploy', '--command', 'node server.js', '--url', cp.url], { env: {}, cwd: fnDir });
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(cp.functions.get('hello')?.spec.command, ['node', 'server.js']);
  assert.equal(cp.functions.get('hello')?.spec.handler, undefined, '--command replaces the manifest handler');
});

test('list, describe and delete, as tables and as JSON', async (t) => {
  const { cp, fnDir, env } = await setup(t);
  assert.equal((await runCli(['deploy', '-f', join(fnDir, 'baton.yaml')], { env })).code, 0);
  cp.status.set('hello', { desired: 2, ready: 1, starting: 1, draining: 0 });
  cp.sandboxes.set('hello', [
    { sandboxId: 'sb-1', workerId: 'w-1', generation: 1, state: 'ready', address: '127.0.0.1:40001', createdAt: '2025-01-01T00:05:00.000Z',
      readyAt: '2025-01-01T00:05:01.000Z', breakdown: { fetchMs: 12.5, startMs: 40, readyMs: 30, totalMs: 82.5, controlPlaneMs: 90 } },
    { sandboxId: 'sb-2', workerId: 'w-2', generation: 1, state: 'starting', createdAt: '2025-01-01T00:09:00.000Z' },
  ]);
  cp.coldStarts.set('hello', [
    { sandboxId: 'sb-0', workerId: 'w-9', at: '2025-01-01T00:01:00.000Z', breakdown: { fetchMs: 100, startMs: 41, readyMs: 31, totalMs: 172, controlPlaneMs: 180 } },
    { sandboxId: 'sb-1', workerId: 'w-1', at: '2025-01-01T00:05:01.000Z', breakdown: { fetchMs: 12.5, startMs: 40, readyMs: 30, totalMs: 82.5, controlPlaneMs: 90 } },
  ]);

  const list = await runCli(['list'], { env });
  assert.equal(list.code, 0, list.stderr);
  const [header, row] = list.stdout.trimEnd().split('\n');
  assert.match(header ?? '', /^NAME\s+RUNTIME\s+GEN\s+CONCURRENCY\s+READY\/DESIRED$/);
  assert.match(row ?? '', /^hello\s+process\s+1\s+2\s+1\/2$/);
  const listJson = JSON.parse((await runCli(['list', '--json'], { env })).stdout) as { functions: { spec: { name: string }; status: { ready: number } }[] };
  assert.equal(listJson.functions[0]?.spec.name, 'hello');
  assert.equal(listJson.functions[0]?.status.ready, 1);

  const describe = await runCli(['describe', 'hello'], { env });
  assert.equal(describe.code, 0, describe.stderr);
  assert.match(describe.stdout, /sandboxes: {3}1 ready of 2 desired, 1 starting, 0 draining/);
  assert.match(describe.stdout, /handler: index\.handler/);
  assert.match(describe.stdout, /sb-1\s+w-1\s+1\s+ready\s+127\.0\.0\.1:40001\s+5m/);
  assert.match(describe.stdout, /sb-2\s+w-2\s+1\s+starting\s+-\s+1m/);
  // Newest first, including a sandbox that is gone (sb-0).
  assert.match(describe.stdout, /recent cold starts \(ms; newest first\):\n\s+SANDBOX.*\n\s+sb-1\s+w-1\s+2025-01-01T00:05:01.000Z\s+12\.5\s+40\s+30\s+82\.5\s+90\n\s+sb-0\s+w-9\s+2025-01-01T00:01:00.000Z\s+100/);
  const describeJson = JSON.parse((await runCli(['describe', 'hello', '--json'], { env })).stdout) as { function: { status: unknown }; sandboxes: unknown[] };
  assert.deepEqual(describeJson.function.status, { desired: 2, ready: 1, starting: 1, draining: 0 });
  assert.equal(describeJson.sandboxes.length, 2);

  const del = await runCli(['delete', 'hello', '--json'], { env });
  assert.deepEqual(JSON.parse(del.stdout), { deleted: 'hello' });
  assert.equal(cp.functions.size, 0);
  const empty = await runCli(['list'], { env });
  assert.match(empty.stdout, /no functions/);
});

test('control-plane errors print the code and exit with 1', async (t) => {
  const { env } = await setup(t);
  const missing = await runCli(['describe', 'ghost'], { env });
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, "error ERR_FUNCTION_NOT_FOUND: function 'ghost' does not exist\n");
  assert.equal(missing.stdout, '');
  const del = await runCli(['delete', 'ghost', '--json'], { env });
  assert.equal(del.code, 1);
  assert.match(del.stderr, /^error ERR_FUNCTION_NOT_FOUND/);
  const down = await runCli(['list', '--url', 'http://127.0.0.1:1'], { env });
  assert.equal(down.code, 1);
  assert.match(down.stderr, /^error ERR_UNAVAILABLE: GET http:\/\/127\.0\.0\.1:1\/v1\/functions failed/);
});

test('invoke prints the body, or {status, headers, body} with --json', async (t) => {
  const { root, env } = await setup(t);
  const plain = await runCli(['invoke', 'hello', '--data', '{"who":"world"}', '--path', '/greet?x=1', '--header', 'X-Trace: t1'], { env });
  assert.equal(plain.code, 0, plain.stderr);
  const echoed = JSON.parse(plain.stdout) as { fn: string; method: string; path: string; headers: Record<string, string>; body: string };
  assert.equal(echoed.fn, 'hello');
  assert.equal(echoed.method, 'POST');
  assert.equal(echoed.path, '/greet?x=1');
  assert.equal(echoed.headers['x-trace'], 't1');
  assert.equal(echoed.headers['content-type'], 'application/json');
  assert.equal(echoed.body, '{"who":"world"}');

  writeFileSync(join(root, 'payload.txt'), 'from a file');
  const fromFile = await runCli(['invoke', 'hello', '--data', '@payload.txt', '--method', 'put', '--json'], { env, cwd: root });
  assert.equal(fromFile.code, 0, fromFile.stderr);
  const out = JSON.parse(fromFile.stdout) as { status: number; headers: Record<string, string>; body: string };
  assert.equal(out.status, 200);
  assert.equal(out.headers['content-type'], 'application/json');
  const inner = JSON.parse(out.body) as { method: string; body: string; headers: Record<string, string> };
  assert.equal(inner.method, 'PUT');
  assert.equal(inner.body, 'from a file');
  assert.equal(inner.headers['content-type'], 'text/plain; charset=utf-8');

  const get = JSON.parse((await runCli(['invoke', 'hello'], { env })).stdout) as { method: string; path: string };
  assert.deepEqual([get.method, get.path], ['GET', '/']);
});

test('invoke exits with 1 on a non-2xx answer', async (t) => {
  const { env, dp } = await setup(t);
  const missing = await runCli(['invoke', 'missing'], { env });
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, "error ERR_FUNCTION_NOT_FOUND: function 'missing' does not exist\n");
  const teapot = await runCli(['invoke', 'teapot', '--dataplane-url', dp.url], { env: {} });
  assert.equal(teapot.code, 1);
  assert.equal(teapot.stdout, 'short and stout\n');
  assert.match(teapot.stderr, /HTTP 418/);
  const json = await runCli(['invoke', 'teapot', '--json'], { env });
  assert.equal(json.code, 1);
  assert.equal((JSON.parse(json.stdout) as { status: number }).status, 418);
  const down = await runCli(['invoke', 'hello', '--dataplane-url', 'http://127.0.0.1:1'], { env });
  assert.equal(down.code, 1);
  assert.match(down.stderr, /^error ERR_UNAVAILABLE/);
});

test('logs prints the tail, and --follow prints only new lines until stopped', async (t) => {
  const { cp, fnDir, env } = await setup(t);
  assert.equal((await runCli(['deploy', '-f', join(fnDir, 'baton.yaml')], { env })).code, 0);
  cp.logs.set('hello', [
    { ts: '2025-01-01T00:00:01.000Z', sandboxId: 'sb-1', stream: 'stdout', line: 'one' },
    { ts: '2025-01-01T00:00:02.000Z', sandboxId: 'sb-1', stream: 'stderr', line: 'two' },
  ]);
  const tail = await runCli(['logs', 'hello', '--tail', '1'], { env });
  assert.equal(tail.code, 0, tail.stderr);
  assert.equal(tail.stdout, '2025-01-01T00:00:02.000Z [sb-1 stderr] two\n');
  assert.ok(cp.requests.some((r) => r.path === '/v1/functions/hello/logs?tail=1'));
  const json = JSON.parse((await runCli(['logs', 'hello', '--json'], { env })).stdout) as { lines: unknown[] };
  assert.equal(json.lines.length, 2);

  // Each logs request adds a line; the follower stops itself once it has printed 'four'.
  let served = 0;
  cp.onLogsRequest = () => {
    served++;
    if (served > 1) cp.logs.get('hello')?.push({ ts: `2025-01-01T00:00:0${served + 1}.000Z`, sandboxId: 'sb-2', stream: 'stdout', line: ['three', 'four'][served - 2] ?? 'more' });
  };
  const controller = new AbortController();
  const follow = await runCli(['logs', 'hello', '--follow', '--interval-ms', '10'], {
    env, signal: controller.signal, onStdout: (text) => { if (text.includes('four')) controller.abort(); },
  });
  assert.equal(follow.code, 0, follow.stderr);
  assert.deepEqual(follow.stdout.trimEnd().split('\n').map((l) => l.split(' ').at(-1)), ['one', 'two', 'three', 'four']);
});

test('status shows workers, data planes and sandbox counts', async (t) => {
  const { cp, fnDir, env } = await setup(t);
  assert.equal((await runCli(['deploy', '-f', join(fnDir, 'baton.yaml')], { env })).code, 0);
  cp.status.set('hello', { desired: 3, ready: 2, starting: 1, draining: 0 });
  cp.workers = [{ workerId: 'w-1', url: 'http://127.0.0.1:10010', state: 'ready', capacity: { cpuMilli: 4000, memoryMiB: 8192 },
    allocated: { cpuMilli: 300, memoryMiB: 384 }, sandboxes: 3, lastHeartbeatAgoMs: 420 }];
  cp.dataplanes = [{ dataplaneId: 'dp-1', url: 'http://127.0.0.1:8081', proxyUrl: 'http://127.0.0.1:8080', state: 'ready', routingVersion: 17 }];
  const status = await runCli(['status'], { env });
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /workers \(1\):\n\s+WORKER\s+URL\s+STATE.*\n\s+w-1\s+http:\/\/127\.0\.0\.1:10010\s+ready\s+300\/4000\s+384\/8192\s+3\s+420ms ago/);
  assert.match(status.stdout, /dp-1\s+http:\/\/127\.0\.0\.1:8081\s+http:\/\/127\.0\.0\.1:8080\s+ready\s+17/);
  assert.match(status.stdout, /sandboxes: 2 ready, 1 starting, 0 draining \(3 desired\)/);
  const json = JSON.parse((await runCli(['status', '--json'], { env })).stdout) as { workers: unknown[]; dataplanes: unknown[]; sandboxes: { ready: number } };
  assert.equal(json.workers.length, 1);
  assert.equal(json.sandboxes.ready, 2);
});
