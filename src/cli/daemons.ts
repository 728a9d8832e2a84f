import { spawn, type ChildProcess } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { controlPlaneConfigSchema } from '../controlplane/config.ts';
import { startControlPlane } from '../controlplane/main.ts';
import { dataplaneConfigKeysSchema, deriveDataplaneConfig } from '../dataplane/config.ts';
import { startDataplane } from '../dataplane/main.ts';
import { workerConfigSchema } from '../worker/config.ts';
import { startWorker } from '../worker/main.ts';
import { BatonClient } from './client.ts';
import { deployPlan } from './commands/deploy.ts';
import { loadManifest } from './manifest.ts';
import { BatonError } from '../core/errors.ts';
import { loadConfig } from './load-config.ts';
import { Supervisor } from './supervisor.ts';
import { SystemClock } from '../core/clock.ts';

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
}

const UP_FLAGS = ['data-dir', 'port-offset', 'log-level', 'runtime', 'workers'];

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
  return { dataDir: resolve(String(flags['data-dir'] ?? './.baton')), offset, logLevel: String(flags['log-level'] ?? 'warn'), runtime, workers };
}

/**
 * `baton up`: control plane, data plane and the workers as child processes, then deploys `hello`
 * (examples/hello with the process runtime; an emulated function with the emulated one). The
 * daemons are supervised: one that dies is restarted with back-off (see `Supervisor`) while the
 * others keep serving; Ctrl-C (or SIGTERM) stops them all.
 */
async function runUp(argv: string[]): Promise<number> {
  const { dataDir, offset, logLevel, runtime, workers } = parseUpFlags(argv);
  const cpPort = 9090 + offset;
  const cpUrl = `http://127.0.0.1:${cpPort}`;
  const dpPort = 8080 + offset;
  const supervisor = new Supervisor({
    clock: new SystemClock({ holdsProcess: true }),
    report: (line) => process.stderr.write(`baton up: ${line}\n`),
  });
  const first: ChildProcess[] = [];
  const supervise = (name: string, command: string, args: string[]): void => {
    first.push(supervisor.add(name, () => spawnDaemon(command, args)) as ChildProcess);
  };
  const stopped = new Promise<string>((resolveStop) => {
    process.once('SIGINT', () => resolveStop('SIGINT'));
    process.once('SIGTERM', () => resolveStop('SIGTERM'));
  });
  try {
    supervise('controlplane', 'controlplane', ['--port', String(cpPort), '--registration-port', String(9091 + offset), '--data-dir', join(dataDir, 'controlplane'), '--log-level', logLevel]);
    await waitHealthy(`${cpUrl}/healthz`, first);
    const workerArgs = ['--port', String(10010 + offset), '--data-dir', join(dataDir, 'worker'), '--control-plane-url', cpUrl, '--log-level', logLevel];
    if (runtime === 'emulated') workerArgs.push('--runtime', 'emulated', '--emulate', String(workers === 1 ? 0 : workers));
    if (runtime === 'container') workerArgs.push('--runtimes', '["process","container"]');
    supervise('worker', 'worker', workerArgs);
    supervise('dataplane', 'dataplane', ['--port', String(dpPort), '--internal-port', String(8081 + offset), '--data-dir', join(dataDir, 'dataplane'), '--control-plane-url', cpUrl, '--log-level', logLevel]);
    await waitHealthy(`http://127.0.0.1:${10010 + offset}/healthz`, first);
    await waitHealthy(`http://127.0.0.1:${8081 + offset}/healthz`, first);
    if (runtime === 'process') await deployHello(cpUrl);
    else if (runtime === 'container') await deployContainerHello(cpUrl);
    else await deployEmulatedHello(cpUrl);
  } catch (err) {
    await supervisor.stop();
    throw err;
  }
  process.stdout.write([
    'Baton is running:',
    `  control plane  ${cpUrl} (Dirigent registration: http://127.0.0.1:${9091 + offset}/registerService)`,
    `  data plane     http://127.0.0.1:${dpPort}`,
    `  worker         http://127.0.0.1:${10010 + offset}${runtime === 'emulated' ? ` (${workers} emulated worker${workers === 1 ? '' : 's'})` : ''}`,
    '',
    runtime === 'process' ? 'Deployed examples/hello as the function "hello". Try:'
      : runtime === 'container' ? 'Deployed examples/hello as the container function "hello" (an image built from this machine\'s node). Try:'
        : 'Deployed the emulated function "hello" (it waits x-baton-exec-ms, then answers). Try:',
    `  curl ${runtime === 'emulated' ? '-H "x-baton-exec-ms: 50" ' : ''}http://127.0.0.1:${dpPort}/fn/hello/`,
    `  npx baton invoke hello${offset === 0 ? '' : ` --url ${cpUrl} --dataplane-url http://127.0.0.1:${dpPort}`}`,
    '',
    'A daemon that dies is restarted. Press Ctrl-C to stop everything.',
    '',
  ].join('\n'));
  const reason = await stopped;
  process.stderr.write(`stopping (${reason})…\n`);
  await supervisor.stop();
  return 0;
}

function spawnDaemon(command: string, args: string[]): ChildProcess {
  const entry = process.argv[1] as string;
  const child = spawn(process.execPath, [...process.execArgv, entry, command, ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
  return child;
}

async function waitHealthy(url: string, children: readonly ChildProcess[]): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (children.some((c) => c.exitCode !== null)) throw new BatonError('ERR_UNAVAILABLE', `a daemon exited during start-up (waiting for ${url})`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (res.ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new BatonError('ERR_TIMEOUT', `${url} did not become healthy within 30 s`);
}

/** Creates (or replaces) an emulated function named `hello`: no code to upload. */
async function deployEmulatedHello(cpUrl: string): Promise<void> {
  const client = new BatonClient({ url: cpUrl });
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
async function deployContainerHello(cpUrl: string): Promise<void> {
  const plan = await loadManifest(join(HELLO_DIR, 'baton.yaml'));
  const { buildImage } = await import('./image/image-builder.ts');
  const image = join(tmpdir(), `baton-hello-${process.pid}.tar.gz`);
  await writeFile(image, await buildImage({ dir: plan.dir ?? HELLO_DIR, base: 'node', handler: 'index.handler' }));
  const client = new BatonClient({ url: cpUrl });
  try {
    await deployPlan(client, { spec: { ...plan.spec, runtime: 'container' }, image });
  } finally {
    client.close();
    await rm(image, { force: true });
  }
}

async function deployHello(cpUrl: string): Promise<void> {
  const plan = await loadManifest(join(HELLO_DIR, 'baton.yaml'));
  const client = new BatonClient({ url: cpUrl });
  try {
    await deployPlan(client, { spec: plan.spec, dir: plan.dir ?? HELLO_DIR });
  } finally {
    client.close();
  }
}
