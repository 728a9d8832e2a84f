import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { parseResultsCsv } from '../../src/loadgen/invitro-csv.ts';
import { planTrace } from '../../src/loadgen/schedule.ts';
import { readTrace } from '../../src/loadgen/trace.ts';
import { request } from 'undici';
import { ROOT } from '../kit/cluster.ts';
import { runCli } from '../kit/run-cli.ts';
import { freeOffset } from '../kit/up.ts';
import { waitFor } from '../kit/wait-for.ts';

/**
 * `baton loadgen run --deploy --runtime emulated` against `baton up --runtime emulated`: the
 * fixture trace replayed for two minutes, every invocation recorded and analyzed, the functions
 * removed afterwards; and a fixed-rate run stopped midway that still writes what it recorded.
 */

const TRACE = join(ROOT, 'test/fixtures/azure2019-example');

/**
 * `baton up` on free ports, with its client config in a directory of the test's (never the user's).
 * `authMode: none` is how an unmodified Invitro, which sends no token, is pointed at Baton.
 */
async function startUp(t: TestContext, runtime: 'emulated' | 'process' = 'emulated', authMode: 'token' | 'none' = 'token'): Promise<{ cpUrl: string; dpUrl: string; registrationUrl: string; dir: string; token: string | undefined }> {
  const dir = await mkdtemp(join(tmpdir(), 'baton-loadgen-up-'));
  // Searchable by the unprivileged user the worker runs process sandboxes as.
  await chmod(dir, 0o711);
  const offset = await freeOffset(t);
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'up', '--runtime', runtime, '--data-dir', join(dir, 'data'), '--port-offset', String(offset)], {
    cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'],
    // The emulated sandboxes' creation latency is the worker's setting.
    env: {
      ...process.env, BATON_WORKER_EMULATED_CREATE_LATENCY: '30ms', XDG_CONFIG_HOME: join(dir, 'config'),
      ...(authMode === 'none' ? { BATON_CONTROLPLANE_AUTH_MODE: 'none' } : {}),
    },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  t.after(async () => {
    if (child.exitCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGINT');
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  });
  // Generous: ~5 s on an idle machine, but four Node processes compiling the sources (tsx) on an
  // oversubscribed 2-core machine have taken more than 90 s.
  await waitFor(() => stdout.includes('Press Ctrl-C'), { timeoutMs: 180_000, message: `baton up to be ready (stdout: ${stdout.slice(-300)}; stderr: ${stderr.slice(-500)})` });
  const token = authMode === 'none' ? undefined : (await readFile(join(dir, 'data', 'admin-token'), 'utf8')).trim();
  return { cpUrl: `http://127.0.0.1:${9090 + offset}`, dpUrl: `http://127.0.0.1:${8080 + offset}`, registrationUrl: `http://127.0.0.1:${9091 + offset}`, dir, token };
}

const withToken = (token: string | undefined): RequestInit => (token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });

async function functionNames(cpUrl: string, token: string | undefined): Promise<string[]> {
  const body = await (await fetch(`${cpUrl}/v1/functions`, withToken(token))).json() as { functions: { spec: { name: string } }[] };
  return body.functions.map((f) => f.spec.name).sort();
}

test('a 2-minute replay of the fixture trace with --deploy records every invocation, and analyze reads it', async (t) => {
  const { cpUrl, dpUrl, dir, token } = await startUp(t);
  const out = join(dir, 'results.csv');
  const result = await runCli(['loadgen', 'run', TRACE, '--minutes', '2', '--deploy', '--runtime', 'emulated', '--url', cpUrl, '--target', dpUrl, '--format', 'baton', '-o', out], { env: { BATON_TOKEN: token ?? '' } });
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /deployed 4 functions \(runtime emulated\)/);
  assert.match(result.stderr, /deleted 4 functions/);
  assert.deepEqual(await functionNames(cpUrl, token), ['hello'], 'the trace functions are gone, hello stays');

  const trace = await readTrace(TRACE);
  const plan = planTrace(trace.functions, { minutes: 2, iatDistribution: 'exponential', seed: 42 });
  const { records, hasBatonColumns } = parseResultsCsv(await readFile(out, 'utf8'));
  assert.ok(hasBatonColumns);
  assert.equal(records.length, plan.length, 'one row per planned invocation');
  assert.ok(plan.length > 0);
  for (let i = 0; i < records.length; i++) {
    assert.equal(records.status[i], 200, `invocation ${i}: ${records.errorCodes[records.errorIndex[i] ?? 0]}`);
    // The emulated sandbox reports the execution time it was asked for (the fixture's ~100–500 ms).
    assert.ok((records.execUs[i] ?? 0) >= (records.requestedExecMs[i] ?? 0) * 1000, `ExecutionTime of invocation ${i}`);
  }
  const counts = (names: readonly string[], fi: ArrayLike<number>, n: number): Record<string, number> => {
    const byName: Record<string, number> = {};
    for (let i = 0; i < n; i++) byName[names[fi[i] ?? 0] ?? ''] = (byName[names[fi[i] ?? 0] ?? ''] ?? 0) + 1;
    return byName;
  };
  assert.deepEqual(counts(records.functions, records.functionIndex, records.length), counts(plan.functions, plan.functionIndex, plan.length));

  const analyzed = await runCli(['loadgen', 'analyze', out, '--json']);
  assert.equal(analyzed.code, 0, analyzed.stderr);
  const report = JSON.parse(analyzed.stdout) as { invocations: number; functions: number; failures: { total: number }; schedulingLatencyMs: { perFunctionMean: { p50: number; p99: number } } };
  assert.equal(report.invocations, plan.length);
  assert.equal(report.failures.total, 0);
  assert.ok(report.schedulingLatencyMs.perFunctionMean.p50 >= 0);
  assert.ok(report.schedulingLatencyMs.perFunctionMean.p99 >= report.schedulingLatencyMs.perFunctionMean.p50);
});

test('Ctrl-C stops a fixed-rate run cleanly: what was recorded is written and the function removed', async (t) => {
  const { cpUrl, dpUrl, dir, token } = await startUp(t);
  const out = join(dir, 'rps.csv');
  const controller = new AbortController();
  const running = runCli(['loadgen', 'run', '--rps', '20', '--seconds', '120', '--exec-ms', '5', '--deploy', '--url', cpUrl, '--target', dpUrl, '-o', out], { signal: controller.signal, env: { BATON_TOKEN: token ?? '' } });
  // Stop once the warm function has served invocations.
  await waitFor(async () => {
    const res = await fetch(`${cpUrl}/v1/functions/warm-function`, withToken(token));
    if (res.status !== 200) return false;
    const detail = await res.json() as { status: { ready: number } };
    return detail.status.ready >= 1;
  }, { timeoutMs: 30_000, message: 'the warm function to have a ready sandbox' });
  controller.abort();
  const result = await running;
  assert.equal(result.code, 130, result.stderr);
  assert.match(result.stdout, /^stopped: sent \d+ of 2400 invocations/);
  const { records } = parseResultsCsv(await readFile(out, 'utf8'));
  assert.ok(records.length >= 1 && records.length < 2400, `${records.length} rows`);
  for (let i = 0; i < records.length; i++) {
    const code = records.errorCodes[records.errorIndex[i] ?? 0];
    assert.ok(records.status[i] === 200 || code === 'connectionTimeout', `row ${i}: ${records.status[i]} ${code}`);
  }
  assert.deepEqual(await functionNames(cpUrl, token), ['hello']);
});

test("Invitro's registration form registers a function on the registration port, which then answers by Host", async (t) => {
  const { cpUrl, dpUrl, registrationUrl, token } = await startUp(t, 'emulated', 'none');
  // What Invitro's rps_mode sends (http.PostForm), field for field.
  const form = new URLSearchParams([
    ['name', 'tc13acdc7567b225971-3'], ['image', 'docker.io/cvetkovic/dirigent_trace_function:latest'],
    ['port_forwarding', '80'], ['port_forwarding', 'tcp'], ['requested_cpu', '100'], ['requested_memory', '17'],
    ['scaling_upper_bound', '5'], ['scaling_lower_bound', '0'], ['cold_start_sweep', 'false'],
  ]);
  const post = (url: string, body: URLSearchParams) => request(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: body.toString() });
  const registered = await post(`${registrationUrl}/registerService`, form);
  assert.equal(registered.statusCode, 200);
  assert.equal(await registered.body.text(), new URL(dpUrl).host, "Dirigent's answer: the data planes' ip:port");
  const detail = await (await fetch(`${cpUrl}/v1/functions/tc13acdc7567b225971-3`)).json() as { spec: { runtime: string; resources: { cpuMilli: number; memoryMiB: number; maxPids: number }; scaling: { maxScale: number; minScale: number } } };
  assert.deepEqual([detail.spec.runtime, detail.spec.resources, detail.spec.scaling.maxScale, detail.spec.scaling.minScale], ['emulated', { cpuMilli: 100, memoryMiB: 17, maxPids: 256 }, 5, 0]);

  // Invitro's invocation: Host names the function, requested_cpu the execution time in ms.
  const res = await request(`${dpUrl}/`, { headers: { host: 'tc13acdc7567b225971-3', requested_cpu: '25', requested_memory: '17', function: 'tc13acdc7567b225971-3', workload: 'trace' } });
  assert.equal(res.statusCode, 200);
  const answer = await res.body.json() as { Status: string; ExecutionTime: number };
  assert.equal(answer.Status, 'OK');
  assert.ok(answer.ExecutionTime >= 25_000, `ExecutionTime ${answer.ExecutionTime}`);

  // The same name again: 409 as Dirigent; a bad field: 400 naming it; the catch-all path works too.
  const again = await post(`${registrationUrl}/`, form);
  assert.equal(again.statusCode, 409);
  assert.equal((await again.body.json() as { error: { code: string } }).error.code, 'ERR_FUNCTION_EXISTS');
  const bad = await post(`${cpUrl}/registerService`, new URLSearchParams([['name', 'other'], ['image', 'docker.io/library/nginx:latest']]));
  assert.equal(bad.statusCode, 400);
  assert.match((await bad.body.json() as { error: { message: string } }).error.message, /form field image/);
  assert.deepEqual(await functionNames(cpUrl, token), ['hello', 'tc13acdc7567b225971-3']);
});

test('--deploy --runtime process runs examples/trace-function in real sandboxes', async (t) => {
  const { cpUrl, dpUrl, dir, token } = await startUp(t, 'process');
  const out = join(dir, 'process.csv');
  const result = await runCli(['loadgen', 'run', '--rps', '4', '--seconds', '2', '--exec-ms', '20', '--memory', '8', '--deploy', '--runtime', 'process', '--url', cpUrl, '--target', dpUrl, '--format', 'baton', '-o', out], { env: { BATON_TOKEN: token ?? '' } });
  assert.equal(result.code, 0, result.stderr);
  const { records } = parseResultsCsv(await readFile(out, 'utf8'));
  assert.equal(records.length, 8);
  for (let i = 0; i < records.length; i++) {
    assert.equal(records.status[i], 200, `row ${i}: ${records.errorCodes[records.errorIndex[i] ?? 0]}`);
    assert.ok((records.execUs[i] ?? 0) >= 20_000, `row ${i}: the trace function spun ${records.execUs[i]} µs`);
  }
  assert.deepEqual(await functionNames(cpUrl, token), ['hello']);
});
