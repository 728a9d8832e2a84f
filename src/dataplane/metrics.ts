import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { COLD_START_BUCKETS_SECONDS } from '../observability/metrics.ts';

/** What the gauges read at scrape time, one row per function. */
export interface FunctionGaugeRow {
  readonly function: string;
  readonly inflight: number;
  readonly queued: number;
  readonly endpoints: number;
}

/**
 * The data plane's metrics. Gauges are computed when scraped (no cost per invocation); the counter
 * and the histogram are updated per invocation through children cached per function
 * (`FunctionMetrics`), so the hot path never builds a label set.
 */
export class DataplaneMetrics {
  readonly invocations: Counter<'function' | 'code'>;
  readonly coldStartWait: Histogram<'function'>;

  constructor(registry: Registry, rows: () => Iterable<FunctionGaugeRow>) {
    this.invocations = new Counter({
      name: 'baton_dataplane_invocations_total',
      help: 'Invocations answered, by function and outcome (HTTP status class from the sandbox, or the data plane error code).',
      labelNames: ['function', 'code'] as const,
      registers: [registry],
    });
    this.coldStartWait = new Histogram({
      name: 'baton_dataplane_cold_start_wait_seconds',
      help: 'Time invocations spent queued waiting for a free sandbox.',
      labelNames: ['function'] as const,
      buckets: COLD_START_BUCKETS_SECONDS,
      registers: [registry],
    });
    const gauge = (name: string, help: string, pick: (row: FunctionGaugeRow) => number): void => {
      new Gauge({
        name, help, labelNames: ['function'] as const, registers: [registry],
        collect() {
          this.reset();
          for (const row of rows()) this.set({ function: row.function }, pick(row));
        },
      });
    };
    gauge('baton_dataplane_inflight', 'Invocations at sandboxes now.', (r) => r.inflight);
    gauge('baton_dataplane_queue_depth', 'Invocations queued waiting for a free sandbox now.', (r) => r.queued);
    gauge('baton_dataplane_endpoints', 'Endpoints in the routing table.', (r) => r.endpoints);
  }

  forFunction(fn: string): FunctionMetrics {
    return new FunctionMetrics(fn, this);
  }
}

/** One function's metric children, created on first use and then reused. */
export class FunctionMetrics {
  readonly #fn: string;
  readonly #metrics: DataplaneMetrics;
  readonly #counters = new Map<string, Counter.Internal>();
  #wait: Histogram.Internal<'function'> | undefined;

  constructor(fn: string, metrics: DataplaneMetrics) {
    this.#fn = fn;
    this.#metrics = metrics;
  }

  /** `code`: `2xx`…`5xx` for answers from the sandbox, an `ERR_*` code for the data plane's own. */
  countInvocation(code: string): void {
    let child = this.#counters.get(code);
    if (child === undefined) {
      child = this.#metrics.invocations.labels(this.#fn, code);
      this.#counters.set(code, child);
    }
    child.inc();
  }

  observeWait(seconds: number): void {
    (this.#wait ??= this.#metrics.coldStartWait.labels(this.#fn)).observe(seconds);
  }

  /** Drops the function's series (it was deleted). */
  remove(): void {
    for (const code of this.#counters.keys()) this.#metrics.invocations.remove(this.#fn, code);
    this.#counters.clear();
    if (this.#wait !== undefined) this.#metrics.coldStartWait.remove(this.#fn);
    this.#wait = undefined;
  }
}

/** `2xx`, `3xx`, … for an HTTP status. */
export function statusClass(status: number): string {
  return STATUS_CLASSES[Math.floor(status / 100)] ?? 'other';
}

const STATUS_CLASSES = ['0xx', '1xx', '2xx', '3xx', '4xx', '5xx'];
