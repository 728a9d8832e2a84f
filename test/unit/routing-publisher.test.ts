import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RoutingAck, RoutingEndpoint, RoutingUpdate } from '../../src/api/dataplane.ts';
import { BatonError } from '../../src/core/errors.ts';
import { RoutingPublisher } from '../../src/controlplane/routing-publisher.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { ManualClock } from '../kit/manual-clock.ts';

/** A receiver with the data plane's version rule: deltas apply only on top of the same epoch and version. */
class FakeReceiver {
  epoch = '';
  version = 0;
  endpoints = new Map<string, RoutingEndpoint>();
  received: RoutingUpdate[] = [];
  isDown = false;

  async send(update: RoutingUpdate): Promise<RoutingAck> {
    this.received.push(update);
    if (this.isDown) throw new BatonError('ERR_UNAVAILABLE', 'down');
    if (update.kind === 'snapshot') {
      this.endpoints = new Map(update.endpoints.map((e) => [e.sandboxId, e]));
    } else {
      if (update.epoch !== this.epoch || update.baseVersion !== this.version) throw new BatonError('ERR_VERSION_GAP', 'gap');
      for (const change of update.changes) {
        if (change.type === 'endpoint.put') this.endpoints.set(change.endpoint.sandboxId, change.endpoint);
        if (change.type === 'endpoint.delete') this.endpoints.delete(change.sandboxId);
      }
    }
    this.epoch = update.epoch;
    this.version = update.version;
    return { epoch: this.epoch, version: this.version };
  }
}

const endpoint = (id: string, isDraining = false): RoutingEndpoint => ({ sandboxId: id, function: 'f', address: `127.0.0.1:${id.length}`, isDraining });

function setup(source: RoutingEndpoint[] = []) {
  const receiver = new FakeReceiver();
  const clock = new ManualClock();
  const publisher = new RoutingPublisher(receiver, { snapshot: () => ({ functions: [], endpoints: source }) }, clock, silentLogger());
  /** Runs the publisher's turns until everything enqueued so far is acknowledged. */
  const flushed = async (): Promise<void> => {
    const done = publisher.flushed();
    await clock.settle();
    await done;
  };
  return { receiver, clock, publisher, flushed };
}

test('the first message is a snapshot; later changes of one turn travel as one delta', async () => {
  const { receiver, clock, publisher, flushed } = setup([endpoint('a')]);
  publisher.enqueue({ type: 'endpoint.put', endpoint: endpoint('a') });
  assert.equal(receiver.received.length, 0, 'nothing leaves before the turn ends');
  await flushed();
  assert.equal(receiver.received[0]?.kind, 'snapshot');
  publisher.enqueue({ type: 'endpoint.put', endpoint: endpoint('b') });
  publisher.enqueue({ type: 'endpoint.put', endpoint: endpoint('c') });
  publisher.enqueue({ type: 'endpoint.delete', sandboxId: 'a' });
  assert.equal(clock.runTurns(1), 1);
  assert.equal(receiver.received.length, 2, 'the three changes of one turn left in one message');
  await flushed();
  assert.equal(receiver.received.length, 2);
  const delta = receiver.received[1];
  assert.ok(delta?.kind === 'delta');
  assert.equal(delta.changes.length, 3);
  assert.deepEqual([...receiver.endpoints.keys()].sort(), ['b', 'c']);
  assert.equal(publisher.version, receiver.version);
});

test('a version gap is answered with a snapshot that replaces the whole view', async () => {
  const source = [endpoint('a'), endpoint('b')];
  const { receiver, publisher, flushed } = setup(source);
  publisher.enqueue({ type: 'endpoint.put', endpoint: endpoint('a') });
  await flushed();
  // The data plane restarts: it has lost its view and its version.
  receiver.version = 0;
  receiver.epoch = '';
  receiver.endpoints.clear();
  publisher.enqueue({ type: 'endpoint.put', endpoint: endpoint('b') });
  await flushed();
  const kinds = receiver.received.map((u) => u.kind);
  assert.deepEqual(kinds, ['snapshot', 'delta', 'snapshot']);
  assert.deepEqual([...receiver.endpoints.keys()].sort(), ['a', 'b']);
  assert.ok(publisher.isSynced);
});

test('an unreachable data plane releases waiters, and gets a snapshot when it is back', async () => {
  const { receiver, clock, publisher, flushed } = setup([endpoint('a')]);
  receiver.isDown = true;
  publisher.enqueue({ type: 'endpoint.put', endpoint: endpoint('a') });
  await flushed();
  assert.equal(receiver.endpoints.size, 0);
  assert.equal(receiver.received.length, 1, 'no retry before the pause');
  receiver.isDown = false;
  clock.advance(1_000);
  await flushed();
  assert.equal(receiver.endpoints.size, 1);
  assert.equal(receiver.received.at(-1)?.kind, 'snapshot');
});

test('resync sends a snapshot in a new epoch, so stale deltas can never apply', async () => {
  const { receiver, publisher, flushed } = setup([endpoint('a')]);
  publisher.enqueue({ type: 'endpoint.put', endpoint: endpoint('a') });
  await flushed();
  const firstEpoch = receiver.epoch;
  publisher.resync();
  await flushed();
  assert.notEqual(receiver.epoch, firstEpoch);
  assert.equal(receiver.received.at(-1)?.kind, 'snapshot');
});

/** The receiver behind a slow, ordered link: messages are applied in order, and answered only when released. */
class SlowLink {
  readonly receiver = new FakeReceiver();
  readonly clock = new ManualClock();
  readonly #held: (() => void)[] = [];

  send(update: RoutingUpdate): Promise<RoutingAck> {
    return new Promise((resolve, reject) => {
      this.#held.push(() => this.receiver.send(update).then(resolve, reject));
    });
  }

  get held(): number {
    return this.#held.length;
  }

  /** Delivers and answers the oldest `n` messages, in order. */
  async release(n = this.#held.length): Promise<void> {
    for (const deliver of this.#held.splice(0, n)) deliver();
    await this.clock.settle();
  }
}

test('deltas leave without waiting for the previous acknowledgement, and apply in order', async () => {
  const link = new SlowLink();
  const publisher = new RoutingPublisher(link, { snapshot: () => ({ functions: [], endpoints: [] }) }, link.clock, silentLogger());
  publisher.enqueue({ type: 'endpoint.put', endpoint: endpoint('a') });
  link.clock.runTurns();
  assert.equal(link.held, 1, 'the first message (a snapshot) is out');
  await link.release();
  for (const id of ['b', 'c', 'd']) {
    publisher.enqueue({ type: 'endpoint.put', endpoint: endpoint(id) });
    link.clock.runTurns();
  }
  assert.equal(link.held, 3, 'three deltas in flight at once, none acknowledged');
  const done = publisher.flushed();
  await link.release();
  await done;
  assert.deepEqual(link.receiver.received.map((u) => u.kind), ['snapshot', 'delta', 'delta', 'delta']);
  assert.deepEqual([...link.receiver.endpoints.keys()].sort(), ['b', 'c', 'd']);
  assert.equal(publisher.version, link.receiver.version);
  assert.ok(publisher.isSynced);
});

test('a gap in the middle of a pipeline costs exactly one snapshot', async () => {
  const source = [endpoint('x'), endpoint('y')];
  const link = new SlowLink();
  const publisher = new RoutingPublisher(link, { snapshot: () => ({ functions: [], endpoints: source }) }, link.clock, silentLogger());
  publisher.enqueue({ type: 'endpoint.put', endpoint: endpoint('x') });
  link.clock.runTurns();
  await link.release();
  for (const id of ['p', 'q', 'r']) {
    publisher.enqueue({ type: 'endpoint.put', endpoint: endpoint(id) });
    link.clock.runTurns();
  }
  // The data plane restarts before any of the three deltas reaches it: all three fail with a gap.
  link.receiver.version = 0;
  link.receiver.epoch = '';
  link.receiver.endpoints.clear();
  const done = publisher.flushed();
  await link.release();
  link.clock.runTurns();
  await link.release();
  await done;
  assert.deepEqual(link.receiver.received.map((u) => u.kind), ['snapshot', 'delta', 'delta', 'delta', 'snapshot']);
  assert.deepEqual([...link.receiver.endpoints.keys()].sort(), ['x', 'y']);
  assert.ok(publisher.isSynced);
});
