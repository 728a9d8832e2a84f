import { Histogram } from 'prom-client';
import { COLD_START_BUCKETS_SECONDS, CounterFamily, escapeLabelValue, type MetricsRegistry } from '../observability/metrics.ts';

/** What the gauges read at scrape time, one row per function. */
export interface FunctionGaugeRow {
  readonly function: string;
  readonly inflight: number;
  readonly queued: number;
  readonly endpoints: number;
}

/**
 * The data plane's metrics. Per-function gauges are computed when scraped (no cost per invocation), for the
 * functions that have endpoints or invocations now — an idle function has no gauge series (absent
 * means 0), so a data plane routing 10,000 mostly idle functions is not scraped as 30,000 zeros.
 * Invocations are counted per function in plain numbers (`FunctionMetrics`), added to their counter
 * family when it is scraped; the per-function series are rendered by Baton, not prom-client (which
 * would hash and validate the label set on every invocation, and formats each series slowly). The
 * cold-start wait is one histogram for the data plane, not one per function: 17 series per function
 * made a scrape of 12,500 functions 20 MB of text and stalled the data plane for most of a second.
 */
export class DataplaneMetrics {
  readonly invocations: CounterFamily;
  readonly coldStartWait: Histogram;
  readonly #functions = new Set<FunctionMetrics>();

  constructor(registry: MetricsRegistry, rows: () => Iterable<FunctionGaugeRow>) {
    const functions = this.#functions;
    const invocations = new CounterFamily(
      'baton_dataplane_invocations_total',
      'Invocations answered, by function and outcome (HTTP status class from the sandbox, or the data plane error code).',
      ['function', 'code'],
    );
    this.invocations = invocations;
    registry.addExposition(() => {
      for (const fn of functions) fn.flushCounts();
      return invocations.slices();
    });
    this.coldStartWait = new Histogram({
      name: 'baton_dataplane_cold_start_wait_seconds',
      help: 'Time invocations spent queued waiting for a free sandbox (all functions).',
      buckets: COLD_START_BUCKETS_SECONDS,
      registers: [registry],
    });
    // The per-function gauges, rendered from one pass over the functions at scrape time.
    registry.addExposition(() => renderFunctionGauges(rows()));
  }

  forFunction(fn: string): FunctionMetrics {
    const metrics = new FunctionMetrics(fn, this);
    this.#functions.add(metrics);
    return metrics;
  }

  /** Called by `FunctionMetrics.remove`. */
  forget(metrics: FunctionMetrics): void {
    this.#functions.delete(metrics);
  }
}

/**
 * One function's invocation counts (flushed at scrape). One Map, created at the first invocation: by
 * code, the count since the last scrape — a code stays in it at 0 once flushed, so its keys are also
 * the codes the function has counter series for. A data plane holds one of these per function it
 * routes, mostly idle ones.
 */
export class FunctionMetrics {
  readonly #fn: string;
  readonly #metrics: DataplaneMetrics;
  #counts: Map<string, number> | undefined;

  constructor(fn: string, metrics: DataplaneMetrics) {
    this.#fn = fn;
    this.#metrics = metrics;
  }

  /** `code`: `2xx`…`5xx` for answers from the sandbox, an `ERR_*` code for the data plane's own. */
  countInvocation(code: string): void {
    const counts = (this.#counts ??= new Map());
    counts.set(code, (counts.get(code) ?? 0) + 1);
  }

  /** Adds the counts since the last scrape to the counter (called by its `collect`). */
  flushCounts(): void {
    if (this.#counts === undefined) return;
    for (const [code, n] of this.#counts) {
      if (n === 0) continue;
      this.#metrics.invocations.add([this.#fn, code], n);
      this.#counts.set(code, 0);
    }
  }

  observeWait(seconds: number): void {
    this.#metrics.coldStartWait.observe(seconds);
  }

  /** Drops the function's series (it was deleted). */
  remove(): void {
    this.#metrics.forget(this);
    if (this.#counts === undefined) return;
    for (const code of this.#counts.keys()) this.#metrics.invocations.remove([this.#fn, code]);
    this.#counts = undefined;
  }
}

/** The three per-function gauges as exposition text, for the functions that are not idle. */
function renderFunctionGauges(rows: Iterable<FunctionGaugeRow>): string {
  let inflight = '';
  let queued = '';
  let endpoints = '';
  for (const row of rows) {
    if (row.inflight === 0 && row.queued === 0 && row.endpoints === 0) continue;
    const label = `{function="${escapeLabelValue(row.function)}"} `;
    inflight += `baton_dataplane_inflight${label}${row.inflight}\n`;
    queued += `baton_dataplane_queue_depth${label}${row.queued}\n`;
    endpoints += `baton_dataplane_endpoints${label}${row.endpoints}\n`;
  }
  return gaugeText('baton_dataplane_inflight', 'Invocations at sandboxes now.', inflight)
    + gaugeText('baton_dataplane_queue_depth', 'Invocations queued waiting for a free sandbox now.', queued)
    + gaugeText('baton_dataplane_endpoints', 'Endpoints in the routing table.', endpoints);
}

function gaugeText(name: string, help: string, series: string): string {
  return `# HELP ${name} ${help}\n# TYPE ${name} gauge\n${series}`;
}

/** `2xx`, `3xx`, … for an HTTP status. */
export function statusClass(status: number): string {
  return STATUS_CLASSES[Math.floor(status / 100)] ?? 'other';
}

const STATUS_CLASSES = ['0xx', '1xx', '2xx', '3xx', '4xx', '5xx'];
