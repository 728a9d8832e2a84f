import { Counter, Gauge } from 'prom-client';
import type { MetricsRegistry } from '../../observability/metrics.ts';
import type { AsyncInvocations } from './async-invocations.ts';

/**
 * The async queue's metrics: depth and age of the oldest unfinished event per function (computed
 * at scrape time), and attempts by outcome (`succeeded`, `function-error`, `throttled`,
 * `dead-lettered`).
 */
export function registerAsyncMetrics(registry: MetricsRegistry, invocations: () => AsyncInvocations | undefined, fsyncs: () => number): (fn: string, outcome: string) => void {
  // Filled by depth's collect (one pass for both), registered after it: prom-client collects in registration order.
  const oldest = new Gauge({ name: 'baton_dataplane_async_oldest_age_seconds', help: 'Age of the oldest unfinished asynchronous invocation, by function.', labelNames: ['function'], registers: [] });
  new Gauge({
    name: 'baton_dataplane_async_queue_depth', help: 'Unfinished asynchronous invocations (queued, running, waiting to retry), by function.', labelNames: ['function'], registers: [registry],
    collect() {
      this.reset();
      oldest.reset();
      for (const row of invocations()?.queueRows() ?? []) {
        this.set({ function: row.fn }, row.depth);
        oldest.set({ function: row.fn }, row.oldestAgeMs / 1000);
      }
    },
  });
  registry.registerMetric(oldest);
  new Gauge({
    name: 'baton_dataplane_async_fsyncs', help: 'fdatasync calls of the embedded async log so far (one per group commit).', registers: [registry],
    collect() {
      this.set(fsyncs());
    },
  });
  const deliveries = new Counter({ name: 'baton_dataplane_async_deliveries_total', help: 'Asynchronous invocation attempts by outcome, and dead-lettered events.', labelNames: ['function', 'outcome'], registers: [registry] });
  return (fn, outcome) => deliveries.inc({ function: fn, outcome });
}
