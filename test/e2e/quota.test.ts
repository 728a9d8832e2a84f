import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnDaemon, startCluster, type Cluster, type DaemonProcess } from '../kit/cluster.ts';
import { runCli } from '../kit/run-cli.ts';
import { waitFor } from '../kit/wait-for.ts';

/**
 * Per-scope quotas against the real daemons (control plane, data plane and an emulated worker as
 * processes, tokens on): set and deleted with the CLI, a scope's sandboxes capped across its
 * functions under concurrent slow load, shown by describe, GET /v1/quotas and the metrics; a
 * minScale over the quota refused with a code; the audit log has every change.
 */

let cluster: Cluster;
let emulatedWorker: DaemonProcess | undefined;
let admin: string;
/** The bodies of refused invocations (for the assertion messages). */
const lastRefusals: string[] = [];

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const headers: Record<string, string> = { authorization: `Bearer ${admin}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${cluster.cpUrl}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const text = await res.text();
  return { status: res.status, json: text.startsWith('{') ? JSON.parse(text) : text };
}

const cli = (...args: string[]) => runCli([...args, '--url', cluster.cpUrl], { env: { BATON_TOKEN: admin } });

/** One invocation that keeps its sandbox busy for `execMs`. */
async function invoke(name: string, execMs: number): Promise<string> {
  const res = await fetch(`${cluster.dpUrl}/fn/${name}/`, { headers: { 'x-baton-exec-ms': String(execMs) } });
  const text = await res.text();
  if (res.status !== 200) lastRefusals.push(text);
  return res.status === 200 ? '200' : `${res.status} ${res.headers.get('x-baton-error') ?? ''}`;
}

before(async () => {
  cluster = await startCluster({ auth: true });
  admin = cluster.adminToken as string;
  emulatedWorker = spawnDaemon('worker', ['--port', '0', '--data-dir', join(cluster.dir, 'worker-emulated'), '--control-plane-url', cluster.cpUrl, '--runtime', 'emulated', '--heartbeat-interval-ms', '200']);
  await emulatedWorker.waitForLog((l) => l['msg'] === 'worker started');
  await waitFor(async () => (await api('GET', '/v1/workers')).json.workers.filter((w: { state: string }) => w.state === 'ready').length === 2, { message: 'both workers ready' });
});

after(async () => {
  await emulatedWorker?.stop();
  await cluster?.stop();
});

test('quotas are an admin\'s: other roles and scoped tokens are refused, bad scopes and limits are 400, an unknown quota 404; nothing changes', async () => {
  const token = async (role: string, scopes: string[] = []) => (await api('POST', '/v1/tokens', { role, scopes })).json.token as string;
  const deployer = await token('deployer');
  const viewerA = await token('viewer', ['team-a-*']);
  const viewer = await token('viewer');
  const as = async (who: string, method: string, path: string, body?: unknown) => {
    const res = await fetch(`${cluster.cpUrl}${path}`, { method, headers: { authorization: `Bearer ${who}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    const json = await res.json() as { error?: { code: string } };
    return `${res.status} ${json.error?.code ?? ''}`.trim();
  };
  assert.equal(await as(deployer, 'PUT', '/v1/quotas/team-a-*', { maxSandboxes: 1 }), '403 ERR_FORBIDDEN');
  assert.equal(await as(deployer, 'DELETE', '/v1/quotas/team-a-*'), '403 ERR_FORBIDDEN');
  assert.equal(await as(viewerA, 'GET', '/v1/quotas'), '403 ERR_FORBIDDEN');
  assert.equal(await as(viewer, 'GET', '/v1/quotas'), '200');
  assert.equal(await as(admin, 'PUT', '/v1/quotas/Team-A', { maxSandboxes: 1 }), '400 ERR_INVALID_REQUEST');
  assert.equal(await as(admin, 'PUT', '/v1/quotas/team-a-*', { maxSandboxes: 'many' }), '400 ERR_INVALID_REQUEST');
  assert.equal(await as(admin, 'PUT', '/v1/quotas/team-a-*', {}), '400 ERR_INVALID_REQUEST');
  assert.equal(await as(admin, 'DELETE', '/v1/quotas/team-z-*'), '404 ERR_QUOTA_NOT_FOUND');
  assert.deepEqual((await api('GET', '/v1/quotas')).json.quotas, [], 'nothing was set');
});

test('a quota of 2 sandboxes on team-a-*: over-quota deploys refused, two functions under concurrent slow load never exceed 2 in total, describe shows it, deleting the quota lets them scale', async () => {
  const set = await cli('quota', 'set', 'team-a-*', '--sandboxes', '2', '--memory', '4096');
  assert.equal(set.code, 0, set.stderr);

  // A minimum scale the quota cannot hold: a coded refusal, nothing created.
  const refused = await api('POST', '/v1/functions', { name: 'team-a-big', runtime: 'emulated', scaling: { minScale: 3, maxScale: 5 } });
  assert.equal(refused.status, 403, JSON.stringify(refused.json));
  assert.equal(refused.json.error.code, 'ERR_QUOTA_EXCEEDED');
  assert.equal(refused.json.error.details.scope, 'team-a-*');
  assert.equal((await api('GET', '/v1/functions/team-a-big')).status, 404, 'nothing was created');

  for (const name of ['team-a-one', 'team-a-two']) {
    const created = await api('POST', '/v1/functions', { name, runtime: 'emulated', concurrency: 1, scaling: { minScale: 0, maxScale: 5 } });
    assert.equal(created.status, 201, JSON.stringify(created.json));
  }

  // 4 slow invocations of each at once (8 wanted sandboxes): the scope never has more than 2.
  let maxSandboxes = 0;
  let wasHeldBack = false;
  let isLoading = true;
  // Sampled every 100 ms (3 calls each): well inside the management API's rate per token.
  const sampler = (async () => {
    while (isLoading) {
      await sleep(100);
      const listed = await api('GET', '/v1/quotas');
      assert.equal(listed.status, 200, JSON.stringify(listed.json));
      const quotas = listed.json.quotas as { scope: string; sandboxes: number }[];
      maxSandboxes = Math.max(maxSandboxes, quotas.find((q) => q.scope === 'team-a-*')?.sandboxes ?? 0);
      for (const name of ['team-a-one', 'team-a-two']) {
        const described = await api('GET', `/v1/functions/${name}`);
        assert.equal(described.status, 200, JSON.stringify(described.json));
        const fn = described.json;
        maxSandboxes = Math.max(maxSandboxes, fn.quotas[0].sandboxes);
        if (fn.status.heldByQuota === 'team-a-*') wasHeldBack = true;
      }
    }
  })();
  const statuses = await Promise.all(['team-a-one', 'team-a-two'].flatMap((name) => Array.from({ length: 4 }, () => invoke(name, 600))));
  isLoading = false;
  await sampler;
  // A function held at its quota is at its maxScale on the data plane: what it cannot serve soon is refused at once.
  // One held at no sandbox (the other function has both) has its waiting invocations refused as at no capacity.
  for (const status of statuses) assert.ok(['200', '429 ERR_TOO_MANY_REQUESTS', '503 ERR_NO_CAPACITY'].includes(status), `${status}: ${lastRefusals.join('\n')}`);
  assert.ok(statuses.filter((s) => s === '200').length >= 2, `served two at a time: ${statuses.join(', ')}`);
  assert.equal(maxSandboxes, 2, 'the scope reached its quota and never went over it');
  assert.ok(wasHeldBack, 'describe named the quota that held a function back');

  const described = await cli('describe', 'team-a-one');
  assert.equal(described.code, 0, described.stderr);
  assert.match(described.stdout, /quota: +team-a-\*: \d\/2 sandboxes, \d+\/4096 MiB/);
  const listed = await cli('quota', 'list');
  assert.match(listed.stdout, /team-a-\*\s+\d\s+2\s+\d+\s+4096/);
  const metrics = await fetch(`${cluster.cpUrl}/metrics`, { headers: { authorization: `Bearer ${admin}` } }).then((r) => r.text());
  assert.match(metrics, /^baton_quota_usage\{scope="team-a-\*",resource="sandboxes"\} [0-2]$/m);
  assert.match(metrics, /^baton_quota_limit\{scope="team-a-\*",resource="sandboxes"\} 2$/m);

  // Without the quota the same load scales past 2.
  const deleted = await cli('quota', 'delete', 'team-a-*');
  assert.equal(deleted.code, 0, deleted.stderr);
  assert.deepEqual((await api('GET', '/v1/quotas')).json.quotas, []);
  lastRefusals.length = 0;
  const load = Promise.all(Array.from({ length: 4 }, () => invoke('team-a-one', 1500)));
  await waitFor(async () => {
    const { status } = (await api('GET', '/v1/functions/team-a-one')).json;
    return status.ready + status.starting >= 3;
  }, { message: 'team-a-one scaling past the old quota', timeoutMs: 15_000 });
  assert.deepEqual(await load, ['200', '200', '200', '200'], lastRefusals.join('\n'));

  const audit = (await api('GET', '/v1/audit?limit=1000')).json.entries as { action: string; target: string; status: number }[];
  assert.deepEqual(audit.filter((e) => e.action.startsWith('quota.')).map((e) => [e.action, e.target, e.status]), [
    ['quota.set', 'team-a-*', 403], ['quota.delete', 'team-a-*', 403], ['quota.set', 'Team-A', 400], ['quota.set', 'team-a-*', 400], ['quota.set', 'team-a-*', 400], ['quota.delete', 'team-z-*', 404],
    ['quota.set', 'team-a-*', 200], ['quota.delete', 'team-a-*', 200],
  ], 'every quota change, refused ones too');
  assert.ok(audit.some((e) => e.action === 'function.create' && e.target === 'team-a-big' && e.status === 403), 'the refused deploy is audited');
});

test('after a control-plane restart a quota is read back from the store and its usage rebuilt from the sandboxes the workers report', async () => {
  assert.equal((await cli('quota', 'set', 'team-c-*', '--sandboxes', '3')).code, 0);
  const created = await api('POST', '/v1/functions', { name: 'team-c-fn', runtime: 'emulated', scaling: { minScale: 2, maxScale: 5 } });
  assert.equal(created.status, 201, JSON.stringify(created.json));
  await waitFor(async () => (await api('GET', '/v1/functions/team-c-fn')).json.status.ready === 2, { message: 'two ready sandboxes', timeoutMs: 20_000 });
  await cluster.restartControlPlane();
  await waitFor(async () => {
    const listed = await api('GET', '/v1/quotas');
    const quota = listed.status === 200 ? listed.json.quotas.find((q: { scope: string }) => q.scope === 'team-c-*') : undefined;
    return quota?.maxSandboxes === 3 && quota.sandboxes === 2 && quota.memoryMiB === 2 * 128;
  }, { message: 'the quota back, with the usage of the two adopted sandboxes', timeoutMs: 20_000 });
  assert.equal((await api('DELETE', '/v1/functions/team-c-fn')).status, 200);
  assert.equal((await cli('quota', 'delete', 'team-c-*')).code, 0);
});
