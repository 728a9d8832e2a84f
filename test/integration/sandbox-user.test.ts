import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { parseWorkerConfig } from '../../src/worker/config.ts';
import { FALLBACK_SANDBOX_ROOT, startWorker } from '../../src/worker/main.ts';
import { joinGroupThenExec } from '../../src/worker/process/process-runtime.ts';

const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((file) => existsSync(file));

/**
 * With cgroup limits a root shell joins the sandbox's group and `setpriv` drops to the sandbox
 * user before the program runs (machines without cgroup v2 never take that path in the worker
 * tests): here the "group" is a plain file, which `echo $$ >` writes the same way.
 */
test('the shell that joins a cgroup drops to the sandbox user before it execs the program', { skip: (process.getuid?.() !== 0 && 'not root') || (SETPRIV === undefined && 'setpriv is not installed') }, async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'baton-sandbox-user-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const procs = path.join(dir, 'cgroup.procs');
  await writeFile(procs, '');
  const [file, args] = joinGroupThenExec([procs], process.execPath, ['-e', 'process.stdout.write(require("fs").readFileSync("/proc/self/status", "utf8"))'], { uid: 65_534, gid: 65_534, setpriv: SETPRIV as string });
  const child = spawn(file, args, { env: { PATH: '/usr/bin:/bin' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  assert.equal(code, 0, err);
  const line = (key: string) => out.split('\n').find((l) => l.startsWith(`${key}:`))?.slice(key.length + 1).trim().split(/\s+/);
  assert.deepEqual(line('Uid'), ['65534', '65534', '65534', '65534']);
  assert.deepEqual(line('Gid'), ['65534', '65534', '65534', '65534']);
  assert.equal(out.split('\n').find((l) => l.startsWith('Groups:'))?.slice('Groups:'.length).trim(), '', 'no supplementary groups');
  // The pid written into the group is the program's own (the shell exec'd setpriv, which exec'd it).
  assert.equal((await readFile(procs, 'utf8')).trim(), String(child.pid));
});

test('a root worker whose data dir the sandbox user cannot reach keeps its sandboxes\' files under /var/lib/baton/<tag>, still unprivileged; one it can reach keeps them in the data dir, with the runner copied in', { skip: process.getuid?.() !== 0 && 'not root' }, async (t) => {
  const locked = await mkdtemp(path.join(tmpdir(), 'baton-sandbox-user-'));
  t.after(() => rm(locked, { recursive: true, force: true }));
  // mkdtemp made it 0700: uid 65534 cannot search it.
  const start = async (dataDir: string) => {
    const lines: Record<string, unknown>[] = [];
    const stream = new Writable({ write(chunk: Buffer, _enc, done) { for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>); done(); } });
    const worker = await startWorker(parseWorkerConfig({ port: 0, dataDir, controlPlaneUrl: 'http://127.0.0.1:9', processLimits: false }), { logger: pino({ level: 'info' }, stream) });
    t.after(() => worker.close());
    return lines;
  };
  // Below a directory closed to others: the sandboxes' files go under /var/lib/baton/<tag>, and
  // the sandboxes still run unprivileged.
  const lockedLines = await start(path.join(locked, 'worker'));
  const moved = lockedLines.find((l) => typeof l['sandboxDir'] === 'string');
  assert.ok(moved !== undefined, JSON.stringify(lockedLines));
  const sandboxDir = moved['sandboxDir'] as string;
  t.after(() => rm(sandboxDir, { recursive: true, force: true }));
  assert.equal(path.dirname(sandboxDir), FALLBACK_SANDBOX_ROOT);
  assert.deepEqual([moved['directory'], moved['mode']], [locked, '700']);
  assert.ok(!lockedLines.some((l) => String(l['msg']).startsWith('PROCESS SANDBOXES RUN AS ROOT')), JSON.stringify(lockedLines));
  assert.ok(lockedLines.some((l) => l['msg'] === 'process sandboxes run unprivileged' && l['uid'] === 65_534), JSON.stringify(lockedLines));
  assert.equal((await stat(sandboxDir)).mode & 0o777, 0o711);
  assert.equal((await stat(path.join(sandboxDir, 'runner', 'handler-runner.cjs'))).mode & 0o777, 0o644);
  assert.ok((await stat(path.join(sandboxDir, 'artifacts'))).isDirectory(), 'the artifact cache is there');

  await chmod(locked, 0o711);
  const dataDir = path.join(locked, 'reachable');
  const lines = await start(dataDir);
  assert.ok(lines.some((l) => l['msg'] === 'process sandboxes run unprivileged' && l['uid'] === 65_534), JSON.stringify(lines));
  assert.equal((await stat(dataDir)).mode & 0o777, 0o711);
  assert.equal((await stat(path.join(dataDir, 'runner', 'handler-runner.cjs'))).mode & 0o777, 0o644);
});
