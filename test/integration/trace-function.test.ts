import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:http2';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { request } from 'undici';
import { parseResultsCsv } from '../../src/loadgen/invitro-csv.ts';
import { runCli } from '../kit/run-cli.ts';
import { ROOT } from '../kit/cluster.ts';

/** examples/trace-function answers the same over HTTP/1.1, h2c and gRPC, on one port. */

const DIR = join(ROOT, 'examples/trace-function');

async function startTraceFunction(t: TestContext): Promise<number> {
  const child = spawn(process.execPath, ['server.js'], { cwd: DIR, env: { PORT: '0', HOST: '127.0.0.1', PATH: process.env['PATH'] ?? '' }, stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(async () => {
    if (child.exitCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  });
  const lines = createInterface({ input: child.stdout });
  for await (const line of lines) {
    const port = /^trace function on :(\d+)/.exec(line)?.[1];
    if (port !== undefined) return Number(port);
  }
  throw new Error('the trace function exited before listening');
}

interface HttpAnswer { Status: string; Function: string; MachineName: string; ExecutionTime: number }

async function viaHttp1(port: number, headers: Record<string, string>): Promise<HttpAnswer> {
  const res = await request(`http://127.0.0.1:${port}/`, { headers });
  assert.equal(res.statusCode, 200);
  return await res.body.json() as HttpAnswer;
}

async function viaH2c(port: number, headers: Record<string, string>): Promise<HttpAnswer> {
  const session = connect(`http://127.0.0.1:${port}`);
  try {
    const stream = session.request({ ':path': '/', ':method': 'GET', ...headers });
    const [responseHeaders] = await once(stream, 'response') as [Record<string, string | number>];
    assert.equal(responseHeaders[':status'], 200);
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as HttpAnswer;
  } finally {
    session.close();
  }
}

interface FaasReply { message: string; durationInMicroSec: number; memoryUsageInKb: number }
type ExecutorClient = grpc.Client & { Execute(req: object, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, reply?: FaasReply) => void): void };

function executorClient(port: number): ExecutorClient {
  const definition = protoLoader.loadSync(join(DIR, 'faas.proto'), { keepCase: true, defaults: true });
  const proto = grpc.loadPackageDefinition(definition) as unknown as { faas: { Executor: new (address: string, creds: grpc.ChannelCredentials) => ExecutorClient } };
  return new proto.faas.Executor(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
}

function execute(client: ExecutorClient, req: object, deadlineMs = 10_000): Promise<FaasReply> {
  return new Promise((resolve, reject) => {
    client.Execute(req, { deadline: new Date(Date.now() + deadlineMs) }, (err, reply) => (err === null && reply !== undefined ? resolve(reply) : reject(err)));
  });
}

test('the trace function spins for the requested time over HTTP/1.1, h2c and gRPC, and answers like Dirigent\'s and Invitro\'s', async (t) => {
  const port = await startTraceFunction(t);
  const headers = { requested_cpu: '40', requested_memory: '16', function: 'tf-1', workload: 'trace', multiplier: '102' };
  const h1 = await viaHttp1(port, headers);
  const h2 = await viaH2c(port, headers);
  for (const answer of [h1, h2]) {
    assert.equal(answer.Status, 'OK');
    assert.equal(answer.Function, 'tf-1');
    assert.ok(answer.MachineName.length > 0);
    assert.ok(answer.ExecutionTime >= 40_000, `ExecutionTime ${answer.ExecutionTime} µs is at least the requested 40 ms`);
  }
  const client = executorClient(port);
  t.after(() => client.close());
  const reply = await execute(client, { message: 'nothing', runtimeInMilliSec: 40, memoryInMebiBytes: 16 });
  assert.match(reply.message, /^OK - /);
  assert.ok(reply.durationInMicroSec >= 40_000, `durationInMicroSec ${reply.durationInMicroSec}`);
  assert.equal(reply.memoryUsageInKb, 16 * 1024);

  // Baton's own header, and Dirigent's empty workload.
  assert.ok((await viaHttp1(port, { 'x-baton-exec-ms': '15' })).ExecutionTime >= 15_000);
  const empty = await viaH2c(port, { workload: 'docker.io/cvetkovic/dirigent_empty_function:latest', requested_cpu: '500' });
  assert.deepEqual([empty.Status, empty.ExecutionTime], ['OK - EMPTY', 0]);
  const health = await request(`http://127.0.0.1:${port}/health`);
  assert.equal(health.statusCode, 200);
  await health.body.text();
});

test('an unknown gRPC method is UNIMPLEMENTED, as a gRPC status', async (t) => {
  const port = await startTraceFunction(t);
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  t.after(() => client.close());
  const err = await new Promise<grpc.ServiceError>((resolve) => {
    client.makeUnaryRequest('/faas.Executor/Other', (x: Buffer) => x, (x: Buffer) => x, Buffer.alloc(0), (e) => resolve(e as grpc.ServiceError));
  });
  assert.equal(err.code, grpc.status.UNIMPLEMENTED, err.details);
  assert.match(err.details, /unknown method/);
});

test('baton loadgen run records the trace function\'s ExecutionTime over HTTP/1.1, h2c and gRPC', async (t) => {
  const port = await startTraceFunction(t);
  const dir = await mkdtemp(join(tmpdir(), 'baton-tf-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  for (const transport of ['http1', 'h2c', 'grpc']) {
    const out = join(dir, `${transport}.csv`);
    const result = await runCli(['loadgen', 'run', '--rps', '20', '--seconds', '1', '--exec-ms', '5', '--target', `http://127.0.0.1:${port}`, '--transport', transport, '--format', 'baton', '-o', out]);
    assert.equal(result.code, 0, result.stderr);
    const { records } = parseResultsCsv(await readFile(out, 'utf8'));
    assert.equal(records.length, 20, transport);
    for (let i = 0; i < records.length; i++) {
      assert.equal(records.status[i], 200, `${transport} row ${i}: ${records.errorCodes[records.errorIndex[i] ?? 0]}`);
      assert.ok((records.execUs[i] ?? 0) >= 5_000, `${transport} row ${i}: ExecutionTime ${records.execUs[i]}`);
    }
  }
  const refused = await runCli(['loadgen', 'run', '--rps', '1', '--seconds', '1', '--target', `http://127.0.0.1:${port}`, '--transport', 'grpc', '--routing', 'path', '-o', join(dir, 'g.csv')]);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /--transport grpc names the function by the call's authority: it needs --routing host/);
});
