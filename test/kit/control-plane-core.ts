import type { RoutingChange, RoutingUpdate } from '../../src/api/dataplane.ts';
import type { FunctionSpecInput } from '../../src/api/function-spec.ts';
import type { CreationBreakdown, SandboxFunction, SandboxInfo } from '../../src/api/worker.ts';
import { createRandom } from '../../src/core/random.ts';
import { controlPlaneConfigSchema, type ControlPlaneConfig } from '../../src/controlplane/config.ts';
import { createControlPlaneCore, type ControlPlaneCore } from '../../src/controlplane/core.ts';
import { RoutingPublisher } from '../../src/controlplane/routing-publisher.ts';
import type { SandboxBatcher, WorkerClient } from '../../src/controlplane/worker-client.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { createRegistry } from '../../src/observability/metrics.ts';
import { ManualClock } from './manual-clock.ts';
import { MemoryStore } from './memory-store.ts';

/** A worker as the control plane's core sees it: what it was asked to create and delete. */
export class FakeWorker {
  readonly id: string;
  readonly creates: { sandboxId: string; function: SandboxFunction }[] = [];
  readonly deletes: string[] = [];

  constructor(id: string) {
    this.id = id;
  }

  /** The ids asked for and not deleted since. */
  get running(): string[] {
    const deleted = new Set(this.deletes);
    return this.creates.map((c) => c.sandboxId).filter((id) => !deleted.has(id));
  }
}

/** A data plane behind a real RoutingPublisher: it applies what it is sent, and answers drain waits when the test says. */
export class FakeDataplane {
  readonly endpoints = new Map<string, { isDraining: boolean }>();
  readonly changes: RoutingChange[] = [];
  readonly drainWaits: { ids: readonly string[]; release: () => void }[] = [];
  /** While set, updates are taken but never answered (a data plane that hangs). */
  isUnresponsive = false;
  #version = 0;

  receive(update: RoutingUpdate): { epoch: string; version: number } {
    if (update.kind === 'snapshot') {
      this.endpoints.clear();
      for (const e of update.endpoints) this.endpoints.set(e.sandboxId, { isDraining: e.isDraining });
    } else {
      for (const change of update.changes) {
        this.changes.push(change);
        if (change.type === 'endpoint.put') this.endpoints.set(change.endpoint.sandboxId, { isDraining: change.endpoint.isDraining });
        if (change.type === 'endpoint.delete') this.endpoints.delete(change.sandboxId);
      }
    }
    this.#version = update.version;
    return { epoch: update.epoch, version: this.#version };
  }
}

const breakdown: CreationBreakdown = { fetchMs: 0, startMs: 1, readyMs: 1, totalMs: 2 };

/**
 * The control plane's components wired as in main.ts (createControlPlaneCore), on a ManualClock,
 * an in-memory store, fake workers and one fake data plane: unit tests of the decide → plan →
 * apply loop with explicit instants.
 */
export async function setupCore(overrides: Partial<ControlPlaneConfig> = {}) {
  const clock = new ManualClock(0);
  const store = new MemoryStore();
  const config = controlPlaneConfigSchema.parse({ heartbeatIntervalMs: 1000, heartbeatMissLimit: 3, autoscalerBucketMs: 1000, autoscalerTickMs: 2000, sandboxCreateTimeoutMs: 5000, drainTimeoutMs: 1000, ...overrides });
  const workers = new Map<string, FakeWorker>();
  const dataplane = new FakeDataplane();
  const core: ControlPlaneCore = createControlPlaneCore({
    config, store, clock, log: silentLogger(), random: createRandom(1), metricsRegistry: createRegistry('controlplane', { withDefaults: false }),
    connectWorker: (registration) => {
      const worker = workers.get(registration.workerId) ?? new FakeWorker(registration.workerId);
      workers.set(worker.id, worker);
      const client: WorkerClient = {
        createSandboxes: async (items) => ({ accepted: items.length }),
        deleteSandboxes: async (ids) => ({ deleted: [...ids], unknown: [] }),
        logs: async (sandboxId) => ({ sandboxId, lines: [], dropped: 0 }),
        close: () => undefined,
      };
      const batcher: SandboxBatcher = {
        client,
        create: (sandboxId, fn) => worker.creates.push({ sandboxId, function: fn }),
        delete: (sandboxId) => worker.deletes.push(sandboxId),
      };
      return batcher;
    },
    connectDataplane: (_url, _id, snapshot) => {
      const publisher = new RoutingPublisher({ send: async (update) => dataplane.isUnresponsive ? new Promise<never>(() => undefined) : dataplane.receive(update) }, { snapshot }, clock, silentLogger());
      return {
        publisher,
        drainWait: (ids) => new Promise<void>((release) => dataplane.drainWaits.push({ ids, release })),
        close: () => publisher.close(),
      };
    },
  });
  await core.load();
  core.start();

  const kit = {
    clock, store, core, workers, dataplane, config,
    async registerWorker(id: string, options: { cpuMilli?: number; memoryMiB?: number; sandboxes?: SandboxInfo[] } = {}): Promise<FakeWorker> {
      await core.workers.register({
        workerId: id, url: `http://127.0.0.1:1/${id}`, capacity: { cpuMilli: options.cpuMilli ?? 4000, memoryMiB: options.memoryMiB ?? 4096 },
        runtimes: ['emulated'], sandboxes: options.sandboxes ?? [],
      });
      return workers.get(id) as FakeWorker;
    },
    async registerDataplane(): Promise<void> {
      await core.dataplanes.register({ dataplaneId: 'dp-1', url: 'http://127.0.0.1:2', proxyUrl: 'http://127.0.0.1:3' });
      await clock.settle();
    },
    /**
     * `work`'s result, with the clock's turns run while it is pending: a function change is answered
     * once the data planes have it, and the routing publisher sends on a turn of the clock.
     */
    async settled<T>(work: Promise<T>): Promise<T> {
      let isDone = false;
      void work.then(() => { isDone = true; }, () => { isDone = true; });
      for (let round = 0; !isDone; round++) {
        if (round === 1_000) throw new Error('settled: still pending after 1000 rounds of turns (waiting on a timer?)');
        await clock.settle();
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      return work;
    },
    async deploy(spec: Partial<FunctionSpecInput> & { name: string }) {
      await kit.settled(core.registry.create({ runtime: 'emulated', resources: { cpuMilli: 100, memoryMiB: 128 }, ...spec }));
      return core.registry.get(spec.name);
    },
    /** The worker reports a sandbox ready (as its event batch would). */
    ready(workerId: string, sandboxId: string): void {
      core.executor.onEvent(core.workers.require(workerId), { type: 'ready', sandboxId, address: `127.0.0.1:${1000 + core.sandboxes.size}`, breakdown });
    },
    /** Workers and data planes that stop heartbeating (a crash, a partition). */
    silent: new Set<string>(),
    /**
     * Moves time on in steps, letting promises and turns run in between; every registered worker
     * not in `silent` heartbeats at each step, as its link would.
     */
    async advance(ms: number, stepMs = 10): Promise<void> {
      for (let t = 0; t < ms; t += stepMs) {
        for (const worker of core.workers.values()) if (worker.state === 'ready' && !kit.silent.has(worker.id)) core.workers.heartbeat(worker.id);
        for (const dataplane of core.dataplanes.values()) if (dataplane.state !== 'unregistered' && !kit.silent.has(dataplane.id)) core.dataplanes.heartbeat(dataplane.id);
        clock.advance(Math.min(stepMs, ms - t));
        await clock.settle();
      }
    },
  };
  return kit;
}
