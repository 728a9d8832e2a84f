/**
 * The CPU an emulated sandbox's listener spends per invocation: Baton's responder
 * (src/worker/emulated/http-responder.ts) against `node:http`, both answering through the same
 * invocation handler, each in a child process of its own, driven open-loop by undici at a fixed rate.
 *
 *   npm run bench:responder -- [--rate 2500] [--seconds 6] [--exec-ms 10] [--rounds 2]
 *
 * Reports the server process's CPU time (user + system, `process.cpuUsage`) per request; the
 * load generator's own CPU is not counted. Rounds alternate the two servers.
 */
import { fork } from 'node:child_process';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { systemClock } from '../src/core/clock.ts';
import { createRandom } from '../src/core/random.ts';
import { EmulatedRuntime } from '../src/worker/emulated/emulated-runtime.ts';
import { createResponder, type ResponderReply, type ResponderRequest } from '../src/worker/emulated/http-responder.ts';
import { createInvocationHandler } from '../src/worker/emulated/invocation-handler.ts';
import { parseLatencySpec } from '../src/worker/emulated/latency-spec.ts';

type Kind = 'responder' | 'node-http';

async function serve(kind: Kind): Promise<void> {
  const runtime = new EmulatedRuntime({ address: 'unused:0', latency: parseLatencySpec('0'), random: createRandom(1), clock: systemClock });
  const handler = createInvocationHandler({ workerId: 'w-0', runtime, clock: systemClock });
  let port: number;
  if (kind === 'responder') {
    port = await createResponder(handler.handle).listen(0, '127.0.0.1');
  } else {
    // The same handler behind node:http, through a small adapter.
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      const request: ResponderRequest = {
        method: req.method ?? 'GET', url: req.url ?? '/',
        header: (name) => { const v = req.headers[name]; return Array.isArray(v) ? v[0] : v; },
      };
      const reply: ResponderReply = {
        send: (status, json) => { res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) }); res.end(json); },
        get isClosed() { return res.destroyed; },
        onClose: (listener) => { res.once('close', () => { if (!res.writableFinished) listener(); }); },
      };
      handler.handle(request, reply);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  }
  process.send?.({ port });
  process.on('message', (message) => {
    if (message === 'cpu') {
      const usage = process.cpuUsage();
      process.send?.({ cpuUs: usage.user + usage.system });
    }
  });
}

async function measure(kind: Kind, rate: number, seconds: number, execMs: number): Promise<number> {
  const child = fork(new URL(import.meta.url).pathname, ['--serve', kind], { execArgv: ['--import', 'tsx'] });
  try {
    const { port } = await new Promise<{ port: number }>((resolve) => child.once('message', (m) => resolve(m as { port: number })));
    const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 100 });
    const cpu = (): Promise<number> => new Promise((resolve) => {
      child.once('message', (m) => resolve((m as { cpuUs: number }).cpuUs));
      child.send('cpu');
    });
    const invoke = (): Promise<void> => pool.request({ path: '/fn/f/', method: 'GET', headers: { 'x-baton-exec-ms': String(execMs) } }).then((res) => res.body.dump());
    // Warm-up: connections open, code optimised.
    for (let i = 0; i < 5; i++) await Promise.all(Array.from({ length: 200 }, invoke));
    const before = await cpu();
    const count = Math.round(rate * seconds);
    const startedAt = performance.now();
    const calls: Promise<void>[] = [];
    for (let i = 0; i < count; i++) {
      const waitMs = startedAt + (i * 1000) / rate - performance.now();
      if (waitMs > 1) await new Promise((resolve) => setTimeout(resolve, waitMs));
      calls.push(invoke());
    }
    await Promise.all(calls);
    const after = await cpu();
    await pool.close();
    return (after - before) / count;
  } finally {
    child.kill();
  }
}

const { values } = parseArgs({
  options: { serve: { type: 'string' }, rate: { type: 'string' }, seconds: { type: 'string' }, 'exec-ms': { type: 'string' }, rounds: { type: 'string' } },
});
if (values.serve !== undefined) {
  await serve(values.serve as Kind);
} else {
  const rate = Number(values.rate ?? 2500);
  const seconds = Number(values.seconds ?? 6);
  const execMs = Number(values['exec-ms'] ?? 10);
  const rounds = Number(values.rounds ?? 2);
  if (!(rate > 0 && seconds > 0 && seconds <= 60 && execMs >= 0 && rounds >= 1 && rounds <= 10)) throw new Error('need --rate > 0, 0 < --seconds ≤ 60, --exec-ms ≥ 0, 1 ≤ --rounds ≤ 10');
  process.stdout.write(`${rate} requests/s for ${seconds} s, ${execMs} ms execution, 100 connections; server CPU µs per request\n`);
  for (let round = 1; round <= rounds; round++) {
    for (const kind of ['node-http', 'responder'] as const) {
      const us = await measure(kind, rate, seconds, execMs);
      process.stdout.write(`round ${round}  ${kind.padEnd(10)} ${us.toFixed(1)} µs\n`);
    }
  }
}
