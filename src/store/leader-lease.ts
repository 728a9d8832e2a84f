import type { Clock, Timer } from '../core/clock.ts';
import type { Logger } from '../observability/logger.ts';
import type { LeaseHolder, LeaseStore } from './store.ts';

export interface LeaderLeaseOptions {
  readonly leases: LeaseStore;
  readonly clock: Clock;
  readonly log: Logger;
  /** This control plane's identity in the lease (e.g. its advertised URL). */
  readonly holder: string;
  /** How long one acquisition or renewal holds, by the store's clock. */
  readonly ttlMs: number;
  /** The lease's name in the store. Default `controlplane-leader`. */
  readonly name?: string;
  /** How often the holder renews and a follower tries to take the lease. Default ttlMs / 3. */
  readonly intervalMs?: number;
  /**
   * How much earlier than the TTL the holder stops acting, for clock-rate differences between
   * this process and the store (and a renewal that reached the store late). Default ttlMs / 10.
   */
  readonly marginMs?: number;
  /** Became the leader in `epoch`. */
  readonly onElected?: (epoch: number) => void;
  /** Stopped being the leader of `epoch`: a renewal was refused (someone else holds it) or the lease ran out before one succeeded. */
  readonly onDeposed?: (epoch: number, reason: 'taken-over' | 'expired' | 'closed') => void;
}

/**
 * One control plane's side of the leader election, over a `LeaseStore`:
 *
 *   follower ──acquire (set-if-absent, next epoch)──→ leader ──renew (compare-and-set) every interval──┐
 *      ↑                                                │  ↑_____________________________________________│
 *      └──── renewal refused, or no renewal succeeded within ttlMs − marginMs of sending it ──┘
 *
 * The holder counts its lease from the instant it *sent* the acquisition or renewal that
 * succeeded, by its own clock, so it stops acting (`isLeader` false, `onDeposed`) before the
 * store lets anyone else take the lease. A store that cannot be reached counts as no renewal.
 * What the leader sends carries `epoch`; receivers refuse lower epochs (`src/core/fencing.ts`),
 * so even a leader that was paused past its lease (SIGSTOP, a long GC) cannot act once resumed.
 *
 * `step()` is one attempt (what the timer runs); tests call it with a ManualClock.
 */
export class LeaderLease {
  readonly #o: LeaderLeaseOptions;
  readonly #name: string;
  readonly #intervalMs: number;
  readonly #marginMs: number;
  #holding: LeaseHolder | undefined;
  #validUntilMs = 0;
  #timer: Timer | undefined;
  #expiry: Timer | undefined;
  #stepping: Promise<void> | undefined;
  #isClosed = false;

  constructor(options: LeaderLeaseOptions) {
    if (!Number.isInteger(options.ttlMs) || options.ttlMs < 3) throw new Error(`lease TTL must be an integer of at least 3 ms, got ${options.ttlMs}`);
    this.#o = options;
    this.#name = options.name ?? 'controlplane-leader';
    this.#intervalMs = options.intervalMs ?? Math.max(1, Math.floor(options.ttlMs / 3));
    this.#marginMs = options.marginMs ?? Math.floor(options.ttlMs / 10);
    if (this.#intervalMs >= options.ttlMs - this.#marginMs) throw new Error('the renewal interval must be shorter than the lease TTL less its margin');
  }

  /** True while this process holds the lease by its own clock: act (and send commands) only then. */
  get isLeader(): boolean {
    return this.#holding !== undefined && this.#o.clock.now() < this.#validUntilMs;
  }

  /** The epoch to stamp on state-changing messages, while leader. */
  get epoch(): number | undefined {
    return this.isLeader ? this.#holding?.epoch : undefined;
  }

  /** Steps now, then every interval until `close`. */
  start(): void {
    if (this.#timer !== undefined || this.#isClosed) return;
    const loop = (): void => {
      void this.step().finally(() => {
        if (!this.#isClosed) this.#timer = this.#o.clock.setTimeout(loop, this.#intervalMs);
      });
    };
    this.#timer = this.#o.clock.setTimeout(loop, 0);
  }

  /** One attempt: renew when holding, acquire otherwise. Never rejects. Concurrent calls share one attempt. */
  step(): Promise<void> {
    this.#stepping ??= this.#attempt().finally(() => { this.#stepping = undefined; });
    return this.#stepping;
  }

  /** Stops stepping and gives the lease up (best effort), so a successor need not wait for the TTL. */
  async close(): Promise<void> {
    if (this.#isClosed) return;
    this.#isClosed = true;
    this.#timer?.cancel();
    await this.#stepping;
    const holding = this.#holding;
    if (holding !== undefined) {
      this.#depose('closed');
      await this.#o.leases.release(this.#name, holding).catch((err: unknown) => {
        this.#o.log.warn({ err: (err as Error).message }, 'could not release the leader lease; it expires by itself');
      });
    }
  }

  async #attempt(): Promise<void> {
    if (this.#isClosed) return;
    const { leases, clock, ttlMs, holder, log } = this.#o;
    const sentAt = clock.now();
    const holding = this.#holding;
    if (holding !== undefined && sentAt >= this.#validUntilMs) this.#depose('expired');
    if (this.#holding === undefined) {
      let acquired: LeaseHolder | undefined;
      try {
        acquired = await leases.acquire(this.#name, holder, ttlMs);
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'could not try the leader lease');
        return;
      }
      if (acquired === undefined || this.#isClosed) return;
      this.#holding = acquired;
      this.#extend(sentAt);
      log.info({ epoch: acquired.epoch, holder }, 'became the leader');
      this.#o.onElected?.(acquired.epoch);
      return;
    }
    const current = this.#holding;
    let isRenewed: boolean;
    try {
      isRenewed = await leases.renew(this.#name, current, ttlMs);
    } catch (err) {
      // Unreachable store: keep acting until the lease would run out, trying again each interval.
      log.warn({ err: (err as Error).message, epoch: current.epoch }, 'could not renew the leader lease');
      return;
    }
    if (this.#holding !== current) return;
    if (isRenewed) this.#extend(sentAt);
    else this.#depose('taken-over');
  }

  /** The holding is good until `sentAt + ttl − margin`; past that instant it is given up without asking. */
  #extend(sentAt: number): void {
    this.#validUntilMs = sentAt + this.#o.ttlMs - this.#marginMs;
    this.#expiry?.cancel();
    const holding = this.#holding;
    this.#expiry = this.#o.clock.setTimeout(() => {
      if (this.#holding === holding && this.#o.clock.now() >= this.#validUntilMs) this.#depose('expired');
    }, this.#validUntilMs - this.#o.clock.now());
  }

  #depose(reason: 'taken-over' | 'expired' | 'closed'): void {
    const holding = this.#holding;
    if (holding === undefined) return;
    this.#holding = undefined;
    this.#validUntilMs = 0;
    this.#expiry?.cancel();
    this.#expiry = undefined;
    this.#o.log.warn({ epoch: holding.epoch, reason }, 'no longer the leader');
    this.#o.onDeposed?.(holding.epoch, reason);
  }
}
