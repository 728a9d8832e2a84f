import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { request } from 'undici';
import { BatonClient } from '../../src/cli/client.ts';
import { packDirectory } from '../../src/core/archive.ts';
import { parseResultsCsv } from '../../src/loadgen/invitro-csv.ts';
import { ROOT, startCluster, type Cluster } from '../kit/cluster.ts';
import { runCli } from '../kit/run-cli.ts';

/**
 * h2c and gRPC through the data plane, end to end: a control plane, a process-runtime worker and a
 * data plane as their own processes; examples/trace-function in real sandboxes, reached over
 * HTTP/1.1, h2c (prior knowledge) and gRPC (@grpc/grpc-js).
 */

const DIR = join(ROOT, 'examples/trace-function');
let cluster: Cluster;
let client: BatonClient;
let artifact: string;
let dpAddress: string;
const grpcClients: grpc.Client[] = [];
const sessions: ClientHttp2Session[] = [];

before(async () => {
  cluster = await startCluster();
  client = new BatonClient({ url: cluster.cpUrl });
  artifact = (await client.uploadArtifact(await packDirectory(DIR))).digest;
  dpAddress = new URL(cluster.dpUrl).host;
});

after(async () => {
  for (const c of grpcClients) c.close();
  for (const s of sessions) s.destroy();
  await cluster?.stop();
});

async function deploy(name: string, extra: Record<string, unknown> = {}): Promise<void> {
  await client.createFunction({ name, artifact, command: ['node', 'server.js'], protocol: 'h2c', concurrency: 4, timeoutMs: 10_000, scaling: { maxScale: 1 }, ...extra });
}

interface FaasReply { message: string; durationInMicroSec: number; memoryUsageInKb: number }
type Unary = (req: object, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, reply?: FaasReply) => void) => void;
type ExecutorClient = grpc.Client & { Execute: Unary };
type StreamerClient = grpc.Client & {
  ExecuteStream(req: object, options: grpc.CallOptions): grpc.ClientReadableStream<FaasReply>;
  Echo(options: grpc.CallOptions): grpc.ClientDuplexStream<object, FaasReply>;
};

const proto = grpc.loadPackageDefinition(protoLoader.loadSync(join(DIR, 'faas.proto'), { keepCase: true, defaults: true })) as unknown as {
  faas: {
    Executor: new (address: string, creds: grpc.ChannelCredentials, options: grpc.ChannelOptions) => ExecutorClient;
    Streamer: new (address: string, creds: grpc.ChannelCredentials, options: grpc.ChannelOptions) => StreamerClient;
  };
};

/** A gRPC channel to the data plane whose :authority names the function (how gRPC routes to one). */
function channelOptions(fn: string): grpc.ChannelOptions {
  return { 'grpc.default_authority': fn };
}

function executor(fn: string): ExecutorClient {
  const c = new proto.faas.Executor(dpAddress, grpc.credentials.createInsecure(), channelOptions(fn));
  grpcClients.push(c);
  return c;
}

function streamer(fn: string): StreamerClient {
  const c = new proto.faas.Streamer(dpAddress, grpc.credentials.createInsecure(), channelOptions(fn));
  grpcClients.push(c);
  return c;
}

function execute(c: ExecutorClient, req: object, deadlineMs: number): Promise<FaasReply> {
  return new Promise((resolve, reject) => {
    c.Execute(req, { deadline: new Date(Date.now() + deadlineMs) }, (err, reply) => (err === null && reply !== undefined ? resolve(reply) : reject(err)));
  });
}

function executeError(c: ExecutorClient, req: object, deadlineMs: number): Promise<grpc.ServiceError> {
  return execute(c, req, deadlineMs).then((reply) => assert.fail(`expected an error, got ${JSON.stringify(reply)}`), (err: grpc.ServiceError) => err);
}

function h2Session(): ClientHttp2Session {
  const s = connect(cluster.dpUrl);
  s.on('error', () => undefined);
  sessions.push(s);
  return s;
}

/** One request over h2c; resolves with the head, the body and the trailers. */
async function h2Request(session: ClientHttp2Session, headers: Record<string, string>, body?: Buffer): Promise<{ head: IncomingHttpHeaders; body: Buffer; trailers: IncomingHttpHeaders | undefined }> {
  const stream = session.request(headers, { endStream: body === undefined });
  if (body !== undefined) stream.end(body);
  let trailers: IncomingHttpHeaders | undefined;
  stream.on('trailers', (t: IncomingHttpHeaders) => { trailers = t; });
  const [head] = await once(stream, 'response') as [IncomingHttpHeaders];
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return { head, body: Buffer.concat(chunks), trailers };
}

interface HttpAnswer { Status: string; Function: string; ExecutionTime: number }

test('a gRPC function answers a @grpc/grpc-js client through the data plane, cold then warm, unary, server-streaming and bidirectional', async () => {
  await deploy('tf-grpc');
  const exec = executor('tf-grpc');
  // Cold: the call waits in the data plane's queue for the first sandbox.
  const cold = await execute(exec, { message: 'cold', runtimeInMilliSec: 5, memoryInMebiBytes: 1 }, 30_000);
  assert.match(cold.message, /^OK - /);
  assert.ok(cold.durationInMicroSec >= 5_000, `durationInMicroSec ${cold.durationInMicroSec}`);
  assert.equal(cold.memoryUsageInKb, 1024);
  const warm = await execute(exec, { message: 'warm', runtimeInMilliSec: 5, memoryInMebiBytes: 0 }, 10_000);
  assert.match(warm.message, /^OK - /);

  const call = streamer('tf-grpc').ExecuteStream({ count: 5, intervalMs: 20 }, { deadline: new Date(Date.now() + 10_000) });
  const messages: string[] = [];
  const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  for await (const reply of call) messages.push((reply as FaasReply).message);
  assert.deepEqual(messages, ['tick 0', 'tick 1', 'tick 2', 'tick 3', 'tick 4']);
  assert.equal((await status).code, grpc.status.OK);

  // Bidirectional: each reply comes back before the next request is written.
  const echo = streamer('tf-grpc').Echo({ deadline: new Date(Date.now() + 10_000) });
  const echoStatus = new Promise<grpc.StatusObject>((resolve) => echo.on('status', resolve));
  for (const count of [1, 2, 3]) {
    echo.write({ count });
    const [reply] = await once(echo, 'data') as [FaasReply];
    assert.equal(reply.message, `echo ${count}`);
  }
  echo.end();
  assert.equal((await echoStatus).code, grpc.status.OK);
});

test('Invitro\'s gRPC mode unmodified: a dirigent_grpc_function registration is served by Baton\'s trace function, called by :authority', async () => {
  // What Invitro sends to Dirigent's registration server for its gRPC function, field for field.
  const form = new URLSearchParams([
    ['name', 'invitro-grpc-1'], ['image', 'docker.io/cvetkovic/dirigent_grpc_function:latest'], ['port_forwarding', '80'], ['port_forwarding', 'tcp'],
    ['requested_cpu', '100'], ['requested_memory', '64'], ['scaling_upper_bound', '1'], ['scaling_lower_bound', '0'],
  ]);
  const registered = await request(`${cluster.cpUrl}/registerService`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString() });
  assert.equal(registered.statusCode, 200, await registered.body.text());
  const spec = (await client.getFunction('invitro-grpc-1')).spec as { runtime: string; protocol: string; command: string[] };
  assert.deepEqual([spec.runtime, spec.protocol, spec.command], ['process', 'h2c', ['node', 'server.js']]);
  // Invitro's call: faas.Executor/Execute with the function's name as the authority.
  const reply = await execute(executor('invitro-grpc-1'), { message: 'nothing', runtimeInMilliSec: 10, memoryInMebiBytes: 1 }, 30_000);
  assert.match(reply.message, /^OK - /);
  assert.ok(reply.durationInMicroSec >= 10_000, `durationInMicroSec ${reply.durationInMicroSec}`);
  await client.deleteFunction('invitro-grpc-1');
});

test('the same h2c function answers HTTP/1.1 and h2c (prior knowledge) clients alike; Upgrade: h2c is answered over HTTP/1.1', async () => {
  await deploy('tf-both');
  const headers = { requested_cpu: '10', function: 'tf-both', workload: 'trace' };
  const h1 = await request(`${cluster.dpUrl}/`, { headers: { host: 'tf-both', ...headers }, headersTimeout: 30_000 });
  assert.equal(h1.statusCode, 200);
  const viaH1 = await h1.body.json() as HttpAnswer;
  const session = h2Session();
  const viaH2 = await h2Request(session, { ':path': '/', ':method': 'GET', ':authority': 'tf-both', ...headers });
  assert.equal(viaH2.head[':status'], 200);
  const answer = JSON.parse(viaH2.body.toString('utf8')) as HttpAnswer;
  for (const a of [viaH1, answer]) {
    assert.deepEqual([a.Status, a.Function], ['OK', 'tf-both']);
    assert.ok(a.ExecutionTime >= 10_000, `ExecutionTime ${a.ExecutionTime}`);
  }
  // A POST body over h2c (no content-length) reaches the sandbox; by path as well as by authority.
  const posted = await h2Request(session, { ':path': '/fn/tf-both/', ':method': 'POST', 'x-baton-exec-ms': '1' }, Buffer.from('payload'));
  assert.equal(posted.head[':status'], 200);
  assert.equal((JSON.parse(posted.body.toString('utf8')) as HttpAnswer).Status, 'OK');

  // undici refuses to send an Upgrade header: the request is written by hand.
  const socket = netConnect(Number(new URL(cluster.dpUrl).port), '127.0.0.1');
  socket.write('GET / HTTP/1.1\r\nHost: tf-both\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nrequested_cpu: 1\r\n\r\n');
  let raw = '';
  for await (const chunk of socket) raw += (chunk as Buffer).toString('latin1');
  assert.match(raw, /^HTTP\/1\.1 200 /);
  assert.match(raw, /"Status":"OK"/);
});

test('an h2c client reaches an HTTP/1.1 function; Baton\'s errors over h2c keep their coded bodies', async () => {
  await client.createFunction({ name: 'tf-h1', artifact, command: ['node', 'server.js'], concurrency: 2, scaling: { maxScale: 1 } });
  const session = h2Session();
  const res = await h2Request(session, { ':path': '/', ':method': 'GET', ':authority': 'tf-h1', requested_cpu: '1' });
  assert.equal(res.head[':status'], 200);
  assert.equal((JSON.parse(res.body.toString('utf8')) as HttpAnswer).Status, 'OK');
  const missing = await h2Request(session, { ':path': '/', ':method': 'GET', ':authority': 'no-such-fn' });
  assert.equal(missing.head[':status'], 404);
  assert.equal(missing.head['x-baton-error'], 'ERR_FUNCTION_NOT_FOUND');
  assert.equal((JSON.parse(missing.body.toString('utf8')) as { error: { code: string } }).error.code, 'ERR_FUNCTION_NOT_FOUND');
});

test('gRPC deadlines: a call past its grpc-timeout is DEADLINE_EXCEEDED, cut by the data plane itself', async () => {
  await deploy('tf-slow');
  const exec = executor('tf-slow');
  await execute(exec, { runtimeInMilliSec: 1 }, 30_000);

  // Without a client-side deadline of its own (a raw stream), the status comes from the data plane:
  // a server stream of 2 s under grpc-timeout 300m ends with grpc-status 4 in its trailers.
  const message = Buffer.from([0x08, 20, 0x10, 100]); // StreamRequest{count: 20, intervalMs: 100}
  const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, message.length]), message]);
  const res = await h2Request(h2Session(), {
    ':path': '/faas.Streamer/ExecuteStream', ':method': 'POST', ':authority': 'tf-slow', 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '300m',
  }, frame);
  assert.equal(res.head[':status'], 200);
  assert.ok(res.body.length > 0, 'the first tick arrived before the deadline');
  assert.equal(res.trailers?.['grpc-status'], '4');
  assert.match(decodeURIComponent(String(res.trailers?.['grpc-message'])), /ERR_DEADLINE_EXCEEDED/);

  // A unary call that runs 1.5 s under a 300 ms deadline.
  const err = await executeError(exec, { runtimeInMilliSec: 1500 }, 300);
  assert.equal(err.code, grpc.status.DEADLINE_EXCEEDED, err.details);

  const malformed = await h2Request(h2Session(), { ':path': '/faas.Executor/Execute', ':method': 'POST', ':authority': 'tf-slow', 'content-type': 'application/grpc', 'grpc-timeout': '5 seconds' }, Buffer.alloc(5));
  assert.equal(malformed.head[':status'], 200);
  assert.equal(malformed.trailers?.['grpc-status'], '3');
});

test('Baton\'s own errors reach gRPC clients as gRPC statuses: unknown function NOT_FOUND, maxConcurrency RESOURCE_EXHAUSTED', async () => {
  const unknown = await executeError(executor('no-such-function'), { runtimeInMilliSec: 1 }, 10_000);
  assert.equal(unknown.code, grpc.status.NOT_FOUND, unknown.details);
  assert.match(unknown.details, /ERR_FUNCTION_NOT_FOUND/);

  await deploy('tf-limited', { maxConcurrency: 1 });
  await execute(executor('tf-limited'), { runtimeInMilliSec: 1 }, 30_000);
  // One call in flight (a 1 s server stream) holds the only slot; a second is refused at once.
  const holding = streamer('tf-limited').ExecuteStream({ count: 10, intervalMs: 100 }, { deadline: new Date(Date.now() + 20_000) });
  const first = await once(holding, 'data') as [FaasReply];
  assert.equal(first[0].message, 'tick 0');
  const refused = await executeError(executor('tf-limited'), { runtimeInMilliSec: 1 }, 10_000);
  assert.equal(refused.code, grpc.status.RESOURCE_EXHAUSTED, refused.details);
  assert.match(refused.details, /ERR_TOO_MANY_REQUESTS/);
  const cancelled = new Promise<grpc.StatusObject>((resolve) => holding.on('status', resolve));
  holding.on('error', () => undefined);
  holding.cancel();
  assert.equal((await cancelled).code, grpc.status.CANCELLED);
});

test('baton loadgen run --transport grpc --deploy --runtime process replays through the data plane into h2c sandboxes', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'baton-h2c-loadgen-'));
  try {
    const out = join(dir, 'grpc.csv');
    const result = await runCli(['loadgen', 'run', '--rps', '10', '--seconds', '1', '--exec-ms', '5', '--function', 'lg-grpc', '--deploy', '--runtime', 'process',
      '--transport', 'grpc', '--url', cluster.cpUrl, '--target', cluster.dpUrl, '--format', 'baton', '-o', out]);
    assert.equal(result.code, 0, result.stderr);
    const { records } = parseResultsCsv(await readFile(out, 'utf8'));
    assert.equal(records.length, 10);
    for (let i = 0; i < records.length; i++) {
      assert.equal(records.status[i], 200, `row ${i}: ${records.errorCodes[records.errorIndex[i] ?? 0]}`);
      assert.ok((records.execUs[i] ?? 0) >= 5_000, `row ${i}: ExecutionTime ${records.execUs[i]}`);
    }
    // Every call was answered, so the sandboxes were reached over h2c (the trace function refuses gRPC over HTTP/1.1); removed afterwards.
    assert.match(result.stderr, /deleted 1 functions/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
