import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startCluster, runCliProcess, ROOT, type Cluster } from '../kit/cluster.ts';
import { waitFor } from '../kit/wait-for.ts';

/**
 * Asynchronous invocations end to end: accepted durably (202 + id), delivered through the
 * ordinary path exactly once when nothing fails, retried and dead-lettered when the function
 * keeps failing, visible by id and through the CLI, redriven; and they survive `kill -9` of the
 * data plane and of the control plane between acceptance and delivery.
 */

let cluster: Cluster;
const FIXTURES = join(ROOT, 'test/fixtures/lambda-handlers');
const cli = (...args: string[]) => runCliProcess([...args, '--url', cluster.cpUrl, '--dataplane-url', cluster.dpUrl]);

async function deploy(name: string, body: string): Promise<string> {
  const record = join(cluster.dir, `${name}.record`);
  // The sandbox appends to it, as the unprivileged user a root worker runs it as.
  await writeFile(record, '');
  await chmod(record, 0o666);
  const manifest = join(cluster.dir, `${name}.yaml`);
  await writeFile(manifest, `name: ${name}\ndir: ${FIXTURES}\nenv:\n  RECORD_FILE: ${record}\n${body}`);
  const res = await runCliProcess(['deploy', '-f', manifest, '--url', cluster.cpUrl]);
  assert.equal(res.code, 0, res.stderr);
  return record;
}

const recorded = async (file: string): Promise<string[]> => (await readFile(file, 'utf8')).split('\n').filter(Boolean).map((l) => l.split(' ')[0] as string);

async function sendAsync(name: string, body: unknown): Promise<string> {
  const res = await fetch(`${cluster.dpUrl}/fn/${name}/`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', 'x-baton-invocation-type': 'Event' } });
  assert.equal(res.status, 202, await res.clone().text());
  const id = res.headers.get('x-baton-invocation-id') as string;
  assert.equal(res.headers.get('location'), `/v1/invocations/${id}`);
  await res.arrayBuffer();
  return id;
}

interface View { id: string; state: string; attempts: { outcome?: string; startedAt: string }[]; redrives: number; deadLetterReason?: string; response?: { status: number; body?: string } }
const view = async (id: string): Promise<View> => (await fetch(`${cluster.dpUrl}/v1/invocations/${id}`)).json() as Promise<View>;

before(async () => {
  cluster = await startCluster();
});

after(async () => {
  await cluster?.stop();
});

describe('asynchronous invocations', () => {
  it('answers 404 at once for an unknown function, never 202', async () => {
    const res = await fetch(`${cluster.dpUrl}/fn/no-such-fn/`, { method: 'POST', body: '{}', headers: { prefer: 'respond-async' } });
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'ERR_FUNCTION_NOT_FOUND');
  });

  it('delivers 1,000 events accepted under a concurrency limit exactly once each', async () => {
    const record = await deploy('many', 'handler: esm.handler\nconcurrency: 4\nscaling:\n  maxScale: 2\nasync:\n  maxConcurrency: 6\n');
    const ids: string[] = [];
    for (let batch = 0; batch < 20; batch++) {
      ids.push(...await Promise.all(Array.from({ length: 50 }, (_, i) => sendAsync('many', { n: batch * 50 + i }))));
    }
    await waitFor(async () => (await recorded(record)).length >= 1000, { timeoutMs: 60_000, message: '1,000 deliveries' });
    const seen = await recorded(record);
    assert.equal(seen.length, 1000, 'no event ran twice');
    assert.deepEqual([...seen].sort(), [...ids].sort(), 'every accepted event ran, with its invocation id as awsRequestId');
    await waitFor(async () => {
      const res = await fetch(`${cluster.dpUrl}/v1/invocations?function=many&state=succeeded&limit=2000`);
      return ((await res.json()) as { invocations: unknown[] }).invocations.length === 1000;
    }, { timeoutMs: 10_000, message: 'all 1,000 to be succeeded' });
    const listed = await cli('invocations', 'many', '--state', 'succeeded', '--limit', '3');
    assert.equal(listed.code, 0, listed.stderr);
    assert.equal(listed.stdout.trim().split('\n').length, 4, 'a header and 3 rows');
    const one = await view(ids[500] as string);
    assert.equal(one.state, 'succeeded');
    assert.equal(one.attempts.length, 1);
    assert.deepEqual((JSON.parse(one.response?.body ?? '{}') as { event: { body: string } }).event.body, JSON.stringify({ n: 500 }));
    const metrics = await (await fetch(`${cluster.dpUrl.replace(/:\d+$/, '')}:${await internalPort()}/metrics`)).text();
    assert.match(metrics, /baton_dataplane_async_deliveries_total\{function="many",outcome="succeeded"\} 1000/);
  });

  it('dead-letters an always-failing event after exactly maxRetryAttempts + 1 attempts; the CLI lists and redrives it', async () => {
    const record = await deploy('always-fails', 'handler: fail.handler\nasync:\n  maxRetryAttempts: 2\n  retryBackoffMs: 100\n');
    const sent = await cli('invoke', 'always-fails', '--async', '--data', '{"x":1}');
    assert.equal(sent.code, 0, sent.stderr);
    const id = sent.stdout.trim();
    const dead = await waitFor(async () => {
      const v = await view(id);
      return v.state === 'dead-lettered' ? v : undefined;
    }, { timeoutMs: 20_000, message: 'the event to be dead-lettered' });
    assert.equal(dead.deadLetterReason, 'retries-exhausted');
    assert.deepEqual(dead.attempts.map((a) => a.outcome), ['function-error', 'function-error', 'function-error']);
    assert.deepEqual(await recorded(record), [id, id, id], 'the function ran exactly 3 times, with the same id each time');
    const starts = dead.attempts.map((a) => Date.parse(a.startedAt));
    assert.ok((starts[2] ?? 0) - (starts[1] ?? 0) >= 100, 'the second retry waited at least base × 2 × 0.5');

    const dlq = await cli('dlq', 'always-fails');
    assert.equal(dlq.code, 0, dlq.stderr);
    assert.match(dlq.stdout, new RegExp(`${id}\\s+dead-lettered\\s+3`));
    const shown = await cli('invocations', '--id', id);
    assert.match(shown.stdout, /state:\s+dead-lettered \(retries-exhausted\)/);

    const redriven = await cli('dlq', 'always-fails', '--redrive');
    assert.match(redriven.stdout, /redriven 1 invocation of always-fails/);
    const again = await waitFor(async () => {
      const v = await view(id);
      return v.state === 'dead-lettered' && v.redrives === 1 ? v : undefined;
    }, { timeoutMs: 20_000, message: 'the redriven event to be dead-lettered again' });
    assert.equal(again.attempts.length, 3);
    assert.equal((await recorded(record)).length, 6);
  });

  it('answers an unknown invocation id with 404 ERR_INVOCATION_NOT_FOUND', async () => {
    const res = await fetch(`${cluster.dpUrl}/v1/invocations/nope`);
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'ERR_INVOCATION_NOT_FOUND');
  });

  it('delivers every accepted event after kill -9 of the data plane and of the control plane', async () => {
    const record = await deploy('survivor', 'handler: esm.handler\nasync:\n  maxConcurrency: 1\n');
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) ids.push(await sendAsync('survivor', { sleepMs: 50, i }));
    await waitFor(async () => (await recorded(record)).length >= 3, { timeoutMs: 20_000, message: 'a few deliveries before the crash' });
    await cluster.controlplane.stop('SIGKILL');
    await cluster.restartDataplane();
    const before = (await recorded(record)).length;
    assert.ok(before < 40, `the crash came before all were delivered (${before})`);
    await cluster.restartControlPlane();
    await waitFor(async () => new Set(await recorded(record)).size === 40, { timeoutMs: 60_000, message: 'all 40 events delivered after the restarts' });
    const seen = await recorded(record);
    assert.deepEqual([...new Set(seen)].sort(), [...ids].sort());
    // At most one event (maxConcurrency 1) was running at the kill: only it may have run twice, and its record says why.
    const duplicates = seen.filter((id, i) => seen.indexOf(id) !== i);
    assert.ok(duplicates.length <= 1, `duplicates: ${duplicates.join(',')}`);
    for (const id of duplicates) {
      const v = await view(id);
      assert.equal(v.attempts[0]?.outcome, 'interrupted', 'a duplicate is an attempt interrupted by the crash');
    }
    await waitFor(async () => (await Promise.all(ids.map(view))).every((v) => v.state === 'succeeded'), { timeoutMs: 20_000, message: 'all succeeded' });
  });
});

async function internalPort(): Promise<string> {
  const line = cluster.dataplane.logs.find((l) => typeof l['url'] === 'string' && typeof l['proxyUrl'] === 'string');
  return new URL(String(line?.['url'])).port;
}
