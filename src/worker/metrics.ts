import { Counter, Gauge, Histogram } from 'prom-client';
import type { FailureReason, SandboxState } from '../api/worker.ts';
import { COLD_START_BUCKETS_SECONDS, CounterFamily, type MetricsRegistry } from '../observability/metrics.ts';

export type CreationOutcome = 'ready' | 'failed' | 'cancelled';
export type ColdStartPhase = 'fetch' | 'unpack' | 'bundle' | 'network' | 'start' | 'ready' | 'total';

/** The worker's own metrics. Labels are bounded: function names and fixed sets, never sandbox ids. */
export interface WorkerMetrics {
  creation(fn: string, outcome: CreationOutcome): void;
  coldStart(phase: ColdStartPhase, ms: number): void;
  exit(fn: string): void;
  /** A sandbox that failed to start or stopped on its own, by why and under which runtime. */
  failure(reason: FailureReason, runtime: string): void;
}

export function createWorkerMetrics(registry: MetricsRegistry, countByState: () => Record<SandboxState, number>): WorkerMetrics {
  new Gauge({
    name: 'baton_worker_sandboxes',
    help: 'Sandboxes on this worker by state.',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      for (const [state, count] of Object.entries(countByState())) this.set({ state }, count);
    },
  });
  // Creations are counted in plain numbers per function and rendered by Baton at scrape time: one
  // series per function and outcome, at thousands of creations per second (see CounterFamily).
  const pending = new Map<string, Record<CreationOutcome, number>>();
  const creations = new CounterFamily('baton_worker_sandbox_creations_total', 'Sandbox creations by function and outcome (ready, failed, cancelled).', ['function', 'outcome']);
  registry.addExposition(() => {
    for (const [fn, counts] of pending) {
      for (const outcome of OUTCOMES) if (counts[outcome] > 0) creations.add([fn, outcome], counts[outcome]);
    }
    pending.clear();
    return creations.slices();
  });
  const coldStart = new Histogram({
    name: 'baton_worker_cold_start_seconds',
    help: 'Sandbox creation latency on the worker by phase: fetch (artifact), unpack (image), bundle and network (containers), start (spawn to alive), ready (alive to ready), total.',
    labelNames: ['phase'] as const,
    buckets: COLD_START_BUCKETS_SECONDS,
    registers: [registry],
  });
  const phases: Record<ColdStartPhase, Histogram.Internal<'phase'>> = {
    fetch: coldStart.labels('fetch'), unpack: coldStart.labels('unpack'), bundle: coldStart.labels('bundle'), network: coldStart.labels('network'),
    start: coldStart.labels('start'), ready: coldStart.labels('ready'), total: coldStart.labels('total'),
  };
  const failures = new Counter({
    name: 'baton_worker_sandbox_failures_total',
    help: 'Sandboxes that failed to start or stopped on their own, by reason (exit, signal, oom, start-timeout, start-error) and runtime.',
    labelNames: ['reason', 'runtime'] as const,
    registers: [registry],
  });
  const exits = new Counter({
    name: 'baton_worker_sandbox_exits_total',
    help: 'Sandboxes that exited on their own (not deleted) by function.',
    labelNames: ['function'] as const,
    registers: [registry],
  });
  return {
    creation(fn, outcome) {
      let counts = pending.get(fn);
      if (counts === undefined) pending.set(fn, counts = { ready: 0, failed: 0, cancelled: 0 });
      counts[outcome]++;
    },
    coldStart: (phase, ms) => phases[phase].observe(ms / 1000),
    exit: (fn) => exits.inc({ function: fn }),
    failure: (reason, runtime) => failures.inc({ reason, runtime }),
  };
}

const OUTCOMES: readonly CreationOutcome[] = ['ready', 'failed', 'cancelled'];

/** Metrics that record nothing, for tests and embedding. */
export const noopWorkerMetrics: WorkerMetrics = { creation: () => undefined, coldStart: () => undefined, exit: () => undefined, failure: () => undefined };
