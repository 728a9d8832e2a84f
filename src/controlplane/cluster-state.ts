import type { RoutingChange, RoutingEndpoint, RoutingFunction } from '../api/dataplane.ts';
import type { RoutingPublisher } from './routing-publisher.ts';
import type { SandboxBatcher } from './worker-client.ts';
import { toRoutingEndpoint, toRoutingFunction, type FunctionEntry, type Sandbox, type WorkerEntry } from './model.ts';

export interface DataplaneEntry {
  readonly id: string;
  url: string;
  proxyUrl: string;
  state: 'ready' | 'unreachable' | 'unregistered';
  lastHeartbeatMs: number;
  publisher: RoutingPublisher | undefined;
  /** Resolves when this data plane has no invocation in flight on these sandboxes (bounded; never rejects). */
  drainWait: ((sandboxIds: readonly string[]) => Promise<void>) | undefined;
  close: (() => void) | undefined;
}

/**
 * The maps every control-plane component shares, with the indexes that keep per-cold-start work
 * constant: sandboxes by id, per function and per worker.
 */
export class ClusterState {
  readonly functions = new Map<string, FunctionEntry>();
  readonly workers = new Map<string, WorkerEntry>();
  /** The workers as an array for placement, rebuilt only when a worker joins. */
  #workerList: WorkerEntry[] = [];
  readonly batchers = new Map<string, SandboxBatcher>();
  readonly sandboxes = new Map<string, Sandbox>();
  readonly dataplanes = new Map<string, DataplaneEntry>();

  addWorker(worker: WorkerEntry): void {
    this.workers.set(worker.id, worker);
    this.#workerList = [...this.workers.values()];
  }

  get workerList(): readonly WorkerEntry[] {
    return this.#workerList;
  }

  /** Sends one routing change to every data plane (batched per data plane). */
  publish(change: RoutingChange): void {
    for (const dataplane of this.dataplanes.values()) dataplane.publisher?.enqueue(change);
  }

  /** Resolves when every data plane has acknowledged every change published so far. */
  async flushed(): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const dataplane of this.dataplanes.values()) if (dataplane.publisher !== undefined) waits.push(dataplane.publisher.flushed());
    await Promise.all(waits);
  }

  /** The full routing view (functions, ready and draining endpoints) for a data plane's snapshot. */
  routingSnapshot(): { functions: RoutingFunction[]; endpoints: RoutingEndpoint[] } {
    const functions: RoutingFunction[] = [];
    const endpoints: RoutingEndpoint[] = [];
    for (const fn of this.functions.values()) {
      if (fn.isDeleting) continue;
      functions.push(toRoutingFunction(fn));
      for (const sandbox of fn.sandboxes.values()) {
        if (sandbox.phase !== 'starting' && sandbox.address !== undefined) endpoints.push(toRoutingEndpoint(sandbox));
      }
    }
    return { functions, endpoints };
  }
}
