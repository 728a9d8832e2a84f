import type { RoutingSnapshot } from '../api/dataplane.ts';
import type { RegisterWorkerRequest } from '../api/worker.ts';
import type { Clock } from '../core/clock.ts';
import type { Random } from '../core/random.ts';
import type { Logger } from '../observability/logger.ts';
import type { MetricsRegistry } from '../observability/metrics.ts';
import { createEvictionPolicy } from '../policy/eviction/index.ts';
import { createPlacementPolicy } from '../policy/placement/index.ts';
import type { Store } from '../store/store.ts';
import { Autoscaler } from './autoscaler.ts';
import type { ControlPlaneConfig } from './config.ts';
import { DataplaneMembership, type DataplaneChannel } from './dataplane-membership.ts';
import { DemandIntake } from './demand-intake.ts';
import { FunctionRegistry } from './function-registry.ts';
import { addAutoscalerGauges, createControlPlaneMetrics } from './metrics.ts';
import { countSandboxes, toRoutingFunction } from './model.ts';
import { PlanExecutor } from './plan-executor.ts';
import { QuotaRegistry } from './quota-registry.ts';
import { Reconciler } from './reconciler.ts';
import { RoutingFanout } from './routing-fanout.ts';
import { SandboxTable } from './sandbox-table.ts';
import { TokenRegistry } from './token-registry.ts';
import type { SandboxBatcher } from './worker-client.ts';
import { WorkerMembership } from './worker-membership.ts';

/** Opens the batcher that carries a worker's creations and deletions; `onCreateFailed` hears of creations that did not reach it. */
export type WorkerConnector = (registration: RegisterWorkerRequest, onCreateFailed: (sandboxIds: readonly string[], err: unknown) => void) => SandboxBatcher;

/** Opens the channel to a data plane; `snapshot` is the full routing view it is sent when it (re)joins. */
export type DataplaneConnector = (url: string, dataplaneId: string, snapshot: () => RoutingSnapshot, commandToken: string | undefined) => DataplaneChannel;

export interface ControlPlaneCoreOptions {
  readonly config: Pick<ControlPlaneConfig,
    'heartbeatIntervalMs' | 'heartbeatMissLimit' | 'autoscalerBucketMs' | 'autoscalerTickMs' | 'sandboxCreateTimeoutMs'
    | 'placementPolicy' | 'evictionPolicy' | 'maxArtifactBytes' | 'maxUnpackedBytes'>;
  readonly store: Store;
  readonly clock: Clock;
  readonly log: Logger;
  readonly random: Random;
  readonly metricsRegistry: MetricsRegistry;
  readonly connectWorker: WorkerConnector;
  readonly connectDataplane: DataplaneConnector;
  /** The epoch of the leader lease this core acts in (told to workers as they register). */
  readonly leaderEpoch?: number;
}

/** The control plane's components, wired; its main.ts adds the store, the sockets and the HTTP server. */
export interface ControlPlaneCore {
  readonly registry: FunctionRegistry;
  readonly tokens: TokenRegistry;
  readonly quotas: QuotaRegistry;
  readonly workers: WorkerMembership;
  readonly dataplanes: DataplaneMembership;
  readonly demand: DemandIntake;
  readonly autoscaler: Autoscaler;
  readonly executor: PlanExecutor;
  readonly reconciler: Reconciler;
  readonly routing: RoutingFanout;
  readonly sandboxes: SandboxTable;
  /** Loads functions, workers and data planes from the store. */
  load(): Promise<void>;
  /** Starts failure detection (the heartbeat monitors). */
  start(): void;
  close(): void;
}

/**
 * How long a function change waits for the data planes to acknowledge it — those connected, and
 * those known from the store that have not registered again since this term began (a new leader's
 * first moments) — before the API answers anyway (a data plane that is down gets a snapshot when
 * it is back).
 */
export const FUNCTION_DELIVERY_WAIT_MS = 2_000;

/**
 * Wires the control plane's components — each the one owner of its state: the registry
 * (functions), the worker and data-plane memberships (workers, data planes and the channels to
 * them), the autoscaler (demand and desired scale), the plan executor (sandboxes) — around the
 * decide → plan → apply loop (see src/controlplane/README.md). It creates no socket, client or
 * timer of its own: those come in through the clock and the two connectors, which main.ts makes
 * real and tests make fake. The components' references to each other are resolved when first
 * called, so the order below is free.
 */
export function createControlPlaneCore(o: ControlPlaneCoreOptions): ControlPlaneCore {
  const { config, store, clock, log, random, metricsRegistry } = o;
  const sandboxes = new SandboxTable({ added: (s) => quotas.added(s), removed: (s) => quotas.removed(s) });
  const dataplanes: DataplaneMembership = new DataplaneMembership({
    store, clock, log, heartbeatIntervalMs: config.heartbeatIntervalMs, heartbeatMissLimit: config.heartbeatMissLimit,
    connect: (url, dataplaneId, commandToken) => o.connectDataplane(url, dataplaneId, () => routing.snapshot(), commandToken),
  });
  const registry: FunctionRegistry = new FunctionRegistry({
    store, log, routing: { publish: (change) => routing.publish(change), delivered: () => withinMs(clock, FUNCTION_DELIVERY_WAIT_MS, dataplanes.registered().then(() => routing.flushed())) },
    autoscaler: {
      ensureActive: (fn) => autoscaler.ensureActive(fn), onUpdated: (fn) => autoscaler.onUpdated(fn),
      forget: (fn) => {
        autoscaler.forget(fn);
        quotas.forget(fn);
      },
    },
    removeSandboxes: (fn) => executor.removeAll(fn),
    limits: { maxPackedBytes: config.maxArtifactBytes, maxUnpackedBytes: config.maxUnpackedBytes, maxEntries: 100_000 },
    admit: (spec) => quotas.admit(spec),
  });
  const quotas: QuotaRegistry = new QuotaRegistry({
    store, log, functions: { values: () => registry.values() }, sandboxes, onReleased: (fn) => reconciler.converge(fn),
  });
  const tokens = new TokenRegistry({
    store, log, routing: { publish: (change) => routing.publish(change), delivered: () => withinMs(clock, FUNCTION_DELIVERY_WAIT_MS, routing.flushed()) },
  });
  const routing: RoutingFanout = new RoutingFanout({ functions: registry, sandboxes, tokens, channels: () => dataplanes.channels() });
  const metrics = createControlPlaneMetrics(metricsRegistry, { sandboxes, functions: registry, workers: { values: () => workers.values() }, quotas });
  const executor: PlanExecutor = new PlanExecutor({
    sandboxes, routing, drains: dataplanes, clock, log, metrics, createTimeoutMs: config.sandboxCreateTimeoutMs,
    workers: { get: (id) => workers.get(id), batcher: (id) => workers.batcher(id) },
    onChanged: (fn) => reconciler.converge(fn),
  });
  const workers: WorkerMembership = new WorkerMembership({
    store, clock, log, heartbeatIntervalMs: config.heartbeatIntervalMs, heartbeatMissLimit: config.heartbeatMissLimit,
    functions: { get: (name) => registry.find(name) }, sandboxes: executor,
    onRecovered: (fn) => autoscaler.ensureActive(fn, { isRecovered: true }),
    shortfall: (fn) => Math.max(0, autoscaler.desiredScale(fn) - countSandboxes(fn).current),
    connect: (registration) => o.connectWorker(registration, (ids, err) => executor.onCreateUnreachable(ids, err)),
    ...(o.leaderEpoch === undefined ? {} : { leaderEpoch: o.leaderEpoch }),
  });
  const autoscaler: Autoscaler = new Autoscaler({
    clock, bucketMs: config.autoscalerBucketMs, tickMs: config.autoscalerTickMs,
    onDecision: (fn) => reconciler.converge(fn),
    onDecisions: (count) => metrics.scaleDecisions.inc(count),
    onError: (fn, err) => log.error({ err, fn: fn.name }, 'scaling a function failed; the others go on'),
  });
  addAutoscalerGauges(metricsRegistry, autoscaler);
  const reconciler: Reconciler = new Reconciler({
    policies: { placement: createPlacementPolicy(config.placementPolicy, { random }), eviction: createEvictionPolicy(config.evictionPolicy, { random }) },
    executor, desiredScale: (fn) => autoscaler.desiredScale(fn), workers: () => workers.list(), log, quotas,
    publishFunction: (fn) => routing.publish({ type: 'function.put', function: toRoutingFunction(fn) }),
  });
  const demand = new DemandIntake({
    clock, functions: { get: (name) => registry.find(name) }, requireDataplane: (id) => dataplanes.require(id),
    autoscaler, markUsed: (fn, ids, nowMs) => executor.markUsed(fn, ids, nowMs),
  });
  return {
    registry, tokens, quotas, workers, dataplanes, demand, autoscaler, executor, reconciler, routing, sandboxes,
    async load() {
      await registry.load();
      await tokens.load();
      await quotas.load();
      await workers.load();
      await dataplanes.load();
    },
    start() {
      workers.start();
      dataplanes.start();
    },
    close() {
      autoscaler.close();
      executor.close();
      workers.close();
      dataplanes.close();
    },
  };
}

/** `work`, or nothing once `ms` have passed; never rejects (`work` itself must not). */
export function withinMs(clock: Clock, ms: number, work: Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    const timer = clock.setTimeout(resolve, ms);
    void work.then(() => {
      timer.cancel();
      resolve();
    });
  });
}
