import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stat, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runCliProcess } from '../kit/cluster.ts';
import { isFree, startUp } from '../kit/up.ts';
import { waitFor } from '../kit/wait-for.ts';

/** `npm start` runs `baton up`: the whole local cluster, `hello` deployed, everything stopped on Ctrl-C. */

test('baton up starts a cluster that serves hello, and Ctrl-C stops all of it, sandboxes included', async (t) => {
  const up = await startUp(t);
  const { offset, output, interrupt } = up;
  assert.match(output.stdout, new RegExp(`curl http://127\\.0\\.0\\.1:${8080 + offset}/fn/hello/`));

  // The admin token is in the data dir and the client config, readable by their owner only, and
  // the CLI finds the cluster and the token with no flag at all.
  const configFile = join(up.configHome, 'baton', 'config.json');
  for (const file of [join(up.dir, 'admin-token'), configFile]) assert.equal((await stat(file)).mode & 0o777, 0o600, file);
  const config = JSON.parse(await readFile(configFile, 'utf8')) as { url: string; token: string };
  assert.deepEqual([config.url, config.token], [`http://127.0.0.1:${9090 + offset}`, up.adminToken]);
  assert.equal((await fetch(`http://127.0.0.1:${9090 + offset}/v1/functions`)).status, 401, 'the API needs a token');
  const functions = await runCliProcess(['list'], up.cliEnv);
  assert.equal(functions.code, 0, functions.stderr);
  assert.match(functions.stdout, /^hello\s+process/m);
  const invoked = await runCliProcess(['invoke', 'hello'], up.cliEnv);
  assert.equal(invoked.code, 0, invoked.stderr);
  const created = await runCliProcess(['token', 'create', '--role', 'invoker', '--scope', 'hello'], up.cliEnv);
  assert.equal(created.code, 0, created.stderr);
  const tokens = await runCliProcess(['token', 'list'], up.cliEnv);
  assert.match(tokens.stdout, new RegExp(`${created.stdout.trim().slice(6, 18)}\\s+invoker\\s+hello\\s+active`));
  assert.ok(!tokens.stdout.includes(created.stdout.trim().slice(19)), 'list shows no secret');

  const res = await fetch(`http://127.0.0.1:${8080 + offset}/fn/hello/`);
  assert.equal(res.status, 200);
  const body = await res.json() as { message: string; sandboxId: string };
  assert.match(body.message, /hello/i);
  const listed = await (await fetch(`http://127.0.0.1:${10010 + offset}/internal/v1/sandboxes`)).json() as { sandboxes: { sandboxId: string; pid: number }[] };
  const sandbox = listed.sandboxes.find((s) => s.sandboxId === body.sandboxId);
  assert.ok(sandbox !== undefined);

  assert.equal(await interrupt(), 0, output.stderr.slice(-1000));
  assert.throws(() => process.kill(sandbox.pid, 0), 'the sandbox process is gone');
  for (const port of [8080, 8081, 9090, 9091, 10010]) assert.ok(await isFree(port + offset), `port ${port + offset} released`);
});

test('baton up --runtime emulated --workers 5 registers five workers and serves an emulated hello', async (t) => {
  const { offset, output, interrupt, adminToken } = await startUp(t, ['--runtime', 'emulated', '--workers', '5']);
  const workers = await waitFor(async () => {
    const body = await (await fetch(`http://127.0.0.1:${9090 + offset}/v1/workers`, { headers: { authorization: `Bearer ${adminToken}` } })).json() as { workers: { state: string; runtimes: string[] }[] };
    return body.workers.filter((w) => w.state === 'ready').length === 5 ? body.workers : undefined;
  }, { message: 'five ready workers' });
  assert.ok(workers.every((w) => w.runtimes.join() === 'emulated'));
  const res = await fetch(`http://127.0.0.1:${8080 + offset}/fn/hello/`, { headers: { 'x-baton-exec-ms': '20' } });
  assert.equal(res.status, 200);
  const answer = await res.json() as { Status: string; ExecutionTime: number };
  assert.equal(answer.Status, 'OK');
  assert.ok(answer.ExecutionTime >= 20_000, `waited the requested 20 ms (${answer.ExecutionTime} µs)`);
  assert.equal(await interrupt(), 0, output.stderr.slice(-1000));
});
