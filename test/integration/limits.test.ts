import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { test, type TestContext } from 'node:test';
import { Agent, request } from 'undici';
import { controlPlaneConfigSchema } from '../../src/controlplane/config.ts';
import { startControlPlane } from '../../src/controlplane/main.ts';
import { parseDataplaneConfig, type DataplaneConfigInput } from '../../src/dataplane/config.ts';
import { startDataplane } from '../../src/dataplane/main.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { parseWorkerConfig } from '../../src/worker/config.ts';
import { startWorker } from '../../src/worker/main.ts';
import { tempDirSync } from '../kit/temp-dir.ts';
import { waitFor } from '../kit/wait-for.ts';

/**
 * The real control plane, data plane and an emulated worker in this process (the emulated
 * runtime answers an invocation after `x-baton-exec-ms`), so that a function's capacity is exact:
 * `maxScale` sandboxes × `concurrency` slots, each busy for the requested time.
 */
async function startPlanes(t: TestContext, dataplane: Partial<DataplaneConfigInput> = {}) {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'baton-limits-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const controlPlane = await startControlPlane(controlPlaneConfigSchema.parse({ authMode: 'none',
    port: 0, dataDir, heartbeatIntervalMs: 100, autoscalerBucketMs: 100, autoscalerTickMs: 200, logLevel: 'silent',
  }), { logger: silentLogger() });
  t.after(() => controlPlane.close());
  const dp = await startDataplane(parseDataplaneConfig({
    port: 0, internalPort: 0, dataDir: tempDirSync('baton-dp-'), dataplaneId: `dp-limits-${process.pid}`, controlPlaneUrl: controlPlane.url,
    heartbeatIntervalMs: 100, demandReportIntervalMs: 100, logLevel: 'silent', ...dataplane,
  }), { logger: silentLogger() });
  t.after(() => dp.close());
  const worker = await startWorker(parseWorkerConfig({
    port: 0, workerId: 'emu', controlPlaneUrl: controlPlane.url, emulate: 1, cpuMilli: 4000, memoryMiB: 4096,
    emulatedCreateLatency: '5', randomSeed: 3, logLevel: 'silent',
  }), { logger: silentLogger() });
  t.after(() => worker.close());
  await waitFor(async () => {
    const body = await fetch(`${controlPlane.url}/v1/workers`).then((r) => r.json()) as { workers: { state: string }[] };
    return body.workers.some((w) => w.state === 'ready');
  }, { message: 'a ready worker' });
  // Enough connections that the client never queues on its side: every request reaches the data plane at once.
  const agent = new Agent({ connections: 1000, pipelining: 0 });
  t.after(() => agent.close());
  const deploy = async (spec: Record<string, unknown>): Promise<{ status: number; body: unknown }> => {
    const res = await fetch(`${controlPlane.url}/v1/functions`, { method: 'POST', body: JSON.stringify(spec), headers: { 'content-type': 'application/json' } });
    return { status: res.status, body: await res.json() };
  };
  const describe = async (name: string) => await fetch(`${controlPlane.url}/v1/functions/${name}`).then((r) => r.json()) as { status: { ready: number } };
  const invoke = async (name: string, execMs: number, headers: Record<string, string> = {}): Promise<Answer> => {
    const res = await request(`${dp.proxyUrl}/fn/${name}/`, { dispatcher: agent, headers: { 'x-baton-exec-ms': String(execMs), ...headers } });
    const text = await res.body.text();
    const code = res.headers['x-baton-error'];
    const retryAfter = res.headers['retry-after'];
    return { status: res.statusCode, code: typeof code === 'string' ? code : undefined, retryAfter: typeof retryAfter === 'string' ? retryAfter : undefined, text };
  };
  const queueDepth = async (name: string): Promise<number> => {
    const text = await fetch(`${dp.url}/metrics`).then((r) => r.text());
    const match = new RegExp(`^baton_dataplane_queue_depth\\{function="${name}"\\} (\\d+)$`, 'm').exec(text);
    return Number(match?.[1] ?? 0);
  };
  /** Whether the data plane routes `name` without starting anything: a body over its `maxBodyBytes` (set it to 1) is 413 there, 404 before. */
  const isRouted = async (name: string): Promise<boolean> => {
    const res = await request(`${dp.proxyUrl}/fn/${name}/`, { dispatcher: agent, method: 'POST', body: 'xx' });
    await res.body.dump();
    return res.statusCode === 413;
  };
  return { controlPlane, dp, deploy, describe, invoke, queueDepth, isRouted };
}

interface Answer { status: number; code: string | undefined; retryAfter: string | undefined; text: string }

/** Sends `total` invocations at `perSecond` (open loop: each is sent on its turn, whatever the others do). */
async function offer(total: number, perSecond: number, send: () => Promise<Answer>): Promise<{ answers: Answer[]; order: Answer[] }> {
  const order: Answer[] = [];
  const pending: Promise<Answer>[] = [];
  const gapMs = 1000 / perSecond;
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const due = start + i * gapMs;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    pending.push(send().then((a) => { order.push(a); return a; }));
  }
  return { answers: await Promise.all(pending), order };
}

function assertOnlyServedOrRefused(answers: readonly Answer[]): void {
  for (const a of answers) {
    if (a.status === 200) continue;
    assert.equal(a.status, 429, `an invocation got ${a.status} ${a.code ?? ''} ${a.text.slice(0, 200)}`);
    assert.equal(a.code, 'ERR_TOO_MANY_REQUESTS');
    assert.equal(JSON.parse(a.text).error.code, 'ERR_TOO_MANY_REQUESTS');
    assert.match(a.retryAfter ?? '', /^[1-9]\d*$/, 'a refusal says when to retry');
  }
}

test('overload at maxScale: 2× and 50× the capacity for a bounded time — admitted invocations succeed, the rest are refused at once with 429, the wait stays bounded, the function serves right after', async (t) => {
  const { deploy, describe, invoke, queueDepth } = await startPlanes(t, { overloadQueuePerSlot: 2 });
  // Capacity: 2 sandboxes × 1 slot, 200 ms each = 10 invocations/s.
  const created = await deploy({ name: 'over', runtime: 'emulated', concurrency: 1, scaling: { minScale: 2, maxScale: 2 } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  await waitFor(async () => (await describe('over')).status.ready === 2, { message: 'two ready sandboxes', timeoutMs: 20_000 });
  await waitFor(async () => (await invoke('over', 0)).status === 200, { message: 'the data plane routes the function' });

  const limit = 2 * 2 * 1; // overloadQueuePerSlot × sandboxes × concurrency
  let maxDepth = 0;
  let isSampling = true;
  const sampler = (async () => {
    while (isSampling) {
      maxDepth = Math.max(maxDepth, await queueDepth('over'));
      await sleep(20);
    }
  })();
  try {
    for (const [label, total, perSecond] of [['2×', 40, 20], ['50×', 500, 500]] as const) {
      const { answers, order } = await offer(total, perSecond, () => invoke('over', 200));
      assertOnlyServedOrRefused(answers);
      const served = answers.filter((a) => a.status === 200).length;
      const refused = answers.filter((a) => a.status === 429).length;
      assert.equal(served + refused, total);
      assert.ok(refused > 0, `${label}: some invocations were refused (${served} served)`);
      assert.ok(served >= 2 + limit, `${label}: at least the slots and the bounded wait were served (${served})`);
      // Refusals came while the function was still serving: some invocation succeeded after the first refusal.
      const firstRefusal = order.findIndex((a) => a.status === 429);
      assert.ok(order.slice(firstRefusal + 1).some((a) => a.status === 200), `${label}: served after refusing`);
      if (label === '50×') assert.ok(refused > total / 2, `50×: most were refused (${refused} of ${total})`);
    }
  } finally {
    isSampling = false;
    await sampler;
  }
  assert.ok(maxDepth <= limit, `the queue never held more than ${limit} (saw ${maxDepth})`);
  // Right after: the function serves normally.
  for (let i = 0; i < 3; i++) assert.equal((await invoke('over', 10)).status, 200);
  assert.equal(await queueDepth('over'), 0);
});

test('a burst that queued during the cold start is cut to the bounded wait once the function reaches maxScale', async (t) => {
  const { deploy, invoke, isRouted } = await startPlanes(t, { overloadQueuePerSlot: 1 });
  const created = await deploy({ name: 'burst', runtime: 'emulated', concurrency: 1, maxBodyBytes: 1, scaling: { maxScale: 1 } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  await waitFor(() => isRouted('burst'), { message: 'the data plane knows the function' });
  // No sandbox yet: all 30 wait for the cold start. Once the one sandbox it may have is up, one runs,
  // one waits (1 per slot) and the other 28 are refused then, not after the cold-start deadline.
  const answers = await Promise.all(Array.from({ length: 30 }, () => invoke('burst', 100)));
  assertOnlyServedOrRefused(answers);
  assert.equal(answers.filter((a) => a.status === 200).length, 2);
  assert.equal(answers.filter((a) => a.status === 429).length, 28);
});

test('maxConcurrency 2: of 10 concurrent slow invocations 2 run, the other 8 are refused with 429 and Retry-After while those succeed', async (t) => {
  const { deploy, invoke } = await startPlanes(t);
  const created = await deploy({ name: 'capped', runtime: 'emulated', concurrency: 1, maxConcurrency: 2, scaling: { maxScale: 10 } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  await waitFor(async () => (await invoke('capped', 0)).status === 200, { message: 'the data plane routes the function', timeoutMs: 20_000 });
  const answers = await Promise.all(Array.from({ length: 10 }, () => invoke('capped', 1500)));
  assertOnlyServedOrRefused(answers);
  assert.equal(answers.filter((a) => a.status === 200).length, 2);
  assert.equal(answers.filter((a) => a.status === 429).length, 8);
  assert.equal((await invoke('capped', 0)).status, 200, 'serves again once they finished');
});

test('the data plane\'s maxConcurrentInvocations bounds every function together', async (t) => {
  const { deploy, invoke } = await startPlanes(t, { maxConcurrentInvocations: 3 });
  for (const name of ['one', 'two']) {
    const created = await deploy({ name, runtime: 'emulated', concurrency: 10, scaling: { maxScale: 2 } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    await waitFor(async () => (await invoke(name, 0)).status === 200, { message: `${name} routed`, timeoutMs: 20_000 });
  }
  const answers = await Promise.all([...Array.from({ length: 4 }, () => invoke('one', 1500)), ...Array.from({ length: 4 }, () => invoke('two', 1500))]);
  assertOnlyServedOrRefused(answers);
  assert.equal(answers.filter((a) => a.status === 200).length, 3);
  assert.equal(answers.filter((a) => a.status === 429).length, 5);
});

test('invocation body limit: a larger content-length is 413 at once, a chunked body is cut with 413 as it passes the limit, a smaller one is served', async (t) => {
  const { deploy, invoke, dp } = await startPlanes(t, { invocationBodyMaxBytes: 4096 });
  for (const spec of [{ name: 'small', maxBodyBytes: 1000 }, { name: 'plain' }]) {
    const created = await deploy({ runtime: 'emulated', ...spec });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    await waitFor(async () => (await invoke(spec.name, 0)).status === 200, { message: `${spec.name} routed`, timeoutMs: 20_000 });
  }
  const post = async (name: string, body: Buffer | AsyncIterable<Buffer>): Promise<{ status: number; code: string | undefined }> => {
    const res = await request(`${dp.proxyUrl}/fn/${name}/`, { method: 'POST', body: Buffer.isBuffer(body) ? body : Readable.from(body) });
    await res.body.dump();
    const code = res.headers['x-baton-error'];
    return { status: res.statusCode, code: typeof code === 'string' ? code : undefined };
  };
  async function* chunked(total: number): AsyncIterable<Buffer> {
    for (let sent = 0; sent < total; sent += 256) yield Buffer.alloc(256, 1);
  }
  assert.deepEqual(await post('small', Buffer.alloc(1001)), { status: 413, code: 'ERR_PAYLOAD_TOO_LARGE' });
  assert.deepEqual(await post('small', chunked(2048)), { status: 413, code: 'ERR_PAYLOAD_TOO_LARGE' });
  assert.deepEqual(await post('small', Buffer.alloc(1000)), { status: 200, code: undefined });
  assert.deepEqual(await post('small', chunked(768)), { status: 200, code: undefined });
  // Without its own limit, the data plane's applies.
  assert.deepEqual(await post('plain', Buffer.alloc(4097)), { status: 413, code: 'ERR_PAYLOAD_TOO_LARGE' });
  assert.deepEqual(await post('plain', chunked(1024 * 1024)), { status: 413, code: 'ERR_PAYLOAD_TOO_LARGE' });
  assert.deepEqual(await post('plain', Buffer.alloc(4096)), { status: 200, code: undefined });
});

test('a function held at its quota is at its maxScale on the data plane: what it cannot serve soon is refused at once with 429; without the quota it scales', async (t) => {
  const { controlPlane, deploy, describe, invoke } = await startPlanes(t);
  const quotaUrl = `${controlPlane.url}/v1/quotas/${encodeURIComponent('team-q-*')}`;
  const put = await fetch(quotaUrl, { method: 'PUT', body: JSON.stringify({ maxSandboxes: 1 }), headers: { 'content-type': 'application/json' } });
  assert.equal(put.status, 200, await put.text());
  const created = await deploy({ name: 'team-q-fn', runtime: 'emulated', concurrency: 1, scaling: { minScale: 0, maxScale: 5 } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const status = async () => (await describe('team-q-fn') as unknown as { status: { ready: number; starting: number; heldByQuota?: string } }).status;
  // A wave of slow invocations wants 6 sandboxes; the quota leaves one.
  const wave = Array.from({ length: 6 }, () => invoke('team-q-fn', 1000));
  await waitFor(async () => (await status()).heldByQuota === 'team-q-*', { message: 'the function held back by its quota', timeoutMs: 20_000 });
  // Its maxScale on the data plane is now the one sandbox: an invocation past the bounded wait is refused at once (before, it queued behind the wave).
  const refused = await waitFor(async () => {
    const answer = await invoke('team-q-fn', 0);
    return answer.status === 429 ? answer : undefined;
  }, { message: 'an invocation refused at the quota', timeoutMs: 20_000 });
  assertOnlyServedOrRefused([refused]);
  const answers = await Promise.all(wave);
  assertOnlyServedOrRefused(answers);
  assert.ok(answers.some((a) => a.status === 200), 'the sandbox the quota allows serves');
  const held = await status();
  assert.ok(held.ready + held.starting <= 1, `never past the quota: ${JSON.stringify(held)}`);

  const deleted = await fetch(quotaUrl, { method: 'DELETE' });
  assert.equal(deleted.status, 200);
  const load = Promise.all(Array.from({ length: 4 }, () => invoke('team-q-fn', 1000)));
  await waitFor(async () => {
    const s = await status();
    return s.ready + s.starting >= 2 && s.heldByQuota === undefined;
  }, { message: 'the function scaling past the deleted quota', timeoutMs: 20_000 });
  assertOnlyServedOrRefused(await load);
});
