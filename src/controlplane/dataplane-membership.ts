import type { RegisterDataplaneRequest } from '../api/dataplane.ts';
import { repeat, type Clock, type Timer } from '../core/clock.ts';
import { BatonError } from '../core/errors.ts';
import type { Logger } from '../observability/logger.ts';
import type { Store } from '../store/store.ts';
import type { RoutingPublisher } from './routing-publisher.ts';

/** The control plane's connection to one data plane, made by main.ts's factory. */
export interface DataplaneChannel {
  readonly publisher: RoutingPublisher;
  /** Resolves when the data plane has nothing in flight on these sandboxes (bounded; never rejects). */
  drainWait(sandboxIds: readonly string[]): Promise<void>;
  close(): void;
}

export type DataplaneState = 'ready' | 'unreachable' | 'unregistered';

export interface DataplaneEntry {
  readonly id: string;
  readonly url: string;
  readonly proxyUrl: string;
  readonly state: DataplaneState;
  readonly lastHeartbeatMs: number;
  readonly channel: DataplaneChannel | undefined;
}

interface MutableDataplane {
  id: string;
  url: string;
  proxyUrl: string;
  state: DataplaneState;
  lastHeartbeatMs: number;
  channel: DataplaneChannel | undefined;
  /** The credential its channel commands it with (never persisted: it registers again with it after a restart). */
  commandToken: string | undefined;
}

interface StoredDataplane { id: string; url: string; proxyUrl: string }

export interface DataplaneMembershipOptions {
  readonly store: Store;
  readonly clock: Clock;
  readonly log: Logger;
  readonly heartbeatIntervalMs: number;
  readonly heartbeatMissLimit: number;
  /** Opens the channel to a data plane at `url` (its internal API), commanding it with `commandToken`. */
  readonly connect: (url: string, dataplaneId: string, commandToken: string | undefined) => DataplaneChannel;
}

/**
 * The data planes: registration (persisted), heartbeats and failure detection, and the channel to
 * each (routing publisher, drain waits). The one owner of the data-plane table. A data plane that
 * registers, or that is heard from again after missing heartbeats, is sent a full snapshot.
 */
export class DataplaneMembership {
  readonly #o: DataplaneMembershipOptions;
  readonly #dataplanes = new Map<string, MutableDataplane>();
  #channels: DataplaneChannel[] = [];
  #monitor: Timer | undefined;
  /** Resolved once no data plane loaded from the store is still to register again (one promise, shared by every waiter). */
  #allRegistered: { promise: Promise<void>; resolve: () => void } | undefined;

  constructor(options: DataplaneMembershipOptions) {
    this.#o = options;
  }

  get size(): number {
    return this.#dataplanes.size;
  }

  values(): IterableIterator<DataplaneEntry> {
    return this.#dataplanes.values();
  }

  /** Every open channel (a routing change goes to each), as an array rebuilt only when one opens. */
  channels(): readonly DataplaneChannel[] {
    return this.#channels;
  }

  /** The channels of the data planes that are up, for drain waits. */
  readyChannels(): DataplaneChannel[] {
    const ready: DataplaneChannel[] = [];
    for (const dataplane of this.#dataplanes.values()) if (dataplane.state === 'ready' && dataplane.channel !== undefined) ready.push(dataplane.channel);
    return ready;
  }

  /**
   * Resolves once every data plane loaded from the store has registered again in this term (at
   * once when none is left to): a function change published before then reaches such a data plane
   * only in the snapshot its registration gets, so waiting for its acknowledgement means waiting
   * for that.
   */
  registered(): Promise<void> {
    if (!this.#isAnyUnregistered()) return Promise.resolve();
    if (this.#allRegistered === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => { resolve = r; });
      this.#allRegistered = { promise, resolve };
    }
    return this.#allRegistered.promise;
  }

  #isAnyUnregistered(): boolean {
    for (const dataplane of this.#dataplanes.values()) if (dataplane.state === 'unregistered') return true;
    return false;
  }

  /** Loads persisted data planes as `unregistered`: each must register again. */
  async load(): Promise<void> {
    const now = this.#o.clock.now();
    for (const d of await this.#o.store.list<StoredDataplane>('dataplanes')) {
      this.#dataplanes.set(d.id, { ...d, state: 'unregistered', lastHeartbeatMs: now, channel: undefined, commandToken: undefined });
    }
  }

  start(): void {
    this.#monitor = repeat(this.#o.clock, this.#o.heartbeatIntervalMs, () => this.checkHeartbeats());
  }

  close(): void {
    this.#monitor?.cancel();
    for (const dataplane of this.#dataplanes.values()) dataplane.channel?.close();
  }

  async register(req: RegisterDataplaneRequest): Promise<void> {
    const { store, clock, log } = this.#o;
    let dataplane = this.#dataplanes.get(req.dataplaneId);
    if (dataplane === undefined || dataplane.url !== req.url || dataplane.proxyUrl !== req.proxyUrl) {
      await store.put('dataplanes', req.dataplaneId, { id: req.dataplaneId, url: req.url, proxyUrl: req.proxyUrl } satisfies StoredDataplane);
    }
    if (dataplane === undefined) {
      dataplane = { id: req.dataplaneId, url: req.url, proxyUrl: req.proxyUrl, state: 'ready', lastHeartbeatMs: clock.now(), channel: undefined, commandToken: undefined };
      this.#dataplanes.set(dataplane.id, dataplane);
    }
    if (dataplane.channel === undefined || dataplane.url !== req.url || dataplane.commandToken !== req.commandToken) {
      dataplane.channel?.close();
      dataplane.commandToken = req.commandToken;
      dataplane.channel = this.#o.connect(req.url, dataplane.id, req.commandToken);
      this.#channels = [...this.#dataplanes.values()].flatMap((d) => (d.channel === undefined ? [] : [d.channel]));
    }
    dataplane.url = req.url;
    dataplane.proxyUrl = req.proxyUrl;
    dataplane.state = 'ready';
    dataplane.lastHeartbeatMs = clock.now();
    dataplane.channel.publisher.resync();
    if (this.#allRegistered !== undefined && !this.#isAnyUnregistered()) {
      this.#allRegistered.resolve();
      this.#allRegistered = undefined;
    }
    log.info({ dataplane: dataplane.id, url: dataplane.url }, 'data plane registered');
  }

  heartbeat(dataplaneId: string): void {
    const dataplane = this.#dataplanes.get(dataplaneId);
    if (dataplane === undefined || dataplane.state === 'unregistered') {
      throw new BatonError('ERR_DATAPLANE_NOT_FOUND', `data plane '${dataplaneId}' must register`);
    }
    if (dataplane.state === 'unreachable') dataplane.channel?.publisher.resync();
    dataplane.state = 'ready';
    dataplane.lastHeartbeatMs = this.#o.clock.now();
  }

  /** Throws ERR_DATAPLANE_NOT_FOUND unless the data plane is registered. */
  require(dataplaneId: string): DataplaneEntry {
    const dataplane = this.#dataplanes.get(dataplaneId);
    if (dataplane === undefined || dataplane.state === 'unregistered') {
      throw new BatonError('ERR_DATAPLANE_NOT_FOUND', `data plane '${dataplaneId}' must register`);
    }
    return dataplane;
  }

  /** Marks data planes silent for longer than the miss limit as unreachable (run by the monitor; tests call it). */
  checkHeartbeats(): void {
    const now = this.#o.clock.now();
    const limitMs = this.#o.heartbeatIntervalMs * this.#o.heartbeatMissLimit;
    for (const dataplane of this.#dataplanes.values()) {
      if (dataplane.state !== 'ready' || now - dataplane.lastHeartbeatMs <= limitMs) continue;
      dataplane.state = 'unreachable';
      this.#o.log.warn({ dataplane: dataplane.id }, 'data plane missed heartbeats');
    }
  }
}
