import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { SandboxFunction } from '../../src/api/worker.ts';
import { unpackArchive } from '../../src/core/archive.ts';
import { Cancellation } from '../../src/core/cancellation.ts';
import { systemClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { buildImage } from '../../src/cli/image/image-builder.ts';
import { ContainerRuntime } from '../../src/worker/container/container-runtime.ts';
import { execTool } from '../../src/worker/container/exec.ts';
import { assertContainerPrerequisites } from '../../src/worker/container/prerequisites.ts';
import type { SandboxExit } from '../../src/worker/runtime.ts';
import { waitFor } from '../kit/wait-for.ts';

/**
 * The container runtime against real crun, cgroups, network namespaces and nft: root only, as in
 * CI (`.ci/run` installs crun, iproute2 and nftables and mounts hugetlb). A missing prerequisite
 * fails here with its fix rather than skipping.
 */
const PROBE = fileURLToPath(new URL('../fixtures/container-probe/', import.meta.url));

let imageDir: string | undefined;
const workRoot = await mkdtemp(path.join(tmpdir(), 'baton-container-'));
// Searchable by others, as a sandbox's mapped root in its user namespace must reach its image.
await chmod(workRoot, 0o711);

/** The probe function's image (Node base), built and unpacked once for the file. */
async function probeImage(): Promise<string> {
  if (imageDir !== undefined) return imageDir;
  const archive = await buildImage({ dir: PROBE, base: 'node', handler: 'index.handler' });
  const dir = path.join(workRoot, 'artifact');
  await unpackArchive(archive, dir, { maxPackedBytes: 256 << 20, maxUnpackedBytes: 1 << 30, maxEntries: 10_000 });
  imageDir = dir;
  return dir;
}

interface Setup {
  readonly runtime: ContainerRuntime;
  readonly tag: string;
  readonly dataDir: string;
  readonly bridgeIp: string;
  readonly exits: SandboxExit[];
  make(): ContainerRuntime;
}

async function setup(t: TestContext, options: { tag?: string; dataDir?: string } = {}): Promise<Setup> {
  await assertContainerPrerequisites(execTool, 'crun');
  const tag = options.tag ?? randomBytes(3).toString('hex');
  const third = randomInt(1, 250);
  const dataDir = options.dataDir ?? path.join(workRoot, tag);
  const make = (): ContainerRuntime => new ContainerRuntime({
    dataDir, tag, ociRuntime: 'crun', subnet: `10.213.${third}.0/24`, netnsPoolSize: 2, uid: 64_000, gid: 64_000, userNamespace: 'on', idMapBase: 300_000,
    imageLimits: { maxBytes: 1 << 30, maxEntries: 100_000 }, readyTimeoutMs: 15_000, stopGraceMs: 500, logBufferLines: 50,
    clock: systemClock, logger: silentLogger(), exec: execTool,
  });
  const runtime = make();
  await runtime.cleanupLeftovers();
  await runtime.start();
  const exits: SandboxExit[] = [];
  runtime.onExit((exit) => exits.push(exit));
  t.after(() => runtime.close());
  return { runtime, tag, dataDir, bridgeIp: `10.213.${third}.1`, exits, make };
}

function fn(resources: Partial<SandboxFunction['resources']> = {}): SandboxFunction {
  return {
    name: 'probe', generation: 1, runtime: 'container', handler: 'index.handler', concurrency: 1, timeoutMs: 10_000, env: { GREETING: 'hi' },
    resources: { cpuMilli: 1000, memoryMiB: 256, maxPids: 64, ...resources },
  };
}

async function listen(host: string): Promise<Server> {
  const server = createServer((socket) => socket.end('host secret\n'));
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return server;
}

/** Everything of the worker's tag on the host: containers, cgroups, namespaces, veths, netns mounts. */
async function hostObjects(s: Setup): Promise<{ containers: string[]; cgroups: string[]; netns: string[]; links: string[]; mounts: string[] }> {
  const containers = (await execTool('crun', ['--root', s.runtime.host.stateRoot, 'list', '--quiet']).catch(() => '')).split('\n').filter((l) => l.trim() !== '');
  const cgroups = await s.runtime.host.cgroups.list();
  const netns = await s.runtime.host.network.listNamespaces();
  const links = (await execTool('ip', ['-o', 'link', 'show'])).split('\n').map((l) => l.split(': ')[1]?.split('@')[0] ?? '')
    .filter((name) => name.startsWith(`bv${s.tag}`) || name === `bt${s.tag}`);
  const mounts = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').filter((l) => l.includes(`baton-${s.tag}`) || l.includes(s.dataDir));
  return { containers, cgroups, netns, links, mounts };
}

test('a container sandbox answers, isolated: own processes, no host files, no host ports, non-root, read-only root', async (t) => {
  const s = await setup(t);
  const dir = await probeImage();
  const secretDir = await mkdtemp(path.join(workRoot, 'secret-'));
  const secret = path.join(secretDir, 'secret.txt');
  await writeFile(secret, 'host secret');
  const loopback = await listen('127.0.0.1');
  const onBridge = await listen(s.bridgeIp);
  t.after(() => { loopback.close(); onBridge.close(); });
  const port = (loopback.address() as { port: number }).port;
  const bridgePort = (onBridge.address() as { port: number }).port;

  const started = await s.runtime.create('probe-1', fn(), dir, new Cancellation());
  assert.match(started.address, new RegExp(`^${s.bridgeIp.slice(0, -1).replace(/\./g, '\\.')}\\d+:8080$`));
  for (const phase of ['unpackMs', 'bundleMs', 'networkMs', 'startMs', 'readyMs'] as const) assert.ok((started[phase] ?? -1) >= 0, phase);
  const hello = await (await fetch(`http://${started.address}/`)).json() as { hello: string };
  assert.equal(hello.hello, 'probe');

  const url = `http://${started.address}/probe?file=${encodeURIComponent(secret)}&port=${port}&bridge=${s.bridgeIp}`;
  const probe = await (await fetch(url.replace(`port=${port}`, `port=${port}`))).json() as Record<string, any>;
  assert.equal(probe['uid'], 64_000);
  assert.equal(probe['gid'], 64_000);
  assert.deepEqual(probe['uidMap'], [0, 300_000, 65_536], 'a user namespace of its own: its ids 0-65535 are host ids 300000-365535');
  // From the host, its processes are an unprivileged host uid, not the uid it sees.
  const state = JSON.parse(await execTool('crun', ['--root', s.runtime.host.stateRoot, 'state', 'probe-1'])) as { pid: number };
  const hostUids = /^Uid:\s+(\d+)/m.exec(await readFile(`/proc/${state.pid}/status`, 'utf8'))?.[1];
  assert.equal(Number(hostUids), 364_000);
  assert.ok(probe['pids'].length <= 3, `sees only its own processes: ${probe['pids']}`);
  assert.ok(probe['pids'].includes(1), 'its init is pid 1 of its own namespace');
  assert.deepEqual(probe['hostFile'], { ok: false, code: 'ENOENT' });
  assert.deepEqual(probe['writeRoot'], { ok: false, code: 'EROFS' });
  assert.equal(probe['writeTmp'].ok, true);
  assert.equal(probe['kcore'].ok, false, '/proc/kcore is masked');
  assert.equal(probe['loopback'], 'ECONNREFUSED', "its 127.0.0.1 is its own, not the host's");
  const bridgeProbe = await (await fetch(`http://${started.address}/probe?file=/x&port=${bridgePort}&bridge=${s.bridgeIp}`)).json() as Record<string, any>;
  assert.notEqual(bridgeProbe['bridge'], 'connected', 'a host port on the bridge is not reachable from the sandbox');
  assert.ok(!probe['env'].some((k: string) => k.startsWith('NODE_') || k === 'SSH_AUTH_SOCK'), `no host variables: ${probe['env']}`);
  assert.ok(probe['env'].includes('GREETING'));
  await s.runtime.delete('probe-1');
});

/**
 * A host beyond the worker: a network namespace the test makes, joined to the host by a veth pair
 * with a /30 of its own, running a TCP server that answers with the address it saw the client at.
 */
async function outsideHost(t: TestContext): Promise<{ address: string; hostSide: string; port: number }> {
  const id = randomBytes(2).toString('hex');
  const ns = `baton-test-out-${id}`;
  const veth = `bxo${id}`;
  const third = randomInt(1, 250);
  const hostSide = `10.214.${third}.1`;
  const address = `10.214.${third}.2`;
  await execTool('ip', ['netns', 'add', ns]);
  t.after(async () => {
    await execTool('ip', ['netns', 'delete', ns]).catch(() => undefined);
    await execTool('ip', ['link', 'delete', veth]).catch(() => undefined);
  });
  await execTool('ip', ['-batch', '-'], {
    input: [`link add ${veth} type veth peer name eth0 netns ${ns}`, `addr add ${hostSide}/30 dev ${veth}`, `link set ${veth} up`].join('\n') + '\n',
  });
  await execTool('ip', ['-n', ns, '-batch', '-'], { input: [`addr add ${address}/30 dev eth0`, 'link set eth0 up', 'link set lo up'].join('\n') + '\n' });
  const server = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', `
    const server = require('node:net').createServer((socket) => socket.end('seen ' + socket.remoteAddress));
    server.listen(0, '${address}', () => console.log(server.address().port));
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => { server.kill('SIGKILL'); });
  const port = await new Promise<number>((resolve, reject) => {
    server.stdout.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
    server.once('exit', (code) => reject(new Error(`the outside server exited (${code})`)));
  });
  return { address, hostSide, port };
}

test('network "egress": a sandbox reaches a host beyond the worker (masqueraded), a "none" one does not, neither reaches the host', async (t) => {
  const s = await setup(t);
  const dir = await probeImage();
  const outside = await outsideHost(t);
  const onBridge = await listen(s.bridgeIp);
  t.after(() => { onBridge.close(); });
  const bridgePort = (onBridge.address() as { port: number }).port;
  const egress = await s.runtime.create('egress-1', { ...fn(), network: 'egress' }, dir, new Cancellation());
  const none = await s.runtime.create('none-1', fn(), dir, new Cancellation());
  const connect = async (address: string, host: string, port: number): Promise<{ ok: boolean; data?: string; code?: string }> =>
    await (await fetch(`http://${address}/connect?host=${host}&port=${port}`)).json() as { ok: boolean; data?: string; code?: string };

  assert.deepEqual(await connect(egress.address, outside.address, outside.port), { ok: true, data: `seen ${outside.hostSide}` },
    'an egress sandbox connects out, seen at the host\'s address');
  const blocked = await connect(none.address, outside.address, outside.port);
  assert.equal(blocked.ok, false, 'a "none" sandbox cannot connect out');
  assert.equal((await connect(egress.address, s.bridgeIp, bridgePort)).ok, false, 'an egress sandbox still cannot reach the host');
  const other = none.address.split(':')[0] ?? '';
  assert.equal((await connect(egress.address, other, 8080)).ok, false, 'nor another sandbox');
  // What the data plane does still works for both.
  assert.equal((await (await fetch(`http://${egress.address}/`)).json() as { hello: string }).hello, 'probe');
  await s.runtime.delete('egress-1');
  await s.runtime.delete('none-1');
});

test('the pids limit holds', async (t) => {
  const s = await setup(t);
  const started = await s.runtime.create('pids-1', fn({ maxPids: 24 }), await probeImage(), new Cancellation());
  const result = await (await fetch(`http://${started.address}/pids?max=40`)).json() as { spawned: number; refusal: string | null };
  assert.equal(result.refusal, 'EAGAIN', `spawning stopped at the limit (spawned ${result.spawned})`);
  assert.ok(result.spawned < 24);
  await s.runtime.delete('pids-1');
});

test('a sandbox that allocates past memoryMiB is OOM-killed and reported with reason oom', async (t) => {
  const s = await setup(t);
  const started = await s.runtime.create('oom-1', fn({ memoryMiB: 96 }), await probeImage(), new Cancellation());
  await fetch(`http://${started.address}/oom`).catch(() => undefined);
  await waitFor(() => s.exits.length > 0, { timeoutMs: 15_000 });
  assert.equal(s.exits[0]?.sandboxId, 'oom-1');
  assert.equal(s.exits[0]?.reason, 'oom');
  assert.equal(s.exits[0]?.signal, 'SIGKILL');
  await waitFor(async () => (await hostObjects(s)).cgroups.length === 0, { timeoutMs: 10_000 });
});

test('200 milli-CPU gives about a fifth of a core (from the sandbox cgroup\'s CPU usage)', async (t) => {
  const s = await setup(t);
  const started = await s.runtime.create('cpu-1', fn({ cpuMilli: 200 }), await probeImage(), new Cancellation());
  const before = await s.runtime.host.cgroups.cpuUsageUs('cpu-1');
  const spinMs = 3000;
  await (await fetch(`http://${started.address}/spin?ms=${spinMs}`)).json();
  const used = (await s.runtime.host.cgroups.cpuUsageUs('cpu-1')) - before;
  const share = used / (spinMs * 1000);
  assert.ok(share > 0.1 && share < 0.3, `CPU share ${share.toFixed(3)} of a core, expected about 0.2`);
  await s.runtime.delete('cpu-1');
});

test('delete leaves no container, cgroup or extra namespace; close leaves nothing at all', async (t) => {
  const s = await setup(t);
  const dir = await probeImage();
  const before = await hostObjects(s);
  await s.runtime.create('gone-1', fn(), dir, new Cancellation());
  await s.runtime.create('gone-2', fn(), dir, new Cancellation());
  const during = await hostObjects(s);
  assert.equal(during.containers.length, 2);
  assert.equal(during.cgroups.length, 2);
  await s.runtime.delete('gone-1');
  await s.runtime.delete('gone-2');
  const after = await hostObjects(s);
  assert.deepEqual(after.containers, []);
  assert.deepEqual(after.cgroups, []);
  assert.ok(after.netns.length <= 2, `only the pool's namespaces stay: ${after.netns}`);
  assert.ok(before.links.includes(`bt${s.tag}`));
  await s.runtime.close();
  assert.deepEqual(await hostObjects(s), { containers: [], cgroups: [], netns: [], links: [], mounts: [] });
  assert.equal(existsSync(path.join(s.dataDir, 'containers', 'gone-1')), false, 'no bundle stays');
});

test('a restart after a crash removes every container, cgroup, namespace and veth the previous run left', async (t) => {
  const s = await setup(t);
  const dir = await probeImage();
  await s.runtime.create('crash-1', fn(), dir, new Cancellation());
  const left = await hostObjects(s);
  await s.runtime.close({ keepSandboxes: true });
  assert.equal(left.containers.length, 1);
  const restarted = s.make();
  assert.equal(await restarted.cleanupLeftovers(), 1);
  assert.deepEqual(await hostObjects(s), { containers: [], cgroups: [], netns: [], links: [], mounts: [] });
  await restarted.start();
  const again = await restarted.create('crash-2', fn(), dir, new Cancellation());
  assert.equal((await fetch(`http://${again.address}/`)).status, 200);
  await restarted.close();
  assert.deepEqual(await hostObjects(s), { containers: [], cgroups: [], netns: [], links: [], mounts: [] });
});

test('after everything, the work directory goes', async () => {
  await rm(workRoot, { recursive: true, force: true });
});
