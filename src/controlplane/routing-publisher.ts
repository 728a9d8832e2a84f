import { randomBytes } from 'node:crypto';
import type { RoutingAck, RoutingChange, RoutingSnapshot, RoutingUpdate } from '../api/dataplane.ts';
import type { Clock, Timer } from '../core/clock.ts';
import { BatonError } from '../core/errors.ts';
import { TurnBatcher } from '../core/turn-batcher.ts';
import type { Logger } from '../observability/logger.ts';

/** How the publisher reaches its data plane (the real one posts to /internal/v1/routing). */
export interface RoutingTransport {
  send(update: RoutingUpdate): Promise<RoutingAck>;
}

export interface RoutingSnapshotSource {
  snapshot(): RoutingSnapshot;
}

/** Changes beyond this many unsent are dropped in favour of one snapshot: memory stays bounded. */
const MAX_PENDING_CHANGES = 50_000;
const RETRY_MS = 250;

/**
 * Messages sent and not yet acknowledged, at most. The transport delivers them in order (one RPC
 * stream, or one HTTP connection), and the data plane applies each delta only on top of the version
 * before it, so a delta may leave before the previous one is acknowledged: a cold start's endpoint
 * does not wait a round trip behind the changes sent just before it.
 */
const MAX_IN_FLIGHT = 8;

/**
 * Keeps one data plane's routing view in step with the control plane. Changes are batched (one
 * message per event-loop turn, up to MAX_IN_FLIGHT unacknowledged), versioned within an epoch, and
 * replaced by a full snapshot whenever the data plane reports a gap, was unreachable, or registered
 * again.
 *
 * Lifecycle: `open` (publishing) → `closed` (dropped; waiters released).
 */
export class RoutingPublisher {
  readonly #transport: RoutingTransport;
  readonly #source: RoutingSnapshotSource;
  readonly #clock: Clock;
  readonly #log: Logger;
  #epoch = randomBytes(6).toString('hex');
  #ackedVersion = 0;
  /** Version of the last message sent (acknowledged or not). */
  #sentVersion = 0;
  #inFlight = 0;
  /**
   * Bumped whenever the data plane's state becomes unknown (a failure) or is replaced (a resync): the
   * answers to messages sent before are ignored, so one failure in a pipeline causes one snapshot.
   */
  #generation = 0;
  #pending: RoutingChange[] = [];
  #needsSnapshot = true;
  /** Sends what is pending once per turn (the changes themselves wait in `#pending`, bounded). */
  readonly #turn: TurnBatcher<never>;
  #retry: Timer | undefined;
  #isClosed = false;
  /** Sequence numbers: every enqueue bumps `#enqueuedSeq`; an ack covers everything sent before it. */
  #enqueuedSeq = 0;
  #ackedSeq = 0;
  #waiters: { seq: number; resolve: () => void }[] = [];

  constructor(transport: RoutingTransport, source: RoutingSnapshotSource, clock: Clock, log: Logger) {
    this.#transport = transport;
    this.#source = source;
    this.#clock = clock;
    this.#log = log;
    this.#turn = new TurnBatcher(clock, () => this.#flush());
  }

  get version(): number {
    return this.#ackedVersion;
  }

  get isSynced(): boolean {
    return !this.#needsSnapshot && this.#pending.length === 0 && this.#inFlight === 0;
  }

  enqueue(change: RoutingChange): void {
    if (this.#isClosed) return;
    this.#enqueuedSeq++;
    if (!this.#needsSnapshot) {
      if (this.#pending.length >= MAX_PENDING_CHANGES) {
        this.#pending = [];
        this.#needsSnapshot = true;
      } else {
        this.#pending.push(change);
      }
    }
    this.#schedule();
  }

  /** Forces a snapshot (the data plane registered again or lost its state). */
  resync(): void {
    if (this.#isClosed) return;
    this.#epoch = randomBytes(6).toString('hex');
    this.#generation++;
    this.#needsSnapshot = true;
    this.#pending = [];
    this.#enqueuedSeq++;
    this.#schedule();
  }

  /**
   * Resolves once every change enqueued so far has been acknowledged (or superseded by an
   * acknowledged snapshot), or once the publisher is closed. Never rejects.
   */
  flushed(): Promise<void> {
    if (this.#ackedSeq >= this.#enqueuedSeq || this.#isClosed) return Promise.resolve();
    const seq = this.#enqueuedSeq;
    return new Promise((resolve) => this.#waiters.push({ seq, resolve }));
  }

  close(): void {
    this.#isClosed = true;
    this.#retry?.cancel();
    for (const waiter of this.#waiters) waiter.resolve();
    this.#waiters = [];
  }

  #schedule(): void {
    if (this.#retry === undefined) this.#turn.schedule();
  }

  #flush(): void {
    if (this.#isClosed || this.#retry !== undefined) return;
    if (this.#needsSnapshot ? this.#inFlight > 0 : this.#pending.length === 0 || this.#inFlight >= MAX_IN_FLIGHT) return;
    const seq = this.#enqueuedSeq;
    const generation = this.#generation;
    const update = this.#nextUpdate();
    const changes = this.#pending.length;
    this.#pending = [];
    this.#inFlight++;
    this.#transport.send(update).then(
      (ack) => {
        this.#inFlight--;
        if (generation === this.#generation) {
          this.#ackedVersion = ack.version;
          this.#ackedSeq = Math.max(this.#ackedSeq, seq);
          this.#releaseWaiters();
        }
        this.#afterAnswer();
      },
      (err: unknown) => {
        this.#inFlight--;
        if (generation === this.#generation) this.#onFailure(err, changes, update.kind);
        this.#afterAnswer();
      },
    );
  }

  #afterAnswer(): void {
    if (this.#retry === undefined && (this.#needsSnapshot || this.#pending.length > 0)) this.#schedule();
  }

  #nextUpdate(): RoutingUpdate {
    const version = this.#sentVersion + 1;
    const baseVersion = this.#sentVersion;
    this.#sentVersion = version;
    if (this.#needsSnapshot) {
      this.#needsSnapshot = false;
      return { kind: 'snapshot', epoch: this.#epoch, version, ...this.#source.snapshot() };
    }
    return { kind: 'delta', epoch: this.#epoch, baseVersion, version, changes: this.#pending };
  }

  #onFailure(err: unknown, changes: number, kind: RoutingUpdate['kind']): void {
    const isGap = err instanceof BatonError && err.code === 'ERR_VERSION_GAP';
    this.#log.debug({ err, kind, changes }, 'routing update not applied; will send a snapshot');
    // Whatever the failure, the receiver's state is unknown now: the next message is a snapshot,
    // which supersedes every change sent or pending; the answers to messages still in flight are moot.
    this.#generation++;
    this.#needsSnapshot = true;
    this.#pending = [];
    if (isGap) return;
    // Unreachable: retry after a pause, but let drains proceed — an unreachable data plane routes nothing.
    this.#ackedSeq = this.#enqueuedSeq;
    this.#releaseWaiters();
    this.#retry = this.#clock.setTimeout(() => {
      this.#retry = undefined;
      this.#schedule();
    }, RETRY_MS);
  }

  #releaseWaiters(): void {
    if (this.#waiters.length === 0) return;
    const still: { seq: number; resolve: () => void }[] = [];
    for (const waiter of this.#waiters) {
      if (waiter.seq <= this.#ackedSeq) waiter.resolve();
      else still.push(waiter);
    }
    this.#waiters = still;
  }
}
