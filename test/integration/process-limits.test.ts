import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { SandboxFunction } from '../../src/api/worker.ts';
import { Cancellation } from '../../src/core/cancellation.ts';
import { SystemClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { SandboxCgroups } from '../../src/worker/container/cgroups.ts';
import { ProcessRuntime } from '../../src/worker/process/process-runtime.ts';
import type { SandboxExit } from '../../src/worker/runtime.ts';
import { waitFor } from '../kit/wait-for.ts';

/**
 * The process runtime's cgroup limits, against the host's real cgroups (root, as in CI): memory
 * and pids limits that hold, a CPU weight, OOM kills reported as such, and no group left behind.
 */
const PROBE = fileURLToPath(new URL('../fixtures/container-probe/', import.meta.url)).replace(/\/$/, '');

interface Setup {
  readonly runtime: ProcessRuntime;
  readonly cgroups: SandboxCgroups;
  readonly dataDir: string;
  readonly exits: SandboxExit[];
}

async function setup(t: TestContext, dataDir?: string, tag = `${randomBytes(3).toString('hex')}p`): Promise<Setup> {
  const dir = dataDir ?? await mkdtemp(path.join(tmpdir(), 'baton-process-limits-'));
  const cgroups = new SandboxCgroups(tag);
  const runtime = new ProcessRuntime({
    dataDir: dir, sandboxHost: '127.0.0.1', readyTimeoutMs: 15_000, stopGraceMs: 500, logBufferLines: 20,
    // Timers that hold the process: here nothing else does (a worker has its servers), and the
    // leftover cleanup's wait for a killed process to leave its cgroup must not let the test end.
    clock: new SystemClock({ holdsProcess: true }), logger: silentLogger(), cgroups,
  });
  await runtime.cleanupLeftovers();
  const exits: SandboxExit[] = [];
  runtime.onExit((exit) => exits.push(exit));
  t.after(async () => {
    await runtime.close();
    await cgroups.removeAll();
    if (dataDir === undefined) await rm(dir, { recursive: true, force: true });
  });
  return { runtime, cgroups, dataDir: dir, exits };
}

function fn(resources: Partial<SandboxFunction['resources']> = {}): SandboxFunction {
  return {
    name: 'probe', generation: 1, runtime: 'process', artifact: `sha256:${'0'.repeat(64)}`, handler: 'index.handler',
    concurrency: 1, timeoutMs: 10_000, env: {}, resources: { cpuMilli: 250, memoryMiB: 128, maxPids: 64, ...resources },
  };
}

test('a process sandbox runs inside its own cgroup, with its memory and pids limits and a CPU weight from cpuMilli', async (t) => {
  const s = await setup(t);
  const started = await s.runtime.create('limits-1', fn(), PROBE, new Cancellation());
  assert.equal((await (await fetch(`http://${started.address}/`)).json() as { hello: string }).hello, 'probe');
  const ownGroups = await readFile(`/proc/${started.pid}/cgroup`, 'utf8');
  for (const controller of s.cgroups.version === 2 ? [''] : ['memory', 'pids', 'cpu']) {
    const line = ownGroups.split('\n').find((l) => l.split(':')[1]?.split(',').includes(controller) ?? false);
    assert.match(line ?? '', /\/limits-1\/c$/, `in its group for ${controller || 'the unified hierarchy'}: ${line}`);
  }
  const [memoryDir, cpuDir] = s.cgroups.version === 2
    ? [s.cgroups.dirsOf('limits-1')[0] ?? '', s.cgroups.dirsOf('limits-1')[0] ?? '']
    : ['memory', 'cpu'].map((c) => s.cgroups.dirsOf('limits-1').find((d) => d.includes(`/cgroup/${c}/`)) ?? '');
  const memoryLimit = s.cgroups.version === 2 ? 'memory.max' : 'memory.limit_in_bytes';
  assert.equal(Number(await readFile(path.join(memoryDir ?? '', memoryLimit), 'utf8')), 128 * 1024 * 1024);
  const weight = await readFile(path.join(cpuDir ?? '', s.cgroups.version === 2 ? 'cpu.weight' : 'cpu.shares'), 'utf8');
  assert.equal(Number(weight), s.cgroups.version === 2 ? 25 : 256, 'a weight, not a quota');

  const pids = await (await fetch(`http://${started.address}/pids?max=100`)).json() as { spawned: number; refusal: string | null };
  assert.equal(pids.refusal, 'EAGAIN', `spawning stopped at the pids limit (spawned ${pids.spawned})`);
  assert.ok(pids.spawned < 64);
  await s.runtime.delete('limits-1');
  await waitFor(async () => (await s.cgroups.list()).length === 0, { timeoutMs: 5_000, message: 'the sandbox cgroup to go' });
  await s.runtime.close();
  const bases = s.cgroups.dirsOf('limits-1').map((dir) => path.dirname(dir));
  assert.deepEqual(bases.filter((dir) => existsSync(dir)), [], 'closing removes the worker\'s own groups too');
});

test('a process sandbox that allocates past memoryMiB is OOM-killed and reported with reason oom', async (t) => {
  const s = await setup(t);
  const started = await s.runtime.create('oom-1', fn({ memoryMiB: 96 }), PROBE, new Cancellation());
  await fetch(`http://${started.address}/oom`).catch(() => undefined);
  await waitFor(() => s.exits.length > 0, { timeoutMs: 15_000, message: 'the sandbox to exit' });
  assert.deepEqual(s.exits.map((e) => [e.sandboxId, e.signal, e.reason]), [['oom-1', 'SIGKILL', 'oom']]);
  await waitFor(async () => (await s.cgroups.list()).length === 0, { timeoutMs: 5_000, message: 'the sandbox cgroup to go' });
});

test('a sandbox killed by someone else is a signal, not an OOM', async (t) => {
  const s = await setup(t);
  const started = await s.runtime.create('kill-1', fn(), PROBE, new Cancellation());
  process.kill(started.pid ?? 0, 'SIGKILL');
  await waitFor(() => s.exits.length > 0, { timeoutMs: 10_000, message: 'the sandbox to exit' });
  assert.deepEqual(s.exits.map((e) => [e.signal, e.reason]), [['SIGKILL', 'signal']]);
});

test('a restart after the worker died removes the sandboxes and cgroups the previous run left', async (t) => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'baton-process-limits-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const tag = `${randomBytes(3).toString('hex')}p`;
  const first = await setup(t, dataDir, tag);
  const started = await first.runtime.create('left-1', fn(), PROBE, new Cancellation());
  await first.runtime.close({ keepSandboxes: true });
  assert.deepEqual(await first.cgroups.list(), ['left-1']);

  const second = await setup(t, dataDir, tag);
  await waitFor(async () => (await second.cgroups.list()).length === 0, { timeoutMs: 5_000, message: 'the left cgroup to go' });
  assert.throws(() => process.kill(started.pid ?? 0, 0), /ESRCH/, 'the left sandbox is gone');
});
