import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { controlPlaneConfigSchema } from '../controlplane/config.ts';
import { startControlPlane } from '../controlplane/main.ts';
import { dataplaneConfigKeysSchema, deriveDataplaneConfig } from '../dataplane/config.ts';
import { startDataplane } from '../dataplane/main.ts';
import { workerConfigSchema } from '../worker/config.ts';
import { startWorker } from '../worker/main.ts';
import { generateToken, tokenId } from '../api/tokens.ts';
import { BatonClient } from './client.ts';
import { writeClientConfig } from './client-config.ts';
import { deployPlan } from './commands/deploy.ts';
import { loadManifest } from './manifest.ts';
import { BatonError } from '../core/errors.ts';
import { loadConfig } from './load-config.ts';
import { Supervisor } from './supervisor.ts';
import { renderHaproxyConfig } from './haproxy-config.ts';
import { SystemClock } from '../core/clock.ts';
import { MIN_JOIN_SECRET_LENGTH, newJoinSecret } from '../transport/internal-auth.ts';
import { certFilesIn, certsInit, type CertFiles, type CertRole } from '../core/certs.ts';
import { Agent, request } from 'undici';

/**
 * The daemon commands: `baton controlplane|dataplane|worker [--config FILE] [--key value]…` run
 * one daemon in the foreground; `baton up` runs a whole local cluster, one process per daemon.
 */
export async function runDaemonCommand(command: string, argv: string[]): Promise<number> {
  switch (command) {
    case 'controlplane':
      return runDaemon(argv, async (flags, file) => {
        const config = loadConfig(controlPlaneConfigSchema, { ...file, env: process.env, envPrefix: 'BATON_CONTROLPLANE_', flags });
        return startControlPlane(config);
      });
    case 'dataplane':
      return runDaemon(argv, async (flags, file) => {
        const config = deriveDataplaneConfig(loadConfig(dataplaneConfigKeysSchema, { ...file, env: process.env, envPrefix: 'BATON_DATAPLANE_', flags }));
        return startDataplane(config);
      });
    case 'worker':
      return runDaemon(argv, async (flags, file) => {
        const config = loadConfig(workerConfigSchema, { ...file, env: process.env, envPrefix: 'BATON_WORKER_', flags });
        return startWorker(config);
      });
    case 'up':
      return runUp(argv);
    default:
      throw new BatonError('ERR_INVALID_REQUEST', `unknown daemon command '${command}'`);
  }
}

type Flags = Record<string, string | boolean | undefined>;

/** Splits `--key value`, `--key=value` and bare `--flag` (true) into a record; `--config` is taken out. */
export function parseDaemonFlags(argv: readonly string[]): { flags: Flags; config: string | undefined } {
  const flags: Flags = {};
  let config: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (!arg.startsWith('--')) throw new BatonError('ERR_INVALID_CONFIG', `unexpected argument '${arg}' (flags are --key value)`);
    const eq = arg.indexOf('=');
    const key = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    let value: string | boolean;
    if (eq !== -1) value = arg.slice(eq + 1);
    else if (i + 1 < argv.length && !(argv[i + 1] as string).startsWith('--')) value = argv[++i] as string;
    else value = true;
    if (key === 'config') config = String(value);
    else flags[key] = value;
  }
  return { flags, config };
}

async function runDaemon(
  argv: string[],
  start: (flags: Flags, file: { file?: string }) => Promise<{ close(): Promise<void> }>,
): Promise<number> {
  const { flags, config } = parseDaemonFlags(argv);
  const daemon = await start(flags, config === undefined ? {} : { file: config });
  const signal = await new Promise<string>((resolveSignal) => {
    process.once('SIGINT', () => resolveSignal('SIGINT'));
    process.once('SIGTERM', () => resolveSignal('SIGTERM'));
  });
  const force = setTimeout(() => process.exit(1), 15_000);
  force.unref();
  await daemon.close();
  process.stderr.write(`stopped on ${signal}\n`);
  return 0;
}

const HELLO_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../examples/hello');

/** `baton up` as its flags ask. */
export interface UpOptions {
  readonly dataDir: string;
  readonly offset: number;
  readonly logLevel: string;
  /** Workers: one process-runtime worker, one offering process and container, or N emulated ones in one worker process. */
  readonly runtime: 'process' | 'container' | 'emulated';
  readonly workers: number;
  /** Control planes: one leads, the others follow (more than one needs `store: redis`). */
  readonly controlPlanes: number;
  /** Data planes; more than one are put behind HAProxy. */
  readonly dataPlanes: number;
  /** `file` (embedded) or `redis` (a redis-server started by `baton up`). */
  readonly store: 'file' | 'redis';
  /** TLS on every port and mutual TLS between the planes, with certificates `baton certs init` makes in `<dataDir>/certs` on the first start. */
  readonly isTls: boolean;
}

const UP_FLAGS = ['data-dir', 'port-offset', 'log-level', 'runtime', 'workers', 'control-planes', 'data-planes', 'store', 'tls'];

/** @throws BatonError ERR_INVALID_CONFIG naming the flag */
export function parseUpFlags(argv: readonly string[]): UpOptions {
  const { flags } = parseDaemonFlags(argv);
  for (const key of Object.keys(flags)) {
    if (!UP_FLAGS.includes(key)) throw new BatonError('ERR_INVALID_CONFIG', `unknown flag '--${key}' for 'baton up' (allowed: ${UP_FLAGS.map((f) => `--${f}`).join(', ')})`);
  }
  const offset = Number(flags['port-offset'] ?? 0);
  if (!Number.isInteger(offset) || offset < 0 || offset > 50_000) throw new BatonError('ERR_INVALID_CONFIG', `--port-offset must be an integer in [0, 50000], got '${flags['port-offset']}'`);
  const runtime = String(flags['runtime'] ?? 'process');
  if (runtime !== 'process' && runtime !== 'container' && runtime !== 'emulated') {
    throw new BatonError('ERR_INVALID_CONFIG', `--runtime must be process, container or emulated, got '${runtime}'`);
  }
  const workers = Number(flags['workers'] ?? 1);
  if (!Number.isInteger(workers) || workers < 1 || workers > 10_000) throw new BatonError('ERR_INVALID_CONFIG', `--workers must be an integer in [1, 10000], got '${flags['workers']}'`);
  if (runtime !== 'emulated' && workers > 1) {
    throw new BatonError('ERR_INVALID_CONFIG', '--workers above 1 needs --runtime emulated (process-runtime workers on one machine would offer its capacity several times)');
  }
  const controlPlanes = Number(flags['control-planes'] ?? 1);
  if (!Number.isInteger(controlPlanes) || controlPlanes < 1 || controlPlanes > 5) throw new BatonError('ERR_INVALID_CONFIG', `--control-planes must be an integer in [1, 5], got '${flags['control-planes']}'`);
  const dataPlanes = Number(flags['data-planes'] ?? 1);
  if (!Number.isInteger(dataPlanes) || dataPlanes < 1 || dataPlanes > 8) throw new BatonError('ERR_INVALID_CONFIG', `--data-planes must be an integer in [1, 8], got '${flags['data-planes']}'`);
  const store = String(flags['store'] ?? 'file');
  if (store !== 'file' && store !== 'redis') throw new BatonError('ERR_INVALID_CONFIG', `--store must be file or redis, got '${store}'`);
  if (controlPlanes > 1 && store !== 'redis') {
    throw new BatonError('ERR_INVALID_CONFIG', '--control-planes above 1 needs --store redis (the control planes share the store and the leader lease in it)');
  }
  const tls = flags['tls'] ?? false;
  if (tls !== true && tls !== false && tls !== 'true' && tls !== 'false') throw new BatonError('ERR_INVALID_CONFIG', `--tls takes no value, got '${String(tls)}'`);
  const isTls = tls === true || tls === 'true';
  return { dataDir: resolve(String(flags['data-dir'] ?? './.baton')), offset, logLevel: String(flags['log-level'] ?? 'warn'), runtime, workers, controlPlanes, dataPlanes, store, isTls };
}

/**
 * Where `baton up` puts each daemon, from `--port-offset` o: control plane i on 9090 + o + 10·i
 * (Dirigent registration one above), data plane j on 8080 + o + 10·j (internal API one above), the
 * worker on 10010 + o, Redis on 6390 + o, HAProxy (several data planes) on 8000 + o.
 */
export function upPorts(o: Pick<UpOptions, 'offset' | 'controlPlanes' | 'dataPlanes'>): {
  controlPlanes: { port: number; registrationPort: number }[]; dataPlanes: { port: number; internalPort: number }[]; worker: number; redis: number; haproxy: number;
} {
  return {
    controlPlanes: Array.from({ length: o.controlPlanes }, (_, i) => ({ port: 9090 + o.offset + 10 * i, registrationPort: 9091 + o.offset + 10 * i })),
    dataPlanes: Array.from({ length: o.dataPlanes }, (_, j) => ({ port: 8080 + o.offset + 10 * j, internalPort: 8081 + o.offset + 10 * j })),
    worker: 10010 + o.offset, redis: 6390 + o.offset, haproxy: 8000 + o.offset,
  };
}

/** The path of an executable on PATH (or in /usr/sbin, where Debian puts haproxy), or undefined. */
function findExecutable(name: string): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(':').filter(Boolean), '/usr/sbin', '/usr/bin'];
  for (const dir of dirs) {
    const file = join(dir, name);
    if (existsSync(file)) return file;
  }
  return undefined;
}

/** @throws BatonError ERR_PREREQUISITE_MISSING naming the Debian package */
function requireExecutable(name: string, debianPackage: string, why: string): string {
  const file = findExecutable(name);
  if (file === undefined) {
    throw new BatonError('ERR_PREREQUISITE_MISSING', `${why} needs ${name}, which is not installed: sudo apt-get install ${debianPackage}`);
  }
  return file;
}

/**
 * `baton up`: control plane, data plane and the workers as child processes, then deploys `hello`
 * (examples/hello with the process runtime; an emulated function with the emulated one). The
 * daemons are supervised: one that dies is restarted with back-off (see `Supervisor`) while the
 * others keep serving; Ctrl-C (or SIGTERM) stops them all.
 */
async function runUp(argv: string[]): Promise<number> {
  const options = parseUpFlags(argv);
  const { dataDir, offset, logLevel, runtime, workers, controlPlanes, dataPlanes, store, isTls } = options;
  const scheme = isTls ? 'https' : 'http';
  const ports = upPorts(options);
  // Checked before anything starts: a missing tool is one clear message, not a half-started cluster.
  const redisServer = store === 'redis' ? requireExecutable('redis-server', 'redis-server', '--store redis') : undefined;
  const haproxy = dataPlanes > 1 ? requireExecutable('haproxy', 'haproxy', '--data-planes above 1') : undefined;
  const cpUrls = ports.controlPlanes.map((p) => `${scheme}://127.0.0.1:${p.port}`);
  const cpUrl = cpUrls[0] as string;
  // The admin token: made on the first start, kept in the data dir across restarts; every control
  // plane registers it when it leads, and the CLI finds it in its client config.
  await mkdir(dataDir, { recursive: true });
  const adminTokenFile = join(dataDir, 'admin-token');
  const adminToken = await ensureAdminToken(adminTokenFile);
  const certs = isTls ? await ensureCerts(join(dataDir, 'certs')) : undefined;
  const tlsFlag = (role: CertRole): string[] => (certs === undefined ? [] : [
    '--tls-cert-file', certs.roles[role].cert, '--tls-key-file', certs.roles[role].key, '--tls-ca-file', certs.caCert,
  ]);
  // Start-up health checks: over TLS with the control plane's certificate (the worker's and the data plane's internal ports want one).
  const probe = certs === undefined ? undefined : new Agent({
    connect: { ca: await readFile(certs.caCert), cert: await readFile(certs.roles.controlplane.cert), key: await readFile(certs.roles.controlplane.key) },
  });
  const ca = certs?.caCert;
  const redisUrl = `redis://127.0.0.1:${ports.redis}`;
  const supervisor = new Supervisor({
    clock: new SystemClock({ holdsProcess: true }),
    report: (line) => process.stderr.write(`baton up: ${line}\n`),
  });
  const first: ChildProcess[] = [];
  const supervise = (name: string, start: () => ChildProcess): void => {
    first.push(supervisor.add(name, start) as ChildProcess);
  };
  const stopped = new Promise<string>((resolveStop) => {
    process.once('SIGINT', () => resolveStop('SIGINT'));
    process.once('SIGTERM', () => resolveStop('SIGTERM'));
  });
  // Every worker and data plane is given every control plane: they follow the leader.
  const cpFlag = controlPlanes === 1 ? ['--control-plane-url', cpUrl] : ['--control-plane-urls', JSON.stringify(cpUrls)];
  // Every daemon joins with the cluster's secret; its file's path is on their command lines, never the secret.
  const secretFlag = ['--join-secret-file', await ensureJoinSecret(dataDir)];
  try {
    if (redisServer !== undefined) {
      await mkdir(join(dataDir, 'redis'), { recursive: true });
      // Append-only, fsync'ed on every write: an acknowledged registration survives a crash of Redis too.
      supervise('redis', () => spawn(redisServer, [
        '--port', String(ports.redis), '--bind', '127.0.0.1', '--dir', join(dataDir, 'redis'), '--save', '',
        '--appendonly', 'yes', '--appendfsync', 'always', '--daemonize', 'no', '--protected-mode', 'yes', '--loglevel', 'warning',
      ], { stdio: ['ignore', 'inherit', 'inherit'] }));
      await waitListening(ports.redis, first);
    }
    ports.controlPlanes.forEach((p, i) => {
      const name = controlPlanes === 1 ? 'controlplane' : `controlplane-${i}`;
      const args = ['--port', String(p.port), '--registration-port', String(p.registrationPort), '--data-dir', join(dataDir, controlPlanes === 1 ? 'controlplane' : name), '--log-level', logLevel, '--admin-token-file', adminTokenFile, ...secretFlag, ...tlsFlag('controlplane')];
      if (store === 'redis') args.push('--store', 'redis', '--redis-url', redisUrl);
      supervise(name, () => spawnDaemon('controlplane', args));
    });
    for (const url of cpUrls) await waitHealthy(`${url}/healthz`, first, probe);
    const workerArgs = ['--port', String(ports.worker), '--data-dir', join(dataDir, 'worker'), ...cpFlag, '--log-level', logLevel, ...secretFlag, ...tlsFlag('worker')];
    if (runtime === 'emulated') workerArgs.push('--runtime', 'emulated', '--emulate', String(workers === 1 ? 0 : workers));
    if (runtime === 'container') workerArgs.push('--runtimes', '["process","container"]');
    supervise('worker', () => spawnDaemon('worker', workerArgs));
    ports.dataPlanes.forEach((p, j) => {
      const name = dataPlanes === 1 ? 'dataplane' : `dataplane-${j}`;
      const args = ['--port', String(p.port), '--internal-port', String(p.internalPort), '--data-dir', join(dataDir, name), ...cpFlag, '--log-level', logLevel, ...secretFlag, ...tlsFlag('dataplane')];
      if (dataPlanes > 1) args.push('--dataplane-id', name);
      supervise(name, () => spawnDaemon('dataplane', args));
    });
    await waitHealthy(`${scheme}://127.0.0.1:${ports.worker}/healthz`, first, probe);
    for (const p of ports.dataPlanes) await waitHealthy(`${scheme}://127.0.0.1:${p.internalPort}/healthz`, first, probe);
    if (haproxy !== undefined) {
      const file = join(dataDir, 'haproxy.cfg');
      // With TLS, HAProxy serves HTTPS with the data planes' certificate (and key, in one PEM, as it wants them) and calls them over HTTPS.
      const tls = certs === undefined ? undefined : { certFile: await haproxyPem(certs), caFile: certs.caCert, verifyHost: 'localhost' };
      await writeFile(file, renderHaproxyConfig({ bind: `127.0.0.1:${ports.haproxy}`, dataplanes: ports.dataPlanes.map((p) => `127.0.0.1:${p.port}`), ...(tls === undefined ? {} : { tls }) }));
      supervise('haproxy', () => spawn(haproxy, ['-db', '-f', file], { stdio: ['ignore', 'inherit', 'inherit'] }));
      await waitListening(ports.haproxy, first);
    }
    if (runtime === 'process') await deployHello(cpUrl, adminToken, ca);
    else if (runtime === 'container') await deployContainerHello(cpUrl, adminToken, ca);
    else await deployEmulatedHello(cpUrl, adminToken, ca);
  } catch (err) {
    await supervisor.stop();
    throw err;
  } finally {
    await probe?.close();
  }
  const entryUrl = `${scheme}://127.0.0.1:${haproxy === undefined ? ports.dataPlanes[0]?.port : ports.haproxy}`;
  // Without TLS the client config has no `ca` (one a `--tls` run left is dropped).
  const clientConfig = await writeClientConfig(process.env, { url: cpUrl, dataplaneUrl: entryUrl, token: adminToken, ca });
  process.stdout.write([
    'Baton is running:',
    ...(store === 'redis' ? [`  store          ${redisUrl} (redis-server, append-only file in ${join(dataDir, 'redis')})`] : []),
    ...cpUrls.map((url, i) => `  control plane  ${url} (Dirigent registration: ${scheme}://127.0.0.1:${ports.controlPlanes[i]?.registrationPort}/registerService)`),
    ...(controlPlanes > 1 ? ['                 one leads (its /healthz says so); the others redirect management calls to it'] : []),
    ...ports.dataPlanes.map((p) => `  data plane     ${scheme}://127.0.0.1:${p.port}`),
    ...(haproxy === undefined ? [] : [`  HAProxy        ${entryUrl} (each function sticks to one data plane; a dead one is taken out)`]),
    `  worker         ${scheme}://127.0.0.1:${ports.worker}${runtime === 'emulated' ? ` (${workers} emulated worker${workers === 1 ? '' : 's'})` : ''}`,
    `  join secret    ${join(dataDir, 'join-secret')} (mode 0600; every daemon of the cluster joins with it)`,
    ...(certs === undefined ? [] : [`  TLS            CA ${certs.caCert}; the planes' certificates beside it (mutual TLS between the planes)`]),
    '',
    runtime === 'process' ? 'Deployed examples/hello as the function "hello". Try:'
      : runtime === 'container' ? 'Deployed examples/hello as the container function "hello" (an image built from this machine\'s node). Try:'
        : 'Deployed the emulated function "hello" (it waits x-baton-exec-ms, then answers). Try:',
    `  curl ${certs === undefined ? '' : `--cacert ${certs.caCert} `}${runtime === 'emulated' ? '-H "x-baton-exec-ms: 50" ' : ''}${entryUrl}/fn/hello/`,
    `  npx baton invoke hello${clientConfig !== undefined || (offset === 0 && haproxy === undefined) ? '' : ` --url ${cpUrl} --dataplane-url ${entryUrl}`}`,
    '',
    `The admin token is in ${adminTokenFile}${clientConfig === undefined ? ' (set BATON_TOKEN to it)' : ` and ${clientConfig}, where the CLI finds it`}.`,
    '',
    'A daemon that dies is restarted. Press Ctrl-C to stop everything.',
    '',
  ].join('\n'));
  const reason = await stopped;
  process.stderr.write(`stopping (${reason})…\n`);
  await supervisor.stop();
  return 0;
}

/**
 * `<dir>`'s CA and plane certificates (for 127.0.0.1, ::1 and localhost): made by `baton certs
 * init` on the first `baton up --tls` and reused after, so that restarted daemons and a later
 * `baton up --tls` keep trusting each other and the client config's CA stays right.
 */
async function ensureCerts(dir: string): Promise<CertFiles> {
  const files = certFilesIn(dir);
  if (existsSync(files.caCert)) return files;
  return certsInit(dir, { hosts: ['127.0.0.1', '::1', 'localhost'], days: 365 });
}

/**
 * `haproxy.pem` beside the certificates: the data planes' certificate and key in one file (mode
 * 0600), as HAProxy reads them; written on every start, from the files it is made of.
 */
async function haproxyPem(certs: CertFiles): Promise<string> {
  const file = join(dirname(certs.caCert), 'haproxy.pem');
  const pem = `${(await readFile(certs.roles.dataplane.cert, 'utf8')).trimEnd()}\n${(await readFile(certs.roles.dataplane.key, 'utf8')).trimEnd()}\n`;
  await rm(file, { force: true });
  await writeFile(file, pem, { mode: 0o600, flag: 'wx' });
  return file;
}

/**
 * `<dataDir>/join-secret`: made (random, mode 0600) on the first start and reused after, so that
 * daemons restarted on their own, or a later `baton up`, join the same cluster. Returns its path.
 */
export async function ensureJoinSecret(dataDir: string): Promise<string> {
  const file = join(dataDir, 'join-secret');
  await mkdir(dataDir, { recursive: true });
  try {
    await writeFile(file, `${newJoinSecret()}\n`, { flag: 'wx', mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const existing = (await readFile(file, 'utf8')).trim();
    if (existing.length < MIN_JOIN_SECRET_LENGTH) {
      throw new BatonError('ERR_INVALID_CONFIG', `${file} holds no usable join secret (fewer than ${MIN_JOIN_SECRET_LENGTH} characters); delete it to make a new one`);
    }
    // Readable by the cluster's owner only, whatever it was left with.
    await chmod(file, 0o600);
  }
  return file;
}

/** The token in `file`, or a new one written there (mode 0600) when there is none. */
async function ensureAdminToken(file: string): Promise<string> {
  const existing = await readFile(file, 'utf8').then((t) => t.trim(), () => undefined);
  if (existing !== undefined && tokenId(existing) !== undefined) return existing;
  if (existing !== undefined) throw new BatonError('ERR_INVALID_CONFIG', `${file} does not hold a Baton token; remove it to have a new one made`);
  const { token } = generateToken();
  await writeFile(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
  return token;
}

/** Resolves once something accepts TCP connections on the loopback port (Redis, HAProxy), within 30 s. */
async function waitListening(port: number, children: readonly ChildProcess[]): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (children.some((c) => c.exitCode !== null)) throw new BatonError('ERR_UNAVAILABLE', `a daemon exited during start-up (waiting for port ${port})`);
    const isOpen = await new Promise<boolean>((resolveOpen) => {
      const socket = connect({ port, host: '127.0.0.1' });
      socket.once('connect', () => { socket.destroy(); resolveOpen(true); });
      socket.once('error', () => resolveOpen(false));
    });
    if (isOpen) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new BatonError('ERR_TIMEOUT', `nothing listened on port ${port} within 30 s`);
}

function spawnDaemon(command: string, args: string[]): ChildProcess {
  const entry = process.argv[1] as string;
  const child = spawn(process.execPath, [...process.execArgv, entry, command, ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
  return child;
}

async function waitHealthy(url: string, children: readonly ChildProcess[], dispatcher?: Agent): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (children.some((c) => c.exitCode !== null)) throw new BatonError('ERR_UNAVAILABLE', `a daemon exited during start-up (waiting for ${url})`);
    try {
      if (dispatcher === undefined) {
        const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
        if (res.ok) return;
      } else {
        const res = await request(url, { dispatcher, signal: AbortSignal.timeout(1000) });
        await res.body.dump();
        if (res.statusCode === 200) return;
      }
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new BatonError('ERR_TIMEOUT', `${url} did not become healthy within 30 s`);
}

/** Creates (or replaces) an emulated function named `hello`: no code to upload. */
async function deployEmulatedHello(cpUrl: string, token: string, ca: string | undefined): Promise<void> {
  const client = new BatonClient({ url: cpUrl, token, ca });
  const spec = { name: 'hello', runtime: 'emulated' } as const;
  try {
    await client.createFunction(spec).catch(async (err: unknown) => {
      if (!(err instanceof BatonError) || err.code !== 'ERR_FUNCTION_EXISTS') throw err;
      await client.updateFunction(spec.name, spec);
    });
  } finally {
    await client.close();
  }
}

/** examples/hello as a container function: an image built here (base node), then deployed. */
async function deployContainerHello(cpUrl: string, token: string, ca: string | undefined): Promise<void> {
  const plan = await loadManifest(join(HELLO_DIR, 'baton.yaml'));
  const { buildImage } = await import('./image/image-builder.ts');
  const image = join(tmpdir(), `baton-hello-${process.pid}.tar.gz`);
  await writeFile(image, await buildImage({ dir: plan.dir ?? HELLO_DIR, base: 'node', handler: 'index.handler' }));
  const client = new BatonClient({ url: cpUrl, token, ca });
  try {
    await deployPlan(client, { spec: { ...plan.spec, runtime: 'container' }, image });
  } finally {
    client.close();
    await rm(image, { force: true });
  }
}

async function deployHello(cpUrl: string, token: string, ca: string | undefined): Promise<void> {
  const plan = await loadManifest(join(HELLO_DIR, 'baton.yaml'));
  const client = new BatonClient({ url: cpUrl, token, ca });
  try {
    await deployPlan(client, { spec: plan.spec, dir: plan.dir ?? HELLO_DIR });
  } finally {
    client.close();
  }
}
