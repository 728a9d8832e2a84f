import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import type { RegisterDataplaneRequest, RoutingUpdate } from '../../src/api/dataplane.ts';

/**
 * The processes the proxy benchmark compares: the `hello` function process (the real handler
 * runner), Baton's data plane as a child process with a fake control plane feeding it routing,
 * and HAProxy. Each has a `stop()` that is safe to call twice.
 */

export const REPO_ROOT = resolve(import.meta.dirname, '../..');
const RUNNER = join(REPO_ROOT, 'src/worker/process/handler-runner.js');
const HELLO_DIR = join(REPO_ROOT, 'examples/hello');
const TRACE_FUNCTION_DIR = join(REPO_ROOT, 'examples/trace-function');
const HOST = '127.0.0.1';

export interface Stoppable {
  stop(): Promise<void>;
}

/** A started process: its pid for CPU accounting. */
export interface Running extends Stoppable {
  readonly pid: number;
}

/** A free port on loopback, found by binding port 0 and releasing it. */
export function pickFreePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createNetServer();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolvePort(port));
    });
  });
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
export async function stopChild(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Keeps the last `maxChars` of a stream, for error messages. */
function tail(stream: Readable | null, maxChars = 4_000): () => string {
  let text = '';
  stream?.setEncoding('utf8').on('data', (s: string) => { text = (text + s).slice(-maxChars); });
  return () => text;
}

export interface Upstream extends Running {
  readonly address: string;
}

/**
 * examples/hello under the real handler runner, started as the worker starts a sandbox: bare
 * `node`, the artifact directory as cwd, a clean explicit environment, readiness on fd 3.
 */
export async function startUpstream(scratchDir: string, signal: AbortSignal): Promise<Upstream> {
  const port = await pickFreePort();
  const env = {
    PATH: '/usr/local/bin:/usr/bin:/bin', HOME: scratchDir, TMPDIR: scratchDir, PORT: String(port), BATON_HOST: HOST,
    BATON_FUNCTION: 'hello', BATON_SANDBOX_ID: 'hello-bench-1', BATON_GENERATION: '1', BATON_TIMEOUT_MS: '30000',
    BATON_MEMORY_MIB: '256', BATON_HANDLER: 'index.handler',
  };
  const child = spawn(process.execPath, [RUNNER], { cwd: HELLO_DIR, env, stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
  const stderr = tail(child.stderr);
  const ready = child.stdio[3] as Readable;
  await Promise.race([
    new Promise<void>((ok) => ready.once('data', () => ok())),
    once(child, 'exit').then(() => { throw new Error(`the hello function process exited: ${stderr()}`); }),
    rejectAfter(10_000, 'the hello function process did not become ready', signal),
  ]);
  return { address: `${HOST}:${port}`, pid: child.pid as number, stop: () => stopChild(child) };
}

/**
 * examples/trace-function as a sandbox process (HTTP/1.1 and h2c on one port), for the h2c
 * comparison: the same process behind an http1 and an h2c function. Asked with `workload: empty`,
 * it answers at once.
 */
export async function startTraceUpstream(scratchDir: string, signal: AbortSignal): Promise<Upstream> {
  const port = await pickFreePort();
  const env = { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: scratchDir, TMPDIR: scratchDir, PORT: String(port), HOST };
  const child = spawn(process.execPath, ['server.js'], { cwd: TRACE_FUNCTION_DIR, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr = tail(child.stderr);
  await Promise.race([
    new Promise<void>((ok) => child.stdout?.once('data', () => ok())),
    once(child, 'exit').then(() => { throw new Error(`the trace function process exited: ${stderr()}`); }),
    rejectAfter(10_000, 'the trace function process did not start', signal),
  ]);
  child.stdout?.resume();
  return { address: `${HOST}:${port}`, pid: child.pid as number, stop: () => stopChild(child) };
}

/** Functions routed besides `hello`: each with one endpoint at `address`. */
export interface ExtraFunction {
  readonly name: string;
  readonly protocol: 'http1' | 'h2c';
  readonly address: string;
}

export interface FakeControlPlane extends Stoppable {
  readonly url: string;
  /** Resolves with a data plane's registration once it has registered and received the routing snapshot. */
  routed(dataplaneId: string): Promise<RegisterDataplaneRequest>;
}

/**
 * Just enough control plane for the benchmark's data planes: accepts register, heartbeat and
 * demand, and after each registration pushes a routing snapshot with the function `hello`
 * (concurrency `concurrency` per sandbox, so 50 connections never queue) and one endpoint, the
 * upstream.
 */
export async function startFakeControlPlane(upstreamAddress: string, concurrency: number, extra: readonly ExtraFunction[] = []): Promise<FakeControlPlane> {
  const waiting = new Map<string, { promise: Promise<RegisterDataplaneRequest>; ok: (r: RegisterDataplaneRequest) => void; fail: (err: Error) => void }>();
  const entry = (id: string) => {
    let found = waiting.get(id);
    if (found === undefined) {
      let ok: (r: RegisterDataplaneRequest) => void = () => undefined;
      let fail: (err: Error) => void = () => undefined;
      const promise = new Promise<RegisterDataplaneRequest>((resolveRouted, rejectRouted) => { ok = resolveRouted; fail = rejectRouted; });
      promise.catch(() => undefined);
      found = { promise, ok, fail };
      waiting.set(id, found);
    }
    return found;
  };
  let version = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      if (req.url !== '/internal/v1/dataplanes/register') return;
      const registration = JSON.parse(Buffer.concat(chunks).toString('utf8')) as RegisterDataplaneRequest;
      const snapshot: RoutingUpdate = {
        kind: 'snapshot', epoch: 'bench', version: ++version,
        functions: [
          { name: 'hello', generation: 1, concurrency, timeoutMs: 30_000 },
          ...extra.map((f) => ({ name: f.name, generation: 1, concurrency, timeoutMs: 30_000, ...(f.protocol === 'h2c' ? { protocol: 'h2c' as const } : {}) })),
        ],
        endpoints: [
          { sandboxId: 'hello-bench-1', function: 'hello', address: upstreamAddress, isDraining: false },
          ...extra.map((f) => ({ sandboxId: `${f.name}-bench-1`, function: f.name, address: f.address, isDraining: false })),
        ],
      };
      const { ok, fail } = entry(registration.dataplaneId);
      postJson(`${registration.url}/internal/v1/routing`, snapshot).then(() => ok(registration), fail);
    });
  });
  server.listen(0, HOST);
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${HOST}:${port}`,
    routed: (dataplaneId) => entry(dataplaneId).promise,
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((ok) => server.close(() => ok()));
    },
  };
}

export interface DataplaneProcess extends Running {
  /** Base URL of the invocation server. */
  readonly proxyUrl: string;
}

export interface DataplaneProcessOptions {
  readonly dataplaneId: string;
  /** Extra Node flags, e.g. `--cpu-prof`. */
  readonly nodeFlags: readonly string[];
  /** The checkout whose `src/cli/main.ts` runs (default: this one); another one compares two versions in one run. */
  readonly root?: string;
}

/**
 * `baton dataplane` as a child process (`node --import tsx src/cli/main.ts dataplane …`).
 * Resolves once it has registered and applied the routing.
 */
export async function startDataplaneProcess(controlPlane: FakeControlPlane, options: DataplaneProcessOptions, signal: AbortSignal): Promise<DataplaneProcess> {
  const root = options.root ?? REPO_ROOT;
  const args = [...options.nodeFlags, '--import', 'tsx', join(root, 'src/cli/main.ts'), 'dataplane', '--port', '0', '--internal-port', '0',
    '--control-plane-url', controlPlane.url, '--dataplane-id', options.dataplaneId, '--log-level', 'warn'];
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  const stderr = tail(child.stderr);
  try {
    const registration = await Promise.race([
      controlPlane.routed(options.dataplaneId),
      once(child, 'exit').then((): never => { throw new Error(`the data plane exited: ${stderr()}`); }),
      rejectAfter(30_000, 'the data plane did not register', signal),
    ]);
    return { proxyUrl: registration.proxyUrl, pid: child.pid as number, stop: () => stopChild(child, 10_000) };
  } catch (err) {
    await stopChild(child);
    throw err;
  }
}

/**
 * HAProxy in front of the upstream, configured for the same work as the data plane: one thread,
 * HTTP mode, keep-alive on both sides with server connections reused, `/fn/hello/…` rewritten to
 * `/…`, and the same X-Forwarded-* headers added.
 */
export async function startHaproxy(upstreamAddress: string, scratchDir: string, signal: AbortSignal): Promise<{ url: string } & Running> {
  const port = await pickFreePort();
  const cfgPath = join(scratchDir, 'haproxy.cfg');
  await writeFile(cfgPath, [
    'global',
    '  nbthread 1',
    '  maxconn 4096',
    'defaults',
    '  mode http',
    '  option http-keep-alive',
    '  http-reuse always',
    '  timeout connect 5s',
    '  timeout client 30s',
    '  timeout server 30s',
    'frontend bench',
    `  bind ${HOST}:${port}`,
    '  option forwardfor',
    '  http-request set-header X-Forwarded-Host %[req.hdr(host)]',
    '  http-request set-header X-Forwarded-Proto http',
    '  http-request replace-path ^/fn/hello(/.*)?$ \\1',
    '  default_backend hello',
    'backend hello',
    `  server s1 ${upstreamAddress}`,
    '',
  ].join('\n'));
  const child = spawn('haproxy', ['-db', '-f', cfgPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  const stderr = tail(child.stderr);
  const url = `http://${HOST}:${port}`;
  try {
    await Promise.race([
      waitForOk(`${url}/fn/hello/`, signal),
      once(child, 'exit').then((): never => { throw new Error(`haproxy exited: ${stderr()}`); }),
      rejectAfter(10_000, 'haproxy did not answer', signal),
    ]);
  } catch (err) {
    await stopChild(child);
    throw err;
  }
  return { url, pid: child.pid as number, stop: () => stopChild(child) };
}

/** Polls `url` until it answers 200 (bounded by the caller's race). */
export async function waitForOk(url: string, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    const status = await getStatus(url).catch(() => 0);
    if (status === 200) return;
    await new Promise((ok) => setTimeout(ok, 50));
  }
}

function getStatus(url: string): Promise<number> {
  return new Promise((ok, fail) => {
    const req = request(url, { agent: false, timeout: 2_000 }, (res) => {
      res.resume();
      res.once('end', () => ok(res.statusCode ?? 0));
    });
    req.once('timeout', () => req.destroy(new Error('timeout')));
    req.once('error', fail);
    req.end();
  });
}

function postJson(url: string, body: unknown): Promise<void> {
  const data = JSON.stringify(body);
  return new Promise((ok, fail) => {
    const req = request(url, { method: 'POST', agent: false, timeout: 5_000, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
      res.resume();
      res.once('end', () => (res.statusCode === 200 ? ok() : fail(new Error(`POST ${url} answered ${res.statusCode}`))));
    });
    req.once('timeout', () => req.destroy(new Error(`POST ${url} timed out`)));
    req.once('error', fail);
    req.end(data);
  });
}

function rejectAfter(ms: number, message: string, signal: AbortSignal): Promise<never> {
  return new Promise((_, fail) => {
    const timer = setTimeout(() => fail(new Error(`${message} within ${ms} ms`)), ms);
    timer.unref();
    signal.addEventListener('abort', () => { clearTimeout(timer); fail(new Error('aborted')); }, { once: true });
  });
}
