import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RoutingChange, RoutingUpdate } from '../../src/api/dataplane.ts';
import { bearerToken, compileScopes, generateToken, hashToken, tokenId, tokenMatches } from '../../src/api/tokens.ts';
import { resolveClientOptions } from '../../src/cli/client.ts';
import { parseExpiry } from '../../src/cli/commands/token.ts';
import { ManagementAuth } from '../../src/controlplane/management-auth.ts';
import { TokenRegistry, type Principal } from '../../src/controlplane/token-registry.ts';
import { BatonError } from '../../src/core/errors.ts';
import { RoutingTable } from '../../src/dataplane/routing-table.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { ManualClock } from '../kit/manual-clock.ts';
import { MemoryStore } from '../kit/memory-store.ts';

const ADMIN: Principal = { tokenId: 'aaaaaaaaaaaa', role: 'admin', isUnscoped: true, inScope: () => true };
const codeOf = (err: unknown): string | undefined => (err instanceof BatonError ? err.code : undefined);

function makeRegistry(nowMs = { value: 1_000_000 }) {
  const published: RoutingChange[] = [];
  const store = new MemoryStore();
  const registry = new TokenRegistry({ store, log: silentLogger(), routing: { publish: (c) => published.push(c), delivered: () => Promise.resolve() }, now: () => nowMs.value });
  return { registry, store, published, nowMs };
}

test('a token is baton_<12 hex id>_<43 base64url>, its id readable, its hash matching only itself', () => {
  const { token, id } = generateToken();
  assert.match(token, /^baton_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
  assert.equal(tokenId(token), id);
  assert.equal(tokenMatches(token, hashToken(token)), true);
  assert.equal(tokenMatches(`${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`, hashToken(token)), false);
  assert.equal(tokenId('baton_xyz_abc'), undefined);
  assert.equal(bearerToken(`Bearer ${token}`), token);
  assert.equal(bearerToken(`bearer  ${token} `), token);
  assert.equal(bearerToken(`Basic ${token}`), undefined);
  assert.equal(bearerToken(undefined), undefined);
});

test('scopes are whole-name globs; none covers every function', () => {
  const teamA = compileScopes(['team-a-*', 'shared']);
  assert.deepEqual(['team-a-x', 'team-a-', 'shared', 'team-b-x', 'xteam-a-x', 'shared-2'].map(teamA), [true, true, true, false, false, false]);
  assert.equal(compileScopes([])('anything'), true);
  assert.equal(compileScopes(['a*b'])('a.b'), true, 'only * is special');
  assert.equal(compileScopes(['a.b'])('axb'), false, 'a dot is a dot');
});

test('the registry keeps only hashes, authenticates in constant time, refuses revoked and expired tokens, and publishes every live one with its role', async () => {
  const { registry, store, published, nowMs } = makeRegistry();
  const deployer = await registry.create({ role: 'deployer', scopes: ['team-a-*'] }, ADMIN);
  const viewer = await registry.create({ role: 'viewer', expiresInMs: 60_000 }, ADMIN);
  const stored = JSON.stringify([...store.records.get('tokens')?.values() ?? []]);
  assert.ok(!stored.includes(deployer.token) && !stored.includes(deployer.token.slice(19)), 'the store holds no token');
  assert.ok(stored.includes(hashToken(deployer.token)));
  assert.ok(!JSON.stringify(registry.list()).includes(hashToken(deployer.token)), 'the list holds no hash');

  const who = registry.authenticate(deployer.token);
  assert.deepEqual([who.tokenId, who.role, who.isUnscoped, who.inScope('team-a-1'), who.inScope('team-b-1')], [deployer.record.id, 'deployer', false, true, false]);
  assert.equal(codeOf(catching(() => registry.authenticate(undefined))), 'ERR_UNAUTHENTICATED');
  assert.equal(codeOf(catching(() => registry.authenticate(`baton_${deployer.record.id}_${'A'.repeat(43)}`))), 'ERR_UNAUTHENTICATED', 'the right id with the wrong secret');

  // Every live token reaches the data planes, with its role: they refuse a viewer's with 403.
  assert.deepEqual(published.map((c) => c.type), ['token.put', 'token.put']);
  assert.deepEqual(registry.routingTokens().map((t) => [t.id, t.role]), [[deployer.record.id, 'deployer'], [viewer.record.id, 'viewer']]);

  nowMs.value += 60_000;
  assert.equal(codeOf(catching(() => registry.authenticate(viewer.token))), 'ERR_UNAUTHENTICATED', 'expired');
  await registry.revoke(deployer.record.id, ADMIN);
  assert.equal(codeOf(catching(() => registry.authenticate(deployer.token))), 'ERR_UNAUTHENTICATED', 'revoked');
  assert.deepEqual(published.at(-1), { type: 'token.delete', id: deployer.record.id });
  assert.deepEqual(registry.routingTokens(), [], 'the viewer\'s expired, the deployer\'s revoked');
  await assert.rejects(registry.revoke('0123456789ab', ADMIN), (err) => codeOf(err) === 'ERR_TOKEN_NOT_FOUND');
  await assert.rejects(registry.create({ role: 'admin', scopes: ['x-*'] }, ADMIN), (err) => codeOf(err) === 'ERR_INVALID_REQUEST');
  await assert.rejects(registry.create({ role: 'viewer', scopes: ['UPPER'] }, ADMIN), (err) => codeOf(err) === 'ERR_INVALID_REQUEST');

  // Loaded again (a restart), a revoked token stays revoked and its bootstrap is not re-registered.
  const again = new TokenRegistry({ store, log: silentLogger(), routing: { publish: () => undefined, delivered: () => Promise.resolve() }, now: () => nowMs.value });
  await again.load();
  assert.equal(codeOf(catching(() => again.authenticate(deployer.token))), 'ERR_UNAUTHENTICATED');
  assert.equal(await again.bootstrap(deployer.token), false);
  const boot = generateToken().token;
  assert.equal(await again.bootstrap(boot), true);
  assert.equal(again.authenticate(boot).role, 'admin');
  await assert.rejects(again.bootstrap('not a token'), (err) => codeOf(err) === 'ERR_INVALID_CONFIG');
});

test('management access by role, and the per-token bucket: burst, then the rate, then 429 with retryAfterSeconds', async () => {
  const { registry } = makeRegistry();
  const clock = new ManualClock();
  const auth = new ManagementAuth({ mode: 'token', tokens: registry, clock, ratePerSecond: 0, burst: 1 });
  const tokens = Object.fromEntries(await Promise.all((['admin', 'deployer', 'viewer', 'invoker'] as const).map(async (role) => [role, (await registry.create({ role }, ADMIN)).token])));
  const allowed = (role: string, access: 'read' | 'deploy' | 'admin') => {
    try {
      auth.check({ authorization: `Bearer ${tokens[role]}` }, access);
      return true;
    } catch (err) {
      assert.equal(codeOf(err), 'ERR_FORBIDDEN');
      return false;
    }
  };
  const table = ['admin', 'deployer', 'viewer', 'invoker'].map((role) => [role, allowed(role, 'read'), allowed(role, 'deploy'), allowed(role, 'admin')]);
  assert.deepEqual(table, [['admin', true, true, true], ['deployer', true, true, false], ['viewer', true, false, false], ['invoker', false, false, false]]);

  const limited = new ManagementAuth({ mode: 'token', tokens: registry, clock, ratePerSecond: 2, burst: 3 });
  const call = () => catching(() => limited.check({ authorization: `Bearer ${tokens['viewer']}` }, 'read'));
  assert.deepEqual([call(), call(), call()].map(codeOf), [undefined, undefined, undefined], 'the burst');
  const refused = call();
  assert.equal(codeOf(refused), 'ERR_TOO_MANY_REQUESTS');
  assert.deepEqual((refused as BatonError).details, { retryAfterSeconds: 1 });
  clock.advance(500);
  assert.equal(codeOf(call()), undefined, 'one more after half a second at 2/s');
  assert.equal(codeOf(call()), 'ERR_TOO_MANY_REQUESTS');
  assert.equal(codeOf(catching(() => limited.check({ authorization: `Bearer ${tokens['admin']}` }, 'read'))), undefined, 'another token has its own bucket');
  const open = new ManagementAuth({ mode: 'none', tokens: registry, clock, ratePerSecond: 2, burst: 3 });
  assert.equal(open.check({}, 'admin').role, 'admin', 'authMode none: everything, no token');
});

test('the data plane\'s tokens: a snapshot replaces them, deltas add and revoke, expiry and scope are checked', () => {
  const table = new RoutingTable<null>({ createTraffic: () => null, onFunctionRemoved: () => undefined, onEndpointAdded: () => undefined, onEndpointRetired: () => undefined, onCapacity: () => undefined });
  const a = generateToken();
  const b = generateToken();
  const held = (t: { token: string; id: string }, scopes: string[] = [], expiresAtMs?: number) => ({ id: t.id, hash: hashToken(t.token), role: 'invoker' as const, scopes, ...(expiresAtMs === undefined ? {} : { expiresAtMs }) });
  const snapshot: RoutingUpdate = { kind: 'snapshot', epoch: 'e', version: 1, functions: [], endpoints: [], tokens: [held(a, ['team-a-*'], 5_000)] };
  table.apply(snapshot);
  const check = (token: string | undefined, fn: string, nowMs = 0) => table.tokens.check(token === undefined ? undefined : `Bearer ${token}`, fn, nowMs)?.code;
  assert.equal(check(a.token, 'team-a-x'), undefined);
  assert.equal(check(a.token, 'team-a-x'), undefined, 'again, from the verified bytes');
  const forged = `${a.token.slice(0, 19)}${a.token.slice(19).split('').reverse().join('')}`;
  assert.equal(check(forged, 'team-a-x'), 'ERR_UNAUTHENTICATED', 'the right id with another secret, after the real one was verified');
  assert.equal(check(`${a.token}x`, 'team-a-x'), 'ERR_UNAUTHENTICATED', 'a longer one');
  assert.equal(table.tokens.check(`Basic ${a.token}`, 'team-a-x', 0)?.code, 'ERR_UNAUTHENTICATED');
  assert.equal(table.tokens.check(`bearer ${a.token}`, 'team-a-x', 0), undefined, 'the scheme is case-insensitive');
  assert.equal(check(a.token, 'team-b-x'), 'ERR_FORBIDDEN');
  const viewer = generateToken();
  table.apply({ kind: 'delta', epoch: 'e', baseVersion: 1, version: 2, changes: [{ type: 'token.put', token: { ...held(viewer), role: 'viewer' } }] });
  assert.equal(check(viewer.token, 'team-a-x'), 'ERR_FORBIDDEN', 'a viewer\'s token is known and may not invoke');
  assert.equal(check(`${viewer.token.slice(0, 19)}${'A'.repeat(43)}`, 'team-a-x'), 'ERR_UNAUTHENTICATED', 'a viewer\'s id with another secret');
  assert.equal(check(a.token, 'team-a-x', 5_000), 'ERR_UNAUTHENTICATED', 'expired');
  assert.equal(check(b.token, 'team-a-x'), 'ERR_UNAUTHENTICATED', 'not pushed yet');
  assert.equal(check(undefined, 'team-a-x'), 'ERR_UNAUTHENTICATED');
  table.apply({ kind: 'delta', epoch: 'e', baseVersion: 2, version: 3, changes: [{ type: 'token.put', token: held(b) }, { type: 'token.delete', id: a.id }] });
  assert.equal(check(b.token, 'anything'), undefined);
  assert.equal(check(a.token, 'team-a-x'), 'ERR_UNAUTHENTICATED', 'revoked');
  table.apply({ kind: 'snapshot', epoch: 'f', version: 1, functions: [], endpoints: [] });
  assert.equal(table.tokens.size, 0, 'a snapshot without tokens holds none');
});

test('the CLI takes its token from --token, then BATON_TOKEN, then the client config — only for the control plane the config names', () => {
  const config = { url: 'http://127.0.0.1:9190', dataplaneUrl: 'http://127.0.0.1:8180', token: 'from-config' };
  assert.deepEqual(resolveClientOptions({}, {}, config), { url: 'http://127.0.0.1:9190', dataplaneUrl: 'http://127.0.0.1:8180', token: 'from-config' });
  assert.equal(resolveClientOptions({}, { BATON_TOKEN: 'from-env' }, config).token, 'from-env');
  assert.equal(resolveClientOptions({ token: 'from-flag' }, { BATON_TOKEN: 'from-env' }, config).token, 'from-flag');
  assert.deepEqual(resolveClientOptions({ url: 'http://10.0.0.9:9090' }, {}, config), { url: 'http://10.0.0.9:9090', dataplaneUrl: 'http://127.0.0.1:8080', token: undefined }, 'another cluster gets no token of this one');
  assert.equal(resolveClientOptions({}, { BATON_TOKEN: '' }, {}).token, undefined);
  assert.deepEqual([parseExpiry('30d'), parseExpiry('12h'), parseExpiry('90m'), parseExpiry('45s')], [30 * 86_400_000, 12 * 3_600_000, 90 * 60_000, 45_000]);
  assert.throws(() => parseExpiry('soon'), /--expires/);
});

function catching(run: () => unknown): unknown {
  try {
    run();
    return undefined;
  } catch (err) {
    return err;
  }
}
