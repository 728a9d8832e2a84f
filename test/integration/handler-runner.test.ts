import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { test } from 'node:test';
import { RUNNER_PATH } from '../../src/worker/process/process-runtime.ts';

/**
 * The handler runner loads ES module and CommonJS handlers — with require() where Node allows it,
 * import() for a module with top-level await — started as the worker starts it (clean environment,
 * ready on fd 3).
 */

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function serveOnce(dir: string): Promise<{ status: number; body: unknown }> {
  const port = await freePort();
  const child = spawn(process.execPath, [RUNNER_PATH], {
    cwd: dir, env: { PATH: '/usr/bin:/bin', PORT: String(port), BATON_HOST: '127.0.0.1', BATON_HANDLER: 'index.handler', BATON_FUNCTION: 'fn' },
    stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  try {
    const ready = child.stdio[3] as Readable;
    await Promise.race([
      once(ready, 'data'),
      once(child, 'exit').then(() => { throw new Error(`the runner exited: ${stderr}`); }),
    ]);
    const res = await fetch(`http://127.0.0.1:${port}/x`);
    return { status: res.status, body: await res.json() };
  } finally {
    child.kill('SIGKILL');
  }
}

test('ES module (type: module), .mjs with top-level await, and CommonJS handlers all load and answer', async (t) => {
  const root = await mkdtemp(path.join(tmpdir(), 'baton-runner-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const write = async (name: string, files: Record<string, string>): Promise<string> => {
    const dir = path.join(root, name);
    await mkdir(dir);
    for (const [file, text] of Object.entries(files)) await writeFile(path.join(dir, file), text);
    return dir;
  };
  const esm = await write('esm', {
    'package.json': '{ "type": "module" }',
    'index.js': 'import { sep } from "node:path";\nexport async function handler(event) { return { kind: "esm", path: event.rawPath, sep }; }\n',
  });
  const tla = await write('tla', {
    'index.mjs': 'const value = await Promise.resolve("tla");\nexport const handler = async () => ({ kind: value });\n',
  });
  const cjs = await write('cjs', {
    'index.cjs': 'exports.handler = async (event, context) => ({ kind: "cjs", name: context.functionName });\n',
  });
  assert.deepEqual(await serveOnce(esm), { status: 200, body: { kind: 'esm', path: '/x', sep: '/' } });
  assert.deepEqual(await serveOnce(tla), { status: 200, body: { kind: 'tla' } });
  assert.deepEqual(await serveOnce(cjs), { status: 200, body: { kind: 'cjs', name: 'fn' } });
});
