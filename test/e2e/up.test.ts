import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../kit/cluster.ts';
import { waitFor } from '../kit/wait-for.ts';

/** `npm start` runs `baton up`: the whole local cluster, `hello` deployed, everything stopped on Ctrl-C. */

async function isFree(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((resolvePort) => {
    server.once('error', () => resolvePort(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolvePort(true)));
  });
}

async function freeOffset(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const offset = 20_000 + Math.floor(Math.random() * 20_000);
    const ports = [8080, 8081, 9090, 9091, 10010].map((p) => p + offset);
    if ((await Promise.all(ports.map(isFree))).every(Boolean)) return offset;
  }
  throw new Error('no free port offset');
}

/** Starts `baton up` on free ports with its own data dir; resolves once it says it is ready. */
async function startUp(t: TestContext, extraArgs: readonly string[] = []) {
  const dir = await mkdtemp(join(tmpdir(), 'baton-up-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const offset = await freeOffset();
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'up', '--data-dir', dir, '--port-offset', String(offset), ...extraArgs],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  const output = { stdout: '', stderr: '' };
  child.stdout.on('data', (d: Buffer) => { output.stdout += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { output.stderr += d.toString(); });
  await waitFor(() => output.stdout.includes('Press Ctrl-C'), { timeoutMs: 30_000, message: `baton up to be ready (stdout: ${output.stdout.slice(-500)}; stderr: ${output.stderr.slice(-500)})` });
  /** Ctrl-C; resolves with the exit code. */
  const interrupt = async (): Promise<number | null> => {
    const exited = once(child, 'exit');
    child.kill('SIGINT');
    const [code] = await exited as [number | null];
    return code;
  };
  return { offset, output, interrupt };
}

test('baton up starts a cluster that serves hello, and Ctrl-C stops all of it, sandboxes included', async (t) => {
  const { offset, output, interrupt } = await startUp(t);
  assert.match(output.stdout, new RegExp(`curl http://127\\.0\\.0\\.1:${8080 + offset}/fn/hello/`));

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
  const { offset, output, interrupt } = await startUp(t, ['--runtime', 'emulated', '--workers', '5']);
  const workers = await waitFor(async () => {
    const body = await (await fetch(`http://127.0.0.1:${9090 + offset}/v1/workers`)).json() as { workers: { state: string; runtimes: string[] }[] };
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
