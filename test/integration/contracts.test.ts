import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { test, type TestContext } from 'node:test';
import { controlPlaneToWorker, INTERNAL_CONTRACTS, pathOf, workerToControlPlane, type Contract } from '../../src/api/contracts.ts';
import { BatonError } from '../../src/core/errors.ts';
import { JsonClient } from '../../src/transport/json-client.ts';
import { JsonRouter } from '../../src/transport/json-router.ts';
import { listen } from '../../src/transport/listen.ts';
import { RpcConnection } from '../../src/transport/rpc-client.ts';
import { serveRpc } from '../../src/transport/rpc-server.ts';

/** A peer serving `router` over HTTP and the RPC stream; clients over each. */
async function peer(t: TestContext, router: JsonRouter): Promise<{ http: JsonClient; rpc: JsonClient }> {
  const server = createServer(router.handle);
  const rpcServer = serveRpc(server, router.dispatch);
  const { url } = await listen(server, { host: '127.0.0.1', port: 0 });
  const connection = new RpcConnection(url);
  const http = new JsonClient(url);
  const rpc = new JsonClient(url, { rpc: connection });
  t.after(async () => {
    connection.close();
    rpcServer.close();
    await http.close();
    await rpc.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { http, rpc };
}

async function rejectsWithCode(promise: Promise<unknown>, code: string): Promise<BatonError> {
  const err = await promise.then(() => assert.fail(`expected ${code}`), (e: unknown) => e);
  assert.ok(err instanceof BatonError, `expected a BatonError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  return err;
}

test('every internal call has one contract: a distinct method and path, a name', () => {
  const keys = INTERNAL_CONTRACTS.map((c) => `${c.method} ${c.path}`);
  assert.equal(new Set(keys).size, keys.length, 'no two contracts share a method and path');
  assert.equal(new Set(INTERNAL_CONTRACTS.map((c: Contract) => c.name)).size, INTERNAL_CONTRACTS.length);
  assert.equal(INTERNAL_CONTRACTS.length, 15);
  assert.equal(pathOf(controlPlaneToWorker.sandboxLogs, { sandboxId: 'f-1', tail: 50 }), '/internal/v1/sandboxes/f-1/logs?tail=50');
  assert.equal(pathOf(controlPlaneToWorker.createSandboxes, { sandboxes: [] }), '/internal/v1/sandboxes');
});

test('a call by contract: the receiver parses the request with its schema, the caller gets the parsed answer, over HTTP and the RPC stream', async (t) => {
  const seen: unknown[] = [];
  const router = new JsonRouter()
    .serve(controlPlaneToWorker.sandboxLogs, (request) => {
      seen.push(request);
      return { sandboxId: request.sandboxId, lines: [{ ts: 't', stream: 'stdout' as const, line: 'hi' }], dropped: 0 };
    })
    .serve(workerToControlPlane.registerWorker, () => ({ heartbeatIntervalMs: 500 }));
  const { http, rpc } = await peer(t, router);
  for (const client of [http, rpc]) {
    const logs = await client.invoke(controlPlaneToWorker.sandboxLogs, { sandboxId: 'f-1', tail: 3 });
    assert.deepEqual(logs.lines.map((l) => l.line), ['hi']);
  }
  assert.deepEqual(seen, [{ sandboxId: 'f-1', tail: 3 }, { sandboxId: 'f-1', tail: 3 }], 'the query string coerced to the schema\'s number');
  // A request its schema refuses: 400 ERR_INVALID_REQUEST naming the field, and the handler never runs.
  const bad = await rejectsWithCode(http.invoke(workerToControlPlane.registerWorker, { workerId: 'w', url: 'http://x', capacity: { cpuMilli: -1, memoryMiB: 1 }, runtimes: ['emulated'], sandboxes: [] }), 'ERR_INVALID_REQUEST');
  assert.match(bad.message, /capacity\.cpuMilli/);
});

test('an answer its contract does not allow is refused with ERR_BAD_RESPONSE, not handed on as the type says', async (t) => {
  const router = new JsonRouter()
    .on(workerToControlPlane.registerWorker.method, workerToControlPlane.registerWorker.path, () => ({ heartbeatIntervalMs: 'soon' }));
  const { http, rpc } = await peer(t, router);
  const request = { workerId: 'w', url: 'http://127.0.0.1:1', capacity: { cpuMilli: 1, memoryMiB: 1 }, runtimes: ['emulated' as const], sandboxes: [] };
  for (const client of [http, rpc]) {
    const err = await rejectsWithCode(client.invoke(workerToControlPlane.registerWorker, request), 'ERR_BAD_RESPONSE');
    assert.match(err.message, /RegisterWorker.*heartbeatIntervalMs/);
  }
});
