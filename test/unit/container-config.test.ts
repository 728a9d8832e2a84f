import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import type { SandboxFunction } from '../../src/api/worker.ts';
import { parseProcCgroup } from '../../src/worker/container/cgroups.ts';
import { parseImageConfig } from '../../src/worker/container/image-store.ts';
import { parseSubnet } from '../../src/worker/container/network-pool.ts';
import { userNamespaceBlocker } from '../../src/worker/container/container-runtime.ts';
import { buildOciConfig, DENIED_SYSCALLS, processArgs, resolveUser } from '../../src/worker/container/oci-config.ts';

const image = parseImageConfig(JSON.stringify({ config: {
  Entrypoint: ['/bin/app'], Cmd: ['--serve'], Env: ['PATH=/opt/bin', 'A=image', 'B=image'], WorkingDir: '/srv', User: 'app', ExposedPorts: { '9000/tcp': {}, '53/udp': {} },
} }));

function fn(code: Partial<Pick<SandboxFunction, 'handler' | 'command'>> = {}): SandboxFunction {
  return {
    name: 'f', generation: 2, runtime: 'container', concurrency: 1, timeoutMs: 1000, env: { B: 'spec', C: 'spec' },
    resources: { cpuMilli: 250, memoryMiB: 64, maxPids: 32 }, ...code,
  };
}

const assignment = {
  sandboxId: 's-1', rootfs: '/images/abc/rootfs', uid: 64_000, gid: 64_000, port: 9000, netnsPath: '/var/run/netns/n',
  cgroupsPath: '/w/baton-t/s-1/c', runnerDir: '/data/runner', tmpMiB: 16,
};

test('the image config is read: ports in order, udp ignored, WorkingDir and User kept', () => {
  assert.deepEqual(image.exposedPorts, [9000]);
  assert.equal(image.workingDir, '/srv');
  assert.equal(image.user, 'app');
  assert.deepEqual(parseImageConfig('{"config":null}'), { entrypoint: [], cmd: [], env: [], workingDir: '/', user: '', exposedPorts: [] });
  assert.throws(() => parseImageConfig('not json'), { code: 'ERR_INVALID_ARTIFACT' });
});

test('the spec overrides the image: command > handler > Entrypoint + Cmd', () => {
  assert.deepEqual(processArgs(image, fn()), ['/bin/app', '--serve']);
  assert.deepEqual(processArgs(image, fn({ handler: 'index.handler' })), ['node', '/baton/handler-runner.cjs']);
  assert.deepEqual(processArgs(image, fn({ command: ['./serve', '-v'] })), ['./serve', '-v']);
});

test('the environment is the image\'s, then the spec\'s, then Baton\'s', () => {
  const config = buildOciConfig(image, fn({ handler: 'index.handler' }), assignment) as { process: { env: string[]; cwd: string } };
  const env = new Map(config.process.env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
  assert.equal(env.get('PATH'), '/opt/bin');
  assert.equal(env.get('A'), 'image');
  assert.equal(env.get('B'), 'spec');
  assert.equal(env.get('PORT'), '9000');
  assert.equal(env.get('BATON_HANDLER'), 'index.handler');
  assert.equal(env.get('HOME'), '/tmp');
  assert.equal(config.process.cwd, '/srv');
});

test('the OCI config is locked down: read-only root, no new privileges, namespaces, seccomp, limits on the cgroup path', () => {
  const config = buildOciConfig(image, fn(), assignment) as Record<string, any>;
  assert.deepEqual(config['root'], { path: '/images/abc/rootfs', readonly: true });
  assert.equal(config['process'].noNewPrivileges, true);
  assert.equal(config['process'].user.uid, 64_000);
  assert.deepEqual(config['process'].capabilities.effective, []);
  assert.ok(!config['process'].capabilities.bounding.includes('CAP_NET_RAW'));
  assert.ok(!config['process'].capabilities.bounding.includes('CAP_SYS_ADMIN'));
  assert.deepEqual(config['linux'].namespaces.map((n: { type: string }) => n.type), ['pid', 'mount', 'ipc', 'uts', 'cgroup', 'network']);
  assert.equal(config['linux'].namespaces[5].path, '/var/run/netns/n');
  assert.equal(config['linux'].cgroupsPath, '/w/baton-t/s-1/c');
  assert.ok(config['linux'].maskedPaths.includes('/proc/kcore'));
  for (const name of ['mount', 'ptrace', 'bpf', 'unshare', 'setns', 'keyctl']) assert.ok(DENIED_SYSCALLS.includes(name), name);
  const tmp = config['mounts'].find((m: { destination: string }) => m.destination === '/tmp');
  assert.ok(tmp.options.includes('size=16m'));
  const runner = config['mounts'].find((m: { destination: string }) => m.destination === '/baton');
  assert.ok(runner.options.includes('ro'));
});

test('with an id map, a user namespace of its own maps the container\'s ids 0 to size − 1 onto host ids from hostId', () => {
  const plain = buildOciConfig(image, fn(), assignment) as Record<string, any>;
  assert.equal(plain['linux'].uidMappings, undefined);
  const mapped = buildOciConfig(image, fn(), { ...assignment, idMap: { hostId: 100_000, size: 65_536 } }) as Record<string, any>;
  assert.deepEqual(mapped['linux'].namespaces.map((n: { type: string }) => n.type), ['pid', 'mount', 'ipc', 'uts', 'cgroup', 'network', 'user']);
  assert.deepEqual(mapped['linux'].uidMappings, [{ containerID: 0, hostID: 100_000, size: 65_536 }]);
  assert.deepEqual(mapped['linux'].gidMappings, [{ containerID: 0, hostID: 100_000, size: 65_536 }]);
  assert.equal(mapped['process'].user.uid, 64_000, 'the process user is the container\'s id');
});

test('user namespaces are refused, with the fix, when a directory above the image is not searchable by others', async (t) => {
  const root = await mkdtemp(path.join(tmpdir(), 'baton-userns-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const inner = path.join(root, 'worker', 'container');
  await mkdir(inner, { recursive: true, mode: 0o755 });
  await chmod(root, 0o700);
  const why = await userNamespaceBlocker(inner);
  assert.match(why ?? '', new RegExp(`${root} is not searchable by others \\(mode 700\\).*chmod o\\+x ${root}`));
  await chmod(root, 0o711);
  assert.equal(await userNamespaceBlocker(inner), undefined);
});

test('the user is the image\'s when it is not root, else the worker\'s; never 0', () => {
  const fallback = { uid: 64_000, gid: 64_001 };
  const passwd = 'root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n';
  assert.deepEqual(resolveUser('', passwd, fallback), fallback);
  assert.deepEqual(resolveUser('app', passwd, fallback), { uid: 1000, gid: 1001 });
  assert.deepEqual(resolveUser('1234', undefined, fallback), { uid: 1234, gid: 1234 });
  assert.deepEqual(resolveUser('1234:99', undefined, fallback), { uid: 1234, gid: 99 });
  assert.deepEqual(resolveUser('root', passwd, fallback), fallback);
  assert.deepEqual(resolveUser('0:0', passwd, fallback), fallback);
  assert.deepEqual(resolveUser('ghost', passwd, fallback), fallback);
});

test('/proc/self/cgroup is read per controller, v1 and v2', () => {
  const lines = parseProcCgroup('9:name=systemd:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/grp\n0::/unified\n');
  assert.equal(lines.get('memory'), '/process_api/abc');
  assert.equal(lines.get('cpu'), '/grp');
  assert.equal(lines.get('cpuacct'), '/grp');
  assert.equal(lines.get(''), '/unified');
});

test('the container subnet is an IPv4 network with a sane prefix', () => {
  assert.deepEqual(parseSubnet('10.213.0.0/24'), { base: (10 * 256 ** 3) + (213 * 256 ** 2), prefix: 24 });
  assert.deepEqual(parseSubnet('10.213.0.77/24').base, parseSubnet('10.213.0.0/24').base);
  for (const bad of ['10.213.0.0', '10.213.0.0/31', '300.1.1.1/24', 'fd00::/64']) assert.throws(() => parseSubnet(bad), { code: 'ERR_INVALID_CONFIG' }, bad);
});

test('a missing tool is named with the command that installs it', async () => {
  const { findMissingPrerequisites, assertContainerPrerequisites } = await import('../../src/worker/container/prerequisites.ts');
  const missingCrunAndNft = (file: string): Promise<string> => (file === 'crun' || file === 'nft' ? Promise.reject(new Error('ENOENT')) : Promise.resolve(''));
  const missing = await findMissingPrerequisites(missingCrunAndNft, 'crun');
  assert.ok(missing.some((m) => m.what === 'crun is not installed' && m.fix === 'apt-get install -y crun'), JSON.stringify(missing));
  assert.ok(missing.some((m) => m.fix === 'apt-get install -y nftables'));
  assert.ok(!missing.some((m) => m.what.startsWith('ip ')));
  await assert.rejects(assertContainerPrerequisites(missingCrunAndNft, 'crun'), { code: 'ERR_PREREQUISITE_MISSING', message: /apt-get install -y crun/ });
  const runcMissing = await findMissingPrerequisites((file) => (file === 'runc' ? Promise.reject(new Error('ENOENT')) : Promise.resolve('')), 'runc');
  assert.ok(runcMissing.some((m) => m.fix === 'apt-get install -y runc'));
});

test('worker config: runtimes offers process and container together, never with emulate or runtime', async () => {
  const { parseWorkerConfig, workerRuntimesOf } = await import('../../src/worker/config.ts');
  assert.deepEqual(workerRuntimesOf(parseWorkerConfig({ runtimes: ['process', 'container'] })), ['process', 'container']);
  assert.deepEqual(workerRuntimesOf(parseWorkerConfig({ runtime: 'container' })), ['container']);
  assert.deepEqual(workerRuntimesOf(parseWorkerConfig({})), ['process']);
  assert.throws(() => parseWorkerConfig({ runtimes: ['process', 'container'], emulate: 2 }), { code: 'ERR_INVALID_CONFIG', message: /runtimes/ });
  assert.throws(() => parseWorkerConfig({ runtimes: ['process', 'process'] }), { code: 'ERR_INVALID_CONFIG', message: /runtimes/ });
  assert.throws(() => parseWorkerConfig({ runtimes: ['emulated'] }), { code: 'ERR_INVALID_CONFIG', message: /runtimes/ });
  assert.throws(() => parseWorkerConfig({ containerUid: 0 }), { code: 'ERR_INVALID_CONFIG', message: /containerUid/ });
});
