import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { BatonError } from '../../src/core/errors.ts';
import { summarizeRun } from '../../src/loadgen/analysis.ts';
import { errorCodeOf } from '../../src/loadgen/records.ts';
import { runPlan } from '../../src/loadgen/runner.ts';
import { createPlan, planColdStartSweep } from '../../src/loadgen/schedule.ts';

/**
 * An emulated function endpoint: `/fn/<name>/` (or `Host: <name>`) answers after `x-baton-exec-ms`
 * with the runtime's JSON. `full` answers 503 with a coded error; `hang` never answers.
 */
async function startFunctionServer(): Promise<{ url: string; server: Server; hosts: string[] }> {
  const hosts: string[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const name = /^\/fn\/([^/]+)\//.exec(req.url ?? '')?.[1] ?? req.headers.host ?? '';
    hosts.push(req.headers.host ?? '');
    if (name === 'full') {
      res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'ERR_QUEUE_FULL', message: 'full' } }));
      return;
    }
    if (name === 'hang') return;
    const execMs = Number(req.headers['x-baton-exec-ms'] ?? 0);
    const startedAt = performance.now();
    setTimeout(() => {
      const body = { Status: 'OK', Function: name, MachineName: 'test', ExecutionTime: Math.round((performance.now() - startedAt) * 1000) };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    }, execMs);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, server, hosts };
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

describe('runPlan', () => {
  it('sends open-loop: slow answers do not delay later sends', async (t) => {
    const { url, server } = await startFunctionServer();
    t.after(() => closeServer(server));
    // 40 invocations, one every 10 ms, each executing 200 ms: up to 20 are outstanding at once.
    const plan = planColdStartSweep({ rate: 100, seconds: 0.4, cooldownS: 0.2, execMs: 200, functionPrefix: 'f-' });
    const result = await runPlan(plan, { baseUrl: url, connections: 64, timeoutMs: 5_000 });
    assert.equal(result.stopReason, 'completed');
    assert.equal(result.length, 40);
    assert.ok(result.maxInFlight >= 15, `maxInFlight ${result.maxInFlight}`);
    assert.equal(result.connectionWaits, 0, 'every send found a free connection');
    // Loose bound: the server shares this process's event loop, and the first run warms the JIT.
    assert.ok(result.sendLagP99Ms < 100, `send lag p99 ${result.sendLagP99Ms} ms`);
    for (let i = 0; i < result.length; i++) {
      assert.equal(result.status[i], 200);
      assert.ok((result.execUs[i] ?? 0) >= 190_000, `ExecutionTime ${result.execUs[i]}`);
      assert.ok((result.endMs[i] ?? 0) - (result.scheduledMs[i] ?? 0) >= 199);
    }
    const summary = summarizeRun(result);
    assert.equal(summary.ok, 40);
    assert.ok(summary.sentRps > 80 && summary.sentRps < 120, `sentRps ${summary.sentRps}`);
    assert.ok(summary.overheadP50Ms < 50, `overhead p50 ${summary.overheadP50Ms}`);
  });

  it('records error codes from bodies, timeouts and transport errors; routes by Host', async (t) => {
    const { url, server, hosts } = await startFunctionServer();
    t.after(() => closeServer(server));
    const plan = createPlan([
      { atMs: 0, function: 'ok', execMs: 1 },
      { atMs: 0, function: 'full', execMs: 1 },
      { atMs: 0, function: 'hang', execMs: 1 },
    ]);
    const result = await runPlan(plan, { baseUrl: url, routing: 'host', timeoutMs: 200 });
    const byFunction = new Map(Array.from({ length: result.length }, (_, i) => [result.functions[result.functionIndex[i] ?? 0], i]));
    const ok = byFunction.get('ok') ?? -1;
    const full = byFunction.get('full') ?? -1;
    const hang = byFunction.get('hang') ?? -1;
    assert.equal(result.status[ok], 200);
    assert.equal(errorCodeOf(result, ok), '');
    assert.equal(result.status[full], 503);
    assert.equal(errorCodeOf(result, full), 'ERR_QUEUE_FULL');
    assert.equal(result.status[hang], 0);
    assert.equal(errorCodeOf(result, hang), 'TIMEOUT');
    assert.ok((result.endMs[hang] ?? 0) >= 200 && (result.endMs[hang] ?? 0) < 1_000);
    assert.deepEqual(new Set(hosts), new Set(['ok', 'full', 'hang']));

    const closed = await startFunctionServer();
    await closeServer(closed.server);
    const refused = await runPlan(createPlan([{ atMs: 0, function: 'ok', execMs: 1 }]), { baseUrl: closed.url, timeoutMs: 1_000 });
    assert.equal(errorCodeOf(refused, 0), 'ECONNREFUSED');
  });

  it('times out an invocation still queued for a connection, and caps the body it reads', async (t) => {
    const { url, server } = await startFunctionServer();
    t.after(() => closeServer(server));
    // One connection: 'hang' holds it, so the 'ok' sent at the same time waits in the client's queue.
    const queued = createPlan([{ atMs: 0, function: 'hang', execMs: 1 }, { atMs: 0, function: 'ok', execMs: 1 }]);
    const started = performance.now();
    const result = await runPlan(queued, { baseUrl: url, connections: 1, timeoutMs: 200 });
    assert.ok(performance.now() - started < 2_000);
    assert.deepEqual([errorCodeOf(result, 0), errorCodeOf(result, 1)], ['TIMEOUT', 'TIMEOUT']);
    assert.deepEqual([result.status[0], result.status[1]], [0, 0]);
    assert.equal(result.connectionWaits, 1, 'the second send found the one connection busy');

    // A body over maxBodyBytes is not kept: the answer counts by its status, without ExecutionTime.
    const capped = await runPlan(createPlan([{ atMs: 0, function: 'ok', execMs: 1 }]), { baseUrl: url, maxBodyBytes: 10 });
    assert.equal(capped.status[0], 200);
    assert.equal(errorCodeOf(capped, 0), '');
    assert.ok(Number.isNaN(capped.execUs[0]));
  });

  it('stops on abort: sends nothing more and aborts in-flight invocations', async (t) => {
    const { url, server } = await startFunctionServer();
    t.after(() => closeServer(server));
    const plan = planColdStartSweep({ rate: 50, seconds: 10, cooldownS: 1, execMs: 1_000, functionPrefix: 'f-' });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 150);
    const started = performance.now();
    const result = await runPlan(plan, { baseUrl: url, signal: controller.signal });
    assert.ok(performance.now() - started < 1_000);
    assert.equal(result.stopReason, 'aborted');
    assert.equal(result.planned, 500);
    assert.ok(result.length > 0 && result.length < 20, `sent ${result.length}`);
    assert.ok(Array.from({ length: result.length }, (_, i) => errorCodeOf(result, i)).every((c) => c === 'ABORTED'));
  });

  it('refuses plans beyond its bounds', async () => {
    const plan = planColdStartSweep({ rate: 10, seconds: 10, cooldownS: 1, execMs: 1, functionPrefix: 'f-' });
    const isRefused = (err: unknown): boolean => err instanceof BatonError && err.code === 'ERR_INVALID_REQUEST';
    await assert.rejects(runPlan(plan, { baseUrl: 'http://127.0.0.1:1', maxInvocations: 50 }), isRefused);
    await assert.rejects(runPlan(plan, { baseUrl: 'http://127.0.0.1:1', maxDurationMs: 5_000 }), isRefused);
    await assert.rejects(runPlan(plan, { baseUrl: 'not a url' }), isRefused);
    await assert.rejects(runPlan(plan, { baseUrl: 'http://127.0.0.1:1', connections: 0 }), isRefused);
  });
});
