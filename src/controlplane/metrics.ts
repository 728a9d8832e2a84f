import { Counter, Gauge, Histogram } from 'prom-client';
import { COLD_START_BUCKETS_SECONDS, CounterFamily, type MetricsRegistry } from '../observability/metrics.ts';
import type { QuotaUsage } from '../api/quotas.ts';
import type { ColdStartBreakdown, Sandbox, WorkerEntry } from './model.ts';

export interface ControlPlaneMetrics {
  /** A sandbox became ready: counted for its function, its breakdown (when known) observed by phase. */
  coldStart(fn: string, breakdown: ColdStartBreakdown | undefined): void;
  readonly creationFailures: Counter<'function' | 'code'>;
  readonly unplaced: Counter<'function'>;
  readonly scaleDecisions: Counter;
}

/** What the gauges read at scrape time. */
export interface MetricSources {
  readonly sandboxes: { values(): Iterable<Sandbox> };
  readonly functions: { readonly size: number };
  readonly workers: { values(): Iterable<WorkerEntry> };
  readonly quotas: { list(): readonly QuotaUsage[] };
}

export function createControlPlaneMetrics(registry: MetricsRegistry, state: MetricSources): ControlPlaneMetrics {
  new Gauge({
    name: 'baton_controlplane_sandboxes', help: 'Sandboxes by phase', labelNames: ['state'], registers: [registry],
    collect() {
      const counts = { starting: 0, ready: 0, draining: 0 };
      for (const sandbox of state.sandboxes.values()) counts[sandbox.phase]++;
      for (const [phase, n] of Object.entries(counts)) this.set({ state: phase }, n);
    },
  });
  new Gauge({
    name: 'baton_controlplane_functions', help: 'Registered functions', registers: [registry],
    collect() { this.set(state.functions.size); },
  });
  new Gauge({
    name: 'baton_controlplane_workers', help: 'Workers by state', labelNames: ['state'], registers: [registry],
    collect() {
      const counts = { ready: 0, unschedulable: 0, unregistered: 0 };
      for (const worker of state.workers.values()) counts[worker.state]++;
      for (const [s, n] of Object.entries(counts)) this.set({ state: s }, n);
    },
  });
  new Gauge({
    name: 'baton_quota_usage', help: 'What the sandboxes in a quota\'s scope use (resource: sandboxes, memory_mib)', labelNames: ['scope', 'resource'], registers: [registry],
    collect() {
      this.reset();
      for (const quota of state.quotas.list()) {
        this.set({ scope: quota.scope, resource: 'sandboxes' }, quota.sandboxes);
        this.set({ scope: quota.scope, resource: 'memory_mib' }, quota.memoryMiB);
      }
    },
  });
  new Gauge({
    name: 'baton_quota_limit', help: 'A quota\'s limits (resource: sandboxes, memory_mib; a limit not set is not shown)', labelNames: ['scope', 'resource'], registers: [registry],
    collect() {
      this.reset();
      for (const quota of state.quotas.list()) {
        if (quota.maxSandboxes !== undefined) this.set({ scope: quota.scope, resource: 'sandboxes' }, quota.maxSandboxes);
        if (quota.maxMemoryMiB !== undefined) this.set({ scope: quota.scope, resource: 'memory_mib' }, quota.maxMemoryMiB);
      }
    },
  });
  // Cold starts are counted per function in plain numbers, rendered by Baton at scrape time: one
  // series per function, at thousands of cold starts per second (see CounterFamily).
  const coldStarts = new CounterFamily('baton_controlplane_cold_starts_total', 'Sandboxes that became ready', ['function']);
  registry.addExposition(() => coldStarts.slices());
  const coldStartSeconds = new Histogram({
    name: 'baton_controlplane_cold_start_seconds',
    help: 'Sandbox creation latency by phase: fetch, start, ready (on the worker), controlplane (decision to ready, as seen here)',
    labelNames: ['phase'], buckets: COLD_START_BUCKETS_SECONDS, registers: [registry],
  });
  const fetch = coldStartSeconds.labels('fetch');
  const start = coldStartSeconds.labels('start');
  const ready = coldStartSeconds.labels('ready');
  const controlplane = coldStartSeconds.labels('controlplane');
  return {
    coldStart(fn, breakdown) {
      coldStarts.add([fn]);
      if (breakdown === undefined) return;
      fetch.observe(breakdown.fetchMs / 1000);
      start.observe(breakdown.startMs / 1000);
      ready.observe(breakdown.readyMs / 1000);
      controlplane.observe(breakdown.controlPlaneMs / 1000);
    },
    creationFailures: new Counter({ name: 'baton_controlplane_sandbox_failures_total', help: 'Sandbox creations that failed, and sandboxes that exited on their own', labelNames: ['function', 'code'], registers: [registry] }),
    unplaced: new Counter({ name: 'baton_controlplane_unplaced_sandboxes_total', help: 'Sandboxes wanted that no worker had capacity for', labelNames: ['function'], registers: [registry] }),
    scaleDecisions: new Counter({ name: 'baton_controlplane_scale_decisions_total', help: 'Autoscaler decisions taken', registers: [registry] }),
  };
}

/** Gauges read from the autoscaler at scrape time. */
export function addAutoscalerGauges(registry: MetricsRegistry, autoscaler: { readonly activeCount: number; readonly scaleDownsWaiting: number }): void {
  new Gauge({
    name: 'baton_controlplane_autoscaler_active_functions', help: 'Functions the autoscaler decides for (with sandboxes, demand or a minimum scale)', registers: [registry],
    collect() { this.set(autoscaler.activeCount); },
  });
  new Gauge({
    name: 'baton_controlplane_scale_downs_waiting', help: 'Scale-downs decided and not yet handed on (they are spread over the tick)', registers: [registry],
    collect() { this.set(autoscaler.scaleDownsWaiting); },
  });
}
