import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { workerToControlPlane } from '../../src/api/contracts.ts';
import { BatonError } from '../../src/core/errors.ts';
import { LeaderClient } from '../../src/transport/leader-client.ts';

/** A loopback HTTP server answering every request with `answer()`; counts what it got. */
async function peer(answer: () => { status: number; body: unknown }): Promise<{ url: string; calls: () => number; server: Server }> {
  let calls = 0;
  const server = createServer((req, res) => {
    calls++;
    req.resume();
    const { status, body } = answer();
    const data = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) }).end(data);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, calls: () => calls, server };
}

const notLeader = (leaderUrl?: string) => ({
  status: 503, body: new BatonError('ERR_NOT_LEADER', 'a follower', { details: leaderUrl === undefined ? {} : { leaderUrl } }).toBody(),
});

test('a leader client follows a follower\'s hint to the leader, moves on from one that does not answer, and keeps calling the leader', async (t) => {
  const leader = await peer(() => ({ status: 200, body: {} }));
  const follower = await peer(() => notLeader(leader.url));
  const gone = await peer(() => ({ status: 200, body: {} }));
  await new Promise<void>((resolve) => gone.server.close(() => resolve()));
  t.after(() => { leader.server.close(); follower.server.close(); });
  // The leader is not in the list: the follower names it.
  const client = new LeaderClient({ urls: [gone.url, follower.url] });
  t.after(() => client.close());
  await assert.rejects(client.invoke(workerToControlPlane.workerHeartbeat, { workerId: 'w1' }), (err: unknown) => err instanceof BatonError && err.code === 'ERR_UNAVAILABLE');
  assert.equal(client.leaderUrl, follower.url, 'the next call goes to the next control plane');
  assert.deepEqual(await client.invoke(workerToControlPlane.workerHeartbeat, { workerId: 'w1' }), {});
  assert.equal(client.leaderUrl, leader.url);
  assert.deepEqual(await client.invoke(workerToControlPlane.workerHeartbeat, { workerId: 'w1' }), {});
  assert.equal(follower.calls(), 1, 'once the leader is known, followers are not asked');
  assert.equal(leader.calls(), 2);
});

test('with no leader elected, a call is tried once more than there are control planes and fails with ERR_NOT_LEADER (retryable)', async (t) => {
  const a = await peer(() => notLeader());
  const b = await peer(() => notLeader());
  t.after(() => { a.server.close(); b.server.close(); });
  const client = new LeaderClient({ urls: [a.url, b.url] });
  t.after(() => client.close());
  await assert.rejects(client.invoke(workerToControlPlane.workerHeartbeat, { workerId: 'w1' }), (err: unknown) => err instanceof BatonError && err.code === 'ERR_NOT_LEADER' && err.isRetryable);
  assert.equal(a.calls() + b.calls(), 3);
});

test('a leader client refuses an empty list', () => {
  assert.throws(() => new LeaderClient({ urls: [] }), /at least one/);
});
