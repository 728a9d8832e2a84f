import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { connect } from 'node:net';
import { test } from 'node:test';
import { silentLogger } from '../../src/observability/logger.ts';
import { execTool } from '../../src/worker/container/exec.ts';
import { NetworkPool, type NetworkSlot } from '../../src/worker/container/network-pool.ts';

/**
 * The container runtime's network pool against real namespaces, veths and a bridge (root, as in
 * CI). Addresses are only inside the namespaces this test makes.
 */

/** Answers one line to every connection, from inside the namespace. */
function serveIn(slot: NetworkSlot, port: number): () => void {
  const child = spawn('ip', ['netns', 'exec', slot.name, process.execPath, '-e',
    `require('node:net').createServer((s) => s.end('hi from ${slot.name}\\n')).listen(${port}, '0.0.0.0', () => console.log('listening'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
  return () => child.kill('SIGKILL');
}

async function waitListening(slot: NetworkSlot, port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const out = await execTool('ip', ['netns', 'exec', slot.name, 'ss', '-Hltn', `sport = :${port}`]).catch(() => '');
    if (out.trim() !== '') return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`nothing listens on ${slot.address}:${port} in ${slot.name}`);
}

/** One line from address:port; fails after `ms` (generous: a stale neighbour entry made this hang for good). */
function readLine(address: string, port: number, ms: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: address, port });
    let text = '';
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`no answer from ${address}:${port} within ${ms} ms`)); }, ms);
    socket.on('data', (d) => { text += d.toString(); });
    socket.on('end', () => { clearTimeout(timer); resolve(text.trim()); });
    socket.on('error', (err) => { clearTimeout(timer); reject(err); });
  });
}

async function waitUntil(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`not so after 10 s: ${what}`);
}

/** The interface index of the host end of the namespace's veth (a new pair gets a new one). */
const hostPeerOf = async (slot: NetworkSlot) => /eth0@if(\d+)/.exec(await execTool('ip', ['-n', slot.name, '-o', 'link', 'show', 'eth0']))?.[1];
const macIn = async (slot: NetworkSlot) => /link\/ether ([0-9a-f:]+)/.exec(await execTool('ip', ['-n', slot.name, 'link', 'show', 'eth0']))?.[1];
const hostNeighbour = async (bridge: string, address: string) => /lladdr ([0-9a-f:]+)/.exec(await execTool('ip', ['neigh', 'show', address, 'dev', bridge]))?.[1];

test('an address given again after its namespace was destroyed is reachable at once: it keeps its MAC, so the host\'s neighbour entry for it stays right', async (t) => {
  const tag = randomBytes(3).toString('hex');
  const pool = new NetworkPool({ tag, subnet: `10.214.${randomInt(1, 250)}.0/24`, size: 1, egress: false, exec: execTool, logger: silentLogger() });
  await pool.cleanupLeftovers();
  await pool.start();
  t.after(() => pool.close());

  const first = await pool.take();
  let stop = serveIn(first, 8080);
  await waitListening(first, 8080);
  assert.equal(await readLine(first.address, 8080, 20_000), `hi from ${first.name}`);
  const firstPeer = await hostPeerOf(first);
  const neighbourBefore = await hostNeighbour(pool.bridge, first.address);
  assert.equal(neighbourBefore, await macIn(first), 'the host learned the namespace\'s MAC');
  stop();

  // With a ready namespace in the pool again, the one given back is destroyed; the pool's next
  // one is the ready one, and the one after that is made anew at the lowest free address.
  pool.refill();
  await waitUntil(async () => pool.readyCount === 1, 'the pool refilled');
  await pool.release(first);
  assert.ok(!(await pool.listNamespaces()).includes(first.name), `${first.name} destroyed`);
  const second = await pool.take();
  const third = await pool.take();
  assert.equal(third.address, first.address, `the address was given out again (${first.name} ${second.name} ${third.name})`);
  assert.notEqual(await hostPeerOf(third), firstPeer, 'in a new namespace, with a new veth pair');
  assert.equal(await macIn(third), neighbourBefore, 'the new namespace has the MAC the host already knows for its address');

  stop = serveIn(third, 8080);
  await waitListening(third, 8080);
  assert.equal(await readLine(third.address, 8080, 20_000), `hi from ${third.name}`);
  stop();
  await pool.release(second);
  await pool.release(third);
});
