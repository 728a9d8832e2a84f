import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, spawnDaemon, startCluster, type Cluster, type DaemonProcess } from '../kit/cluster.ts';
import { runCli } from '../kit/run-cli.ts';
import { waitFor } from '../kit/wait-for.ts';

/**
 * API tokens against the real daemons (control plane, data plane and a process-runtime worker as
 * processes): roles and scopes on every management route, revocation and expiry, the audit log,
 * invocation auth on the data plane, and no token ever in a log or a GET answer.
 */

interface Created { token: string; id: string; role: string; scopes: string[]; expiresAt?: string }

let cluster: Cluster;
let emulatedWorker: DaemonProcess | undefined;
let admin: string;
const tokens: Record<string, Created> = {};
const shownTokens: string[] = [];

async function api(token: string | undefined, method: string, path: string, body?: unknown): Promise<{ status: number; headers: Headers; text: string; json: unknown }> {
  const headers: Record<string, string> = {};
  if (token !== undefined) headers['authorization'] = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${cluster.cpUrl}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

const codeOf = (json: unknown): string | undefined => (json as { error?: { code?: string } } | undefined)?.error?.code;

async function createToken(role: string, scopes: string[] = [], extra: Record<string, unknown> = {}): Promise<Created> {
  const res = await api(admin, 'POST', '/v1/tokens', { role, scopes, ...extra });
  assert.equal(res.status, 201, res.text);
  const created = res.json as Created;
  assert.match(created.token, /^baton_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
  shownTokens.push(created.token);
  return created;
}

const emulated = (name: string, extra: Record<string, unknown> = {}) => ({ name, runtime: 'emulated', ...extra });

before(async () => {
  cluster = await startCluster({ auth: true });
  admin = cluster.adminToken as string;
  // A second worker for the emulated functions (the kit's worker runs processes).
  emulatedWorker = spawnDaemon('worker', ['--port', '0', '--data-dir', join(cluster.dir, 'worker-emulated'), '--control-plane-url', cluster.cpUrl, '--runtime', 'emulated', '--heartbeat-interval-ms', '200']);
  await emulatedWorker.waitForLog((l) => l['msg'] === 'worker started');
  shownTokens.push(admin);
  const mode = (await stat(join(cluster.dir, 'cp', 'admin-token'))).mode & 0o777;
  assert.equal(mode, 0o600, 'the admin token file is readable by its owner only');
  tokens['viewer'] = await createToken('viewer');
  tokens['viewerA'] = await createToken('viewer', ['team-a-*']);
  tokens['deployer'] = await createToken('deployer');
  tokens['deployerA'] = await createToken('deployer', ['team-a-*']);
  tokens['invoker'] = await createToken('invoker');
  tokens['invokerA'] = await createToken('invoker', ['team-a-*']);
  for (const name of ['team-a-x', 'team-b-y']) assert.equal((await api(admin, 'POST', '/v1/functions', emulated(name))).status, 201);
});
after(async () => {
  await emulatedWorker?.stop();
  await cluster?.stop();
});

describe('the management API', () => {
  test('without a valid token every management call is 401 ERR_UNAUTHENTICATED with WWW-Authenticate: Bearer; /healthz is open', async () => {
    const unknown = `baton_${'0'.repeat(12)}_${'A'.repeat(43)}`;
    const forged = `${tokens['viewer']?.token.slice(0, 19)}${'B'.repeat(43)}`;
    for (const token of [undefined, 'nope', unknown, forged]) {
      for (const [method, path, body] of [['GET', '/v1/functions'], ['POST', '/v1/functions', emulated('team-a-z')], ['DELETE', '/v1/functions/team-a-x'], ['GET', '/v1/tokens'], ['GET', '/metrics']] as const) {
        const res = await api(token, method, path, body);
        assert.equal(res.status, 401, `${method} ${path} with ${token === undefined ? 'no token' : 'a bad token'}: ${res.text}`);
        assert.equal(codeOf(res.json), 'ERR_UNAUTHENTICATED');
        assert.equal(res.headers.get('www-authenticate'), 'Bearer');
      }
    }
    assert.equal((await api(undefined, 'GET', '/healthz')).status, 200);
    assert.equal((await api(admin, 'GET', '/v1/functions/team-a-z')).status, 404, 'the refused create changed nothing');
  });

  test('a table of (role, scope, call) → status, run against the real API', async () => {
    const t = (key: string) => (key === 'admin' ? admin : (tokens[key] as Created).token);
    const table: [string, string, string, unknown, number, string?][] = [
      // token, method, path, body, status, code
      ['viewer', 'GET', '/v1/functions', undefined, 200],
      ['viewer', 'GET', '/v1/functions/team-b-y', undefined, 200],
      ['viewer', 'GET', '/v1/functions/team-b-y/sandboxes', undefined, 200],
      ['viewer', 'GET', '/v1/workers', undefined, 200],
      ['viewer', 'GET', '/v1/dataplanes', undefined, 200],
      ['viewer', 'GET', '/metrics', undefined, 200],
      ['viewer', 'POST', '/v1/functions', emulated('team-a-v'), 403, 'ERR_FORBIDDEN'],
      ['viewer', 'DELETE', '/v1/functions/team-a-x', undefined, 403, 'ERR_FORBIDDEN'],
      ['viewer', 'GET', '/v1/tokens', undefined, 403, 'ERR_FORBIDDEN'],
      ['viewer', 'GET', '/v1/audit', undefined, 403, 'ERR_FORBIDDEN'],
      ['viewerA', 'GET', '/v1/functions/team-a-x', undefined, 200],
      ['viewerA', 'GET', '/v1/functions/team-a-missing', undefined, 404, 'ERR_FUNCTION_NOT_FOUND'],
      // Out of scope: the same 403 whether the function exists or not.
      ['viewerA', 'GET', '/v1/functions/team-b-y', undefined, 403, 'ERR_FORBIDDEN'],
      ['viewerA', 'GET', '/v1/functions/team-b-missing', undefined, 403, 'ERR_FORBIDDEN'],
      ['viewerA', 'GET', '/v1/functions/team-b-y/logs', undefined, 403, 'ERR_FORBIDDEN'],
      ['viewerA', 'GET', '/metrics', undefined, 403, 'ERR_FORBIDDEN'],
      ['deployerA', 'POST', '/v1/functions', emulated('team-a-new'), 201],
      ['deployerA', 'PUT', '/v1/functions/team-a-new', emulated('team-a-new', { timeoutMs: 5000 }), 200],
      ['deployerA', 'POST', '/v1/functions', emulated('team-b-new'), 403, 'ERR_FORBIDDEN'],
      ['deployerA', 'PUT', '/v1/functions/team-b-y', emulated('team-b-y'), 403, 'ERR_FORBIDDEN'],
      ['deployerA', 'DELETE', '/v1/functions/team-b-y', undefined, 403, 'ERR_FORBIDDEN'],
      ['deployerA', 'DELETE', '/v1/functions/team-b-missing', undefined, 403, 'ERR_FORBIDDEN'],
      ['deployerA', 'POST', '/v1/functions', { runtime: 'emulated' }, 403, 'ERR_FORBIDDEN'],
      ['deployerA', 'DELETE', '/v1/functions/team-a-new', undefined, 200],
      ['deployerA', 'POST', '/v1/tokens', { role: 'deployer' }, 403, 'ERR_FORBIDDEN'],
      ['deployer', 'POST', '/v1/functions', emulated('team-b-new'), 201],
      ['deployer', 'POST', '/v1/functions', { name: 'Bad Name' }, 400, 'ERR_INVALID_SPEC'],
      ['deployer', 'DELETE', '/v1/functions/team-b-new', undefined, 200],
      ['deployer', 'DELETE', '/v1/tokens/0123456789ab', undefined, 403, 'ERR_FORBIDDEN'],
      ['invoker', 'GET', '/v1/functions', undefined, 403, 'ERR_FORBIDDEN'],
      ['invoker', 'POST', '/v1/functions', emulated('team-a-i'), 403, 'ERR_FORBIDDEN'],
      ['admin', 'GET', '/v1/tokens', undefined, 200],
      ['admin', 'POST', '/v1/tokens', { role: 'admin', scopes: ['team-a-*'] }, 400, 'ERR_INVALID_REQUEST'],
      ['admin', 'POST', '/v1/tokens', { role: 'root' }, 400, 'ERR_INVALID_REQUEST'],
      ['admin', 'DELETE', '/v1/tokens/0123456789ab', undefined, 404, 'ERR_TOKEN_NOT_FOUND'],
      ['admin', 'GET', '/v1/audit', undefined, 200],
    ];
    const failures: string[] = [];
    for (const [key, method, path, body, status, code] of table) {
      const res = await api(t(key), method, path, body);
      if (res.status !== status || (code !== undefined && codeOf(res.json) !== code)) failures.push(`${key} ${method} ${path}: ${res.status} ${res.text.slice(0, 200)} (expected ${status} ${code ?? ''})`);
    }
    assert.deepEqual(failures, []);
  });

  test('Dirigent\'s POST /registerService needs a deployer token in scope, like POST /v1/functions', async () => {
    const register = async (token: string | undefined, name: string) => {
      const res = await fetch(`${cluster.cpUrl}/registerService`, {
        method: 'POST', body: new URLSearchParams({ name, image: 'emulated' }).toString(),
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) },
      });
      return res.status;
    };
    assert.equal(await register(undefined, 'team-a-reg'), 401);
    assert.equal(await register((tokens['viewer'] as Created).token, 'team-a-reg'), 403);
    assert.equal(await register((tokens['deployerA'] as Created).token, 'team-b-reg'), 403);
    assert.equal(await register((tokens['deployerA'] as Created).token, 'team-a-reg'), 200);
    assert.equal((await api(admin, 'GET', '/v1/functions/team-a-reg')).status, 200);
    assert.equal((await api(admin, 'GET', '/v1/functions/team-b-reg')).status, 404, 'the refused one changed nothing');
  });

  test('lists are filtered to the token\'s scope', async () => {
    const names = async (token: string) => ((await api(token, 'GET', '/v1/functions')).json as { functions: { spec: { name: string } }[] }).functions.map((f) => f.spec.name).sort();
    const all = await names((tokens['viewer'] as Created).token);
    assert.deepEqual(await names((tokens['viewerA'] as Created).token), all.filter((n) => n.startsWith('team-a-')));
    assert.ok(all.includes('team-a-x') && all.includes('team-b-y'));
  });

  test('a revoked token is refused from the moment the revocation returns; an expired one once its time has passed', async () => {
    const doomed = await createToken('deployer');
    assert.equal((await api(doomed.token, 'GET', '/v1/functions')).status, 200);
    const revoked = await runCli(['token', 'revoke', doomed.id], { env: { BATON_URL: cluster.cpUrl, BATON_TOKEN: admin } });
    assert.equal(revoked.code, 0, revoked.stderr);
    const after = await api(doomed.token, 'GET', '/v1/functions');
    assert.equal(after.status, 401);
    assert.equal(codeOf(after.json), 'ERR_UNAUTHENTICATED');

    const brief = await createToken('viewer', [], { expiresInMs: 1_000 });
    assert.ok(brief.expiresAt !== undefined);
    await waitFor(() => Date.now() > Date.parse(brief.expiresAt as string) + 50, { timeoutMs: 10_000, message: 'the expiry time to pass' });
    assert.equal((await api(brief.token, 'GET', '/v1/functions')).status, 401);
    const listed = await runCli(['token', 'list'], { env: { BATON_URL: cluster.cpUrl, BATON_TOKEN: admin } });
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, new RegExp(`${doomed.id}\\s+deployer\\s+\\*\\s+revoked`));
    assert.match(listed.stdout, new RegExp(`${brief.id}\\s+viewer\\s+\\*\\s+(expired|active)`));
  });

  test('the CLI creates a scoped token with an expiry and prints it once; list shows ids, never secrets', async () => {
    const env = { BATON_URL: cluster.cpUrl, BATON_TOKEN: admin };
    const created = await runCli(['token', 'create', '--role', 'deployer', '--scope', 'team-c-*', '--scope', 'shared-*', '--expires', '30d', '--description', 'team c CI'], { env });
    assert.equal(created.code, 0, created.stderr);
    const token = created.stdout.trim();
    assert.match(token, /^baton_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    shownTokens.push(token);
    const id = token.slice(6, 18);
    const deployed = await runCli(['list', '--json'], { env: { BATON_URL: cluster.cpUrl, BATON_TOKEN: token } });
    assert.equal(deployed.code, 0, deployed.stderr);
    assert.deepEqual((JSON.parse(deployed.stdout) as { functions: unknown[] }).functions, [], 'nothing in its scope yet');
    const listed = await runCli(['token', 'list', '--json'], { env });
    const mine = (JSON.parse(listed.stdout) as { tokens: Record<string, unknown>[] }).tokens.find((t) => t['id'] === id);
    assert.deepEqual(mine?.['scopes'], ['team-c-*', 'shared-*']);
    assert.equal(mine?.['description'], 'team c CI');
    assert.ok(typeof mine?.['expiresAt'] === 'string' && Date.parse(mine['expiresAt']) > Date.now() + 29 * 86_400_000);
    const bad = await runCli(['token', 'create', '--role', 'deployer', '--expires', 'soon'], { env });
    assert.equal(bad.code, 2);
  });

  test('the per-token rate limit answers 429 with Retry-After', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'baton-rate-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    // A refill of one call per 10 s: the third call in a row is over, however slow the machine.
    const daemon = spawnDaemon('controlplane', ['--port', '0', '--data-dir', dir, '--management-rate-per-second', '0.1', '--management-rate-burst', '2']);
    t.after(() => daemon.stop());
    const line = await daemon.waitForLog((l) => l['msg'] === 'control plane listening');
    const url = line['url'] as string;
    const token = (await readFile(join(dir, 'admin-token'), 'utf8')).trim();
    const call = () => fetch(`${url}/v1/functions`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal((await call()).status, 200);
    assert.equal((await call()).status, 200);
    const refused = await call();
    assert.equal(refused.status, 429);
    assert.equal(codeOf(await refused.json()), 'ERR_TOO_MANY_REQUESTS');
    assert.ok(Number(refused.headers.get('retry-after')) >= 1);
    assert.equal((await fetch(`${url}/healthz`)).status, 200, 'health checks are not limited');
    assert.ok(!daemon.logs.some((l) => JSON.stringify(l).includes(token)), 'the admin token is not logged');
  });
});

describe('invocation auth', () => {
  test('auth: token needs an invoking token in scope on the data plane; revocation is refused at once; auth: none pays nothing', async () => {
    for (const name of ['team-a-secure', 'team-b-secure']) assert.equal((await api(admin, 'POST', '/v1/functions', emulated(name, { auth: 'token' }))).status, 201);
    assert.equal((await api(admin, 'POST', '/v1/functions', emulated('team-a-open'))).status, 201);
    const invoke = async (name: string, token?: string) => {
      const res = await fetch(`${cluster.dpUrl}/fn/${name}/`, { headers: { 'x-baton-exec-ms': '1', ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) } });
      return { status: res.status, code: res.headers.get('x-baton-error'), auth: res.headers.get('www-authenticate'), body: await res.text() };
    };
    assert.equal((await invoke('team-a-open')).status, 200);
    const none = await invoke('team-a-secure');
    assert.deepEqual([none.status, none.code, none.auth], [401, 'ERR_UNAUTHENTICATED', 'Bearer']);
    assert.equal((await invoke('team-a-secure', 'baton_000000000000_' + 'x'.repeat(43))).status, 401);
    const byViewer = await invoke('team-a-secure', (tokens['viewer'] as Created).token);
    assert.deepEqual([byViewer.status, byViewer.code], [403, 'ERR_FORBIDDEN'], 'a viewer reads, it does not invoke');
    const outOfScope = await invoke('team-b-secure', (tokens['invokerA'] as Created).token);
    assert.deepEqual([outOfScope.status, outOfScope.code], [403, 'ERR_FORBIDDEN']);
    for (const key of ['invoker', 'invokerA', 'deployerA']) {
      const ok = await invoke('team-a-secure', (tokens[key] as Created).token);
      assert.equal(ok.status, 200, `${key}: ${ok.body}`);
    }
    assert.equal((await invoke('team-a-secure', admin)).status, 200);

    // Asynchronously: checked when accepted, delivered by the data plane itself, its record shown only with a token.
    const refusedAsync = await fetch(`${cluster.dpUrl}/fn/team-a-secure/`, { method: 'POST', headers: { 'x-baton-invocation-type': 'Event', 'x-baton-exec-ms': '1' }, body: '{}' });
    assert.equal(refusedAsync.status, 401);
    const accepted = await fetch(`${cluster.dpUrl}/fn/team-a-secure/`, { method: 'POST', headers: { 'x-baton-invocation-type': 'Event', 'x-baton-exec-ms': '1', authorization: `Bearer ${(tokens['invokerA'] as Created).token}` }, body: '{}' });
    assert.equal(accepted.status, 202, await accepted.clone().text());
    const { id } = await accepted.json() as { id: string };
    const shown = await runCli(['invocations', 'team-a-secure', '--json'], { env: { BATON_URL: cluster.cpUrl, BATON_DATAPLANE_URL: cluster.dpUrl, BATON_TOKEN: (tokens['invokerA'] as Created).token } });
    assert.equal(shown.code, 0, shown.stderr);
    assert.ok((JSON.parse(shown.stdout) as { invocations: { id: string }[] }).invocations.some((i) => i.id === id), 'the CLI lists it with its token');
    const done = await waitFor(async () => {
      const res = await fetch(`${cluster.dpUrl}/v1/invocations/${id}`, { headers: { authorization: `Bearer ${(tokens['invokerA'] as Created).token}` } });
      const view = await res.json() as { state: string; attempts: { status?: number }[] };
      return view.state === 'succeeded' || view.state === 'failed' || view.state === 'dead-lettered' ? view : undefined;
    }, { timeoutMs: 20_000, message: 'the async invocation to finish' });
    assert.equal(done.state, 'succeeded', JSON.stringify(done));
    assert.equal((await fetch(`${cluster.dpUrl}/v1/invocations/${id}`)).status, 401, 'its record needs a token too');
    assert.equal((await fetch(`${cluster.dpUrl}/v1/invocations/${id}`, { headers: { authorization: `Bearer ${(tokens['invoker'] as Created).token}` } })).status, 200);
    const listed = await (await fetch(`${cluster.dpUrl}/v1/invocations`)).json() as { invocations: { id: string }[] };
    assert.ok(!listed.invocations.some((i) => i.id === id), 'left out of an unauthenticated list');

    const doomed = await createToken('invoker', ['team-a-*']);
    assert.equal((await invoke('team-a-secure', doomed.token)).status, 200, 'a new token works once its creation returned');
    assert.equal((await api(admin, 'DELETE', `/v1/tokens/${doomed.id}`)).status, 200);
    const revoked = await invoke('team-a-secure', doomed.token);
    assert.deepEqual([revoked.status, revoked.code], [401, 'ERR_UNAUTHENTICATED']);
  });

  test('a process function with auth: token never sees the caller\'s token', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'baton-auth-fn-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await cp(join(ROOT, 'test/fixtures/echo-event'), dir, { recursive: true });
    await writeFile(join(dir, 'baton.yaml'), 'name: team-a-echo\nhandler: index.handler\nauth: token\n');
    const deployed = await runCli(['deploy', '-f', join(dir, 'baton.yaml')], { env: { BATON_URL: cluster.cpUrl, BATON_TOKEN: (tokens['deployerA'] as Created).token } });
    assert.equal(deployed.code, 0, deployed.stderr);
    const token = (tokens['invokerA'] as Created).token;
    const invoked = await runCli(['invoke', 'team-a-echo', '--path', '/echo'], { env: { BATON_URL: cluster.cpUrl, BATON_DATAPLANE_URL: cluster.dpUrl, BATON_TOKEN: token } });
    assert.equal(invoked.code, 0, invoked.stderr);
    const event = (JSON.parse(invoked.stdout) as { event: { headers: Record<string, string> } }).event;
    assert.ok(event.headers !== undefined && Object.keys(event.headers).length > 0, invoked.stdout);
    assert.equal(Object.keys(event.headers).find((h) => h.toLowerCase() === 'authorization'), undefined);
    assert.ok(!invoked.stdout.includes(token));
  });
});

describe('the audit log and secrets', () => {
  test('every change is a JSON line with the token id, what, the target and the outcome; refused ones too', async () => {
    const res = await api(admin, 'GET', '/v1/audit?limit=1000');
    assert.equal(res.status, 200);
    const entries = (res.json as { entries: { seq: number; tokenId: string | null; action: string; target: string | null; status: number; code?: string; at: string }[] }).entries;
    const find = (tokenId: string | null, action: string, target: string, status: number) => entries.find((e) => e.tokenId === tokenId && e.action === action && e.target === target && e.status === status);
    const deployerA = (tokens['deployerA'] as Created).id;
    assert.ok(find(deployerA, 'function.create', 'team-a-new', 201), 'an allowed create');
    assert.ok(find(deployerA, 'function.create', 'team-b-new', 403)?.code === 'ERR_FORBIDDEN', 'a forbidden create, with its code');
    assert.ok(find(deployerA, 'function.delete', 'team-a-new', 200));
    // Refused before its body is read: an unauthenticated create names no target; a delete names its path's.
    assert.ok(entries.some((e) => e.tokenId === null && e.action === 'function.create' && e.target === null && e.status === 401), 'an unauthenticated create');
    assert.ok(find(null, 'function.delete', 'team-a-x', 401), 'an unauthenticated delete');
    assert.ok(entries.some((e) => e.action === 'token.revoke' && e.status === 200));
    assert.ok(entries.some((e) => e.action === 'token.create' && e.status === 201 && e.tokenId !== null));
    assert.ok(entries.every((e, i) => i === 0 || e.seq > (entries[i - 1] as { seq: number }).seq), 'in order');
    const file = await readFile(join(cluster.dir, 'cp', 'audit.log'), 'utf8');
    assert.equal(file.trim().split('\n').length >= entries.length, true);
    const follow = await runCli(['audit', '--json', '--tail', '3'], { env: { BATON_URL: cluster.cpUrl, BATON_TOKEN: admin } });
    assert.equal(follow.code, 0, follow.stderr);
    assert.equal(follow.stdout.trim().split('\n').length, 3);
  });

  test('baton audit --follow prints a change made after it started, and stops on Ctrl-C', async () => {
    const controller = new AbortController();
    let seen = '';
    const following = runCli(['audit', '--follow', '--json', '--tail', '1'], {
      env: { BATON_URL: cluster.cpUrl, BATON_TOKEN: admin }, signal: controller.signal, onStdout: (text) => { seen += text; },
    });
    await waitFor(() => seen.length > 0, { timeoutMs: 10_000, message: 'the last entry' });
    assert.equal((await api((tokens['deployerA'] as Created).token, 'POST', '/v1/functions', emulated('team-a-followed'))).status, 201);
    await waitFor(() => seen.includes('"target":"team-a-followed"'), { timeoutMs: 10_000, message: 'the new entry to be followed' });
    controller.abort();
    const result = await following;
    assert.equal(result.code, 0, result.stderr);
    const followed = result.stdout.trim().split('\n').map((l) => JSON.parse(l) as { action: string; target: string; status: number });
    assert.deepEqual(followed.at(-1), { ...followed.at(-1), action: 'function.create', target: 'team-a-followed', status: 201 });
  });

  test('no token appears in any daemon\'s log, in the audit log or in a GET answer', async () => {
    assert.ok(shownTokens.length >= 8);
    const answers = await Promise.all(['/v1/tokens', '/v1/functions', '/v1/audit?limit=10000', '/v1/dataplanes', '/v1/workers', '/metrics'].map(async (path) => (await api(admin, 'GET', path)).text));
    const auditFile = await readFile(join(cluster.dir, 'cp', 'audit.log'), 'utf8');
    const logs = [cluster.controlplane, cluster.dataplane, cluster.worker, emulatedWorker as DaemonProcess].map((d) => d.logs.map((l) => JSON.stringify(l)).join('\n'));
    for (const token of shownTokens) {
      const secret = token.slice(19);
      for (const [where, text] of [...answers.map((a, i) => [`answer ${i}`, a] as const), ['audit.log', auditFile] as const, ...logs.map((l, i) => [`log ${i}`, l] as const)]) {
        assert.ok(!text.includes(secret), `a token's secret in ${where}`);
      }
    }
    const listed = (JSON.parse(answers[0] as string) as { tokens: Record<string, unknown>[] }).tokens;
    assert.ok(listed.length >= 8 && listed.every((t) => !('hash' in t) && !('token' in t)));
  });
});
