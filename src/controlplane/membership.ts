import type { DemandAck, DemandReport, RegisterDataplaneRequest } from '../api/dataplane.ts';
import type { RegisterWorkerRequest, RegisterWorkerResponse } from '../api/worker.ts';
import type { Clock, Timer } from '../core/clock.ts';
import { BatonError } from '../core/errors.ts';
import type { Logger } from '../observability/logger.ts';
import type { Store } from '../store/store.ts';
import { JsonClient } from '../transport/json-client.ts';
import type { RpcConnections } from '../transport/rpc-client.ts';
import type { Autoscaler } from './autoscaler.ts';
import type { ClusterState, DataplaneEntry } from './cluster-state.ts';
import { newWorkerEntry, type FunctionEntry, type WorkerEntry } from './model.ts';
import { DrainBatcher } from './drain-batcher.ts';
import { RoutingPublisher } from './routing-publisher.ts';
import type { SandboxManager } from './sandbox-manager.ts';
import { ProcessBatcher, WorkerBatcher, type PostProcessSandboxes, type WorkerClient } from './worker-client.ts';

export interface MembershipOptions {
  readonly state: ClusterState;
  readonly store: Store;
  readonly clock: Clock;
  readonly log: Logger;
  readonly sandboxes: SandboxManager;
  readonly autoscaler: Autoscaler;
  readonly heartbeatIntervalMs: number;
  readonly heartbeatMissLimit: number;
  readonly drainTimeoutMs: number;
  readonly workerClientFactory: (url: string) => WorkerClient;
  readonly processClientFactory: (processUrl: string) => { post: PostProcessSandboxes; close(): void };
  /** With the RPC transport: the stream connections that carry calls to data planes. */
  readonly rpc?: RpcConnections;
}

/** Demand entries applied per event-loop turn. */
const DEMAND_CHUNK = 512;

interface StoredWorker { id: string; url: string; capacity: { cpuMilli: number; memoryMiB: number }; runtimes: string[] }
interface StoredDataplane { id: string; url: string; proxyUrl: string }

/**
 * Workers and data planes: registration (persisted), heartbeats, failure detection, and the
 * reconciliation of what a registering worker runs against what the control plane believes.
 */
export class Membership {
  readonly #o: MembershipOptions;
  #monitor: Timer | undefined;
  /** What each worker's batcher was made for (its URL and process URL). */
  readonly #batcherKeys = new Map<string, string>();
  readonly #processBatchers = new Map<string, { batcher: ProcessBatcher; close(): void }>();

  constructor(options: MembershipOptions) {
    this.#o = options;
  }

  /** Loads persisted workers and data planes as `unregistered`: each must register again, reporting what it runs. */
  async load(): Promise<void> {
    const now = this.#o.clock.now();
    for (const w of await this.#o.store.list<StoredWorker>('workers')) {
      this.#o.state.addWorker(newWorkerEntry({ ...w, state: 'unregistered', nowMs: now }));
    }
    for (const d of await this.#o.store.list<StoredDataplane>('dataplanes')) {
      this.#o.state.dataplanes.set(d.id, { ...d, state: 'unregistered', lastHeartbeatMs: now, publisher: undefined, drainWait: undefined, close: undefined });
    }
  }

  start(): void {
    const tick = (): void => {
      this.#checkHeartbeats();
      this.#monitor = this.#o.clock.setTimeout(tick, this.#o.heartbeatIntervalMs);
    };
    this.#monitor = this.#o.clock.setTimeout(tick, this.#o.heartbeatIntervalMs);
  }

  #processBatcher(processUrl: string, onCreateFailed: (ids: readonly string[], err: unknown) => void): ProcessBatcher {
    let entry = this.#processBatchers.get(processUrl);
    if (entry === undefined) {
      const client = this.#o.processClientFactory(processUrl);
      entry = { batcher: new ProcessBatcher(client.post, onCreateFailed), close: client.close };
      this.#processBatchers.set(processUrl, entry);
    }
    return entry.batcher;
  }

  close(): void {
    this.#monitor?.cancel();
    for (const entry of this.#processBatchers.values()) entry.close();
    for (const batcher of this.#o.state.batchers.values()) batcher.client.close();
    for (const dataplane of this.#o.state.dataplanes.values()) dataplane.close?.();
  }

  async registerWorker(req: RegisterWorkerRequest): Promise<RegisterWorkerResponse> {
    const { state, store, clock } = this.#o;
    const now = clock.now();
    let worker = state.workers.get(req.workerId);
    const isChanged = worker === undefined || worker.url !== req.url
      || worker.capacity.cpuMilli !== req.capacity.cpuMilli || worker.capacity.memoryMiB !== req.capacity.memoryMiB
      || worker.runtimes.join() !== req.runtimes.join();
    if (isChanged) {
      await store.put('workers', req.workerId, { id: req.workerId, url: req.url, capacity: req.capacity, runtimes: req.runtimes } satisfies StoredWorker);
    }
    if (worker === undefined) {
      worker = newWorkerEntry({ id: req.workerId, url: req.url, capacity: req.capacity, runtimes: req.runtimes, state: 'ready', nowMs: now });
      state.addWorker(worker);
    }
    const batcherKey = `${req.url} ${req.processUrl ?? ''}`;
    if (this.#batcherKeys.get(worker.id) !== batcherKey || !state.batchers.has(worker.id)) {
      state.batchers.get(worker.id)?.client.close();
      const client = this.#o.workerClientFactory(req.url);
      const onCreateFailed = (ids: readonly string[], err: unknown) => this.#o.sandboxes.onCreateUnreachable(ids, err);
      state.batchers.set(worker.id, req.processUrl === undefined
        ? new WorkerBatcher(client, onCreateFailed)
        : this.#processBatcher(req.processUrl, onCreateFailed).forWorker(worker.id, client));
      this.#batcherKeys.set(worker.id, batcherKey);
    }
    worker.url = req.url;
    worker.capacity = { ...req.capacity };
    worker.runtimes = req.runtimes;
    worker.state = 'ready';
    worker.lastHeartbeatMs = now;
    this.#reconcileWorker(worker, req.sandboxes);
    this.#o.log.info({ worker: worker.id, url: worker.url, sandboxes: req.sandboxes.length }, 'worker registered');
    return { heartbeatIntervalMs: this.#o.heartbeatIntervalMs };
  }

  workerHeartbeat(workerId: string): void {
    const worker = this.#o.state.workers.get(workerId);
    if (worker === undefined || worker.state !== 'ready') {
      throw new BatonError('ERR_WORKER_NOT_FOUND', `worker '${workerId}' must register`);
    }
    worker.lastHeartbeatMs = this.#o.clock.now();
  }

  requireWorker(workerId: string): WorkerEntry {
    const worker = this.#o.state.workers.get(workerId);
    if (worker === undefined || worker.state === 'unregistered') throw new BatonError('ERR_WORKER_NOT_FOUND', `worker '${workerId}' must register`);
    return worker;
  }

  async registerDataplane(req: RegisterDataplaneRequest): Promise<void> {
    const { state, store, clock, log } = this.#o;
    let dataplane = state.dataplanes.get(req.dataplaneId);
    if (dataplane === undefined || dataplane.url !== req.url || dataplane.proxyUrl !== req.proxyUrl) {
      await store.put('dataplanes', req.dataplaneId, { id: req.dataplaneId, url: req.url, proxyUrl: req.proxyUrl } satisfies StoredDataplane);
    }
    if (dataplane === undefined) {
      dataplane = { id: req.dataplaneId, url: req.url, proxyUrl: req.proxyUrl, state: 'ready', lastHeartbeatMs: clock.now(), publisher: undefined, drainWait: undefined, close: undefined };
      state.dataplanes.set(dataplane.id, dataplane);
    }
    if (dataplane.publisher === undefined || dataplane.url !== req.url) this.#connectDataplane(dataplane, req.url);
    dataplane.proxyUrl = req.proxyUrl;
    dataplane.state = 'ready';
    dataplane.lastHeartbeatMs = clock.now();
    dataplane.publisher?.resync();
    log.info({ dataplane: dataplane.id, url: dataplane.url }, 'data plane registered');
  }

  dataplaneHeartbeat(dataplaneId: string): void {
    const dataplane = this.#o.state.dataplanes.get(dataplaneId);
    if (dataplane === undefined || dataplane.state === 'unregistered') {
      throw new BatonError('ERR_DATAPLANE_NOT_FOUND', `data plane '${dataplaneId}' must register`);
    }
    if (dataplane.state === 'unreachable') dataplane.publisher?.resync();
    dataplane.state = 'ready';
    dataplane.lastHeartbeatMs = this.#o.clock.now();
  }

  onDemand(report: DemandReport): DemandAck {
    const dataplane = this.#o.state.dataplanes.get(report.dataplaneId);
    if (dataplane === undefined || dataplane.state === 'unregistered') {
      throw new BatonError('ERR_DATAPLANE_NOT_FOUND', `data plane '${report.dataplaneId}' must register`);
    }
    const { length } = report.entries;
    if (report.isPoke || length <= DEMAND_CHUNK) return { noCapacity: this.#applyDemand(report, 0, length) };
    // A periodic report of thousands of functions is applied in slices, one per event-loop turn,
    // so that it never holds up cold starts; its answer only needs the no-capacity check.
    const noCapacity: string[] = [];
    for (const entry of report.entries) {
      if (entry.queued > 0 && this.#o.state.functions.get(entry.function)?.hasNoCapacity === true) noCapacity.push(entry.function);
    }
    const slice = (from: number): void => {
      const to = Math.min(length, from + DEMAND_CHUNK);
      this.#applyDemand(report, from, to);
      if (to < length) setImmediate(slice, to);
    };
    slice(0);
    return { noCapacity };
  }

  #markUsed(fn: FunctionEntry, sandboxIds: readonly string[]): void {
    const now = this.#o.clock.now();
    for (const id of sandboxIds) {
      const sandbox = this.#o.state.sandboxes.get(id);
      if (sandbox !== undefined && sandbox.fn === fn) sandbox.lastUsedMs = now;
    }
  }

  /** Feeds entries [from, to) to the autoscaler; returns the functions among them no worker has room for. */
  #applyDemand(report: DemandReport, from: number, to: number): string[] {
    const noCapacity: string[] = [];
    for (let i = from; i < to; i++) {
      const entry = report.entries[i] as DemandReport['entries'][number];
      const fn = this.#o.state.functions.get(entry.function);
      if (fn === undefined || fn.isDeleting) continue;
      this.#o.autoscaler.reportDemand(fn, report.dataplaneId, entry.concurrency);
      if (report.isPoke) this.#o.autoscaler.poke(fn, entry.queued);
      if (fn.hasNoCapacity && entry.queued > 0) noCapacity.push(entry.function);
      if (entry.usedSandboxes !== undefined) this.#markUsed(fn, entry.usedSandboxes);
    }
    return noCapacity;
  }

  #connectDataplane(dataplane: DataplaneEntry, url: string): void {
    dataplane.close?.();
    const rpc = this.#o.rpc?.for(url);
    const client = new JsonClient(url, { timeoutMs: 10_000, connections: 1, ...(rpc === undefined ? {} : { rpc }) });
    // Drain waits may last up to drainTimeoutMs: over HTTP they get connections of their own, so
    // that they never hold up routing updates (on the RPC stream calls do not wait for each other).
    const drainClient = new JsonClient(url, { timeoutMs: this.#o.drainTimeoutMs + 5_000, connections: 4, ...(rpc === undefined ? {} : { rpc }) });
    const log = this.#o.log.child({ dataplane: dataplane.id });
    const drains = new DrainBatcher(async (sandboxIds, timeoutMs) => {
      try {
        await drainClient.post('/internal/v1/drain/wait', { sandboxIds, timeoutMs });
      } catch (err) {
        log.warn({ err, sandboxes: sandboxIds.length }, 'drain wait failed; deleting anyway');
      }
    }, this.#o.drainTimeoutMs);
    const publisher = new RoutingPublisher(
      { send: (update) => client.post('/internal/v1/routing', update) },
      { snapshot: () => this.#o.state.routingSnapshot() },
      this.#o.clock,
      log,
    );
    dataplane.url = url;
    dataplane.publisher = publisher;
    dataplane.drainWait = (sandboxIds) => drains.wait(sandboxIds);
    dataplane.close = () => {
      publisher.close();
      client.destroy();
      drainClient.destroy();
      this.#o.rpc?.forget(url);
    };
  }

  /**
   * Brings the control plane's view of a worker in line with what it reports: sandboxes the
   * control plane had there but the worker does not run are gone (crashed or cleaned up); ready
   * sandboxes it runs that the control plane does not know are adopted when their function still
   * exists at that generation, and deleted otherwise.
   */
  #reconcileWorker(worker: WorkerEntry, reported: RegisterWorkerRequest['sandboxes']): void {
    const { state, sandboxes, autoscaler } = this.#o;
    const reportedIds = new Set(reported.map((s) => s.sandboxId));
    for (const sandbox of [...worker.sandboxes.values()]) {
      if (!reportedIds.has(sandbox.id)) sandboxes.remove(sandbox, { isDeleteOnWorker: false });
    }
    const toDelete: string[] = [];
    for (const info of reported) {
      if (state.sandboxes.has(info.sandboxId)) continue;
      const fn = state.functions.get(info.function);
      if (fn === undefined || fn.isDeleting || info.state !== 'ready' || info.address === undefined || info.generation !== fn.record.generation) {
        toDelete.push(info.sandboxId);
        continue;
      }
      sandboxes.adopt(worker, fn, { sandboxId: info.sandboxId, generation: info.generation, address: info.address });
      autoscaler.ensureActive(fn, { isRecovered: true });
    }
    for (const id of toDelete) state.batchers.get(worker.id)?.delete(id);
  }

  #checkHeartbeats(): void {
    const now = this.#o.clock.now();
    const limitMs = this.#o.heartbeatIntervalMs * this.#o.heartbeatMissLimit;
    for (const worker of this.#o.state.workers.values()) {
      if (worker.state !== 'ready' || now - worker.lastHeartbeatMs <= limitMs) continue;
      worker.state = 'unschedulable';
      this.#o.log.warn({ worker: worker.id, silentMs: Math.round(now - worker.lastHeartbeatMs) }, 'worker missed heartbeats; withdrawing its sandboxes');
      this.#o.sandboxes.withdrawWorker(worker);
    }
    for (const dataplane of this.#o.state.dataplanes.values()) {
      if (dataplane.state !== 'ready' || now - dataplane.lastHeartbeatMs <= limitMs) continue;
      dataplane.state = 'unreachable';
      this.#o.log.warn({ dataplane: dataplane.id }, 'data plane missed heartbeats');
    }
  }
}
