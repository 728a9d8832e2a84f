/**
 * What `baton loadgen analyze` reports: Dirigent's SOSP'24 metrics (see README.md, "Metrics") of
 * one results file, as an object, a table, and SVG plots that put several files on the same axes.
 * Pure: records in, values and SVG text out.
 */
import {
  dirigentFunctionKey, percentiles, perFunctionSchedulingLatency, perFunctionSlowdown, schedulingLatenciesMs,
} from './analysis.ts';
import { renderLineChart } from './plot.ts';
import type { ChartPoint, ChartSeries } from './plot.ts';
import { errorCodeOf, isOk } from './records.ts';
import type { InvocationRecords } from './records.ts';

export type Grouping = 'name' | 'dirigent';

export interface ReportOptions {
  /** Trace minutes left out of the slowdown. Default 10 (Dirigent's analysis). */
  readonly warmupMinutes?: number;
  /** 'dirigent' strips Invitro's `-<n>` name suffixes before grouping, as Dirigent's script does. Default 'name'. */
  readonly groupBy?: Grouping;
}

export interface Percentiles {
  readonly p50: number;
  readonly p99: number;
}

export interface Report {
  readonly invocations: number;
  readonly functions: number;
  readonly schedulingLatencyMs: {
    /** Over every invocation (no warm-up or failure filter). */
    readonly perInvocation: Percentiles;
    /** The distribution across functions of each function's mean scheduling latency (Dirigent's headline). */
    readonly perFunctionMean: Percentiles;
    /** Not Dirigent's: the distribution across functions of each function's own p99. */
    readonly perFunctionP99: Percentiles;
  };
  readonly slowdown: {
    /** The distribution across functions of each function's geometric-mean slowdown. */
    readonly perFunctionGeomean: Percentiles;
    readonly warmupMinutes: number;
    /** Invocations after the warm-up filter. */
    readonly considered: number;
    readonly discardedBelowOneShare: number;
    readonly failureShare: number;
  };
  /** p50/p99 of responseTime over all invocations: Dirigent's cold-start sweep metric (for sweep runs). */
  readonly responseTimeMs: Percentiles;
  readonly failures: { readonly total: number; readonly byCode: Readonly<Record<string, number>> };
}

const pair = (values: ArrayLike<number>): Percentiles => {
  const [p50 = Number.NaN, p99 = Number.NaN] = percentiles(values, [50, 99]);
  return { p50, p99 };
};

function groupOption(grouping: Grouping | undefined): { groupBy?: (name: string) => string } {
  return grouping === 'dirigent' ? { groupBy: dirigentFunctionKey } : {};
}

export function analyzeRecords(records: InvocationRecords, options: ReportOptions = {}): Report {
  const warmupMinutes = options.warmupMinutes ?? 10;
  const group = groupOption(options.groupBy);
  const perFunction = perFunctionSchedulingLatency(records, group);
  const slowdown = perFunctionSlowdown(records, { ...group, warmupMinutes });
  const responseTimes = new Float64Array(records.length);
  const byCode = new Map<string, number>();
  let failed = 0;
  for (let i = 0; i < records.length; i++) {
    responseTimes[i] = (records.endMs[i] ?? 0) - (records.sentMs[i] ?? 0);
    if (isOk(records, i)) continue;
    failed++;
    const code = errorCodeOf(records, i) || `HTTP_${records.status[i] ?? 0}`;
    byCode.set(code, (byCode.get(code) ?? 0) + 1);
  }
  return {
    invocations: records.length,
    functions: perFunction.length,
    schedulingLatencyMs: {
      perInvocation: pair(schedulingLatenciesMs(records)),
      perFunctionMean: pair(perFunction.map((f) => f.meanMs)),
      perFunctionP99: pair(perFunction.map((f) => f.p99Ms)),
    },
    slowdown: {
      perFunctionGeomean: pair(slowdown.perFunction.map((f) => f.slowdown)),
      warmupMinutes, considered: slowdown.considered,
      discardedBelowOneShare: slowdown.discardedBelowOneShare, failureShare: slowdown.failureShare,
    },
    responseTimeMs: pair(responseTimes),
    failures: { total: failed, byCode: Object.fromEntries([...byCode].sort(([a], [b]) => a.localeCompare(b))) },
  };
}

const fmt = (v: number, digits = 1): string => (Number.isFinite(v) ? v.toFixed(digits) : '-');

/** The report as a table, one column per results file. */
export function formatReportTable(reports: readonly { label: string; report: Report }[]): string {
  const rows: [string, (r: Report) => string][] = [
    ['invocations', (r) => String(r.invocations)],
    ['functions', (r) => String(r.functions)],
    ['sched. latency per invocation p50 (ms)', (r) => fmt(r.schedulingLatencyMs.perInvocation.p50)],
    ['sched. latency per invocation p99 (ms)', (r) => fmt(r.schedulingLatencyMs.perInvocation.p99)],
    ['per-function mean sched. latency p50 (ms)', (r) => fmt(r.schedulingLatencyMs.perFunctionMean.p50)],
    ['per-function mean sched. latency p99 (ms)', (r) => fmt(r.schedulingLatencyMs.perFunctionMean.p99)],
    ['per-function p99 sched. latency p50 (ms)', (r) => fmt(r.schedulingLatencyMs.perFunctionP99.p50)],
    ['per-function slowdown (geomean) p50', (r) => fmt(r.slowdown.perFunctionGeomean.p50, 3)],
    ['per-function slowdown (geomean) p99', (r) => fmt(r.slowdown.perFunctionGeomean.p99, 3)],
    ['slowdown: minutes dropped / kept invocations', (r) => `${r.slowdown.warmupMinutes} / ${r.slowdown.considered}`],
    ['slowdown: share < 1 discarded', (r) => `${fmt(100 * r.slowdown.discardedBelowOneShare)} %`],
    ['response time p50 / p99 (ms, cold-start sweep)', (r) => `${fmt(r.responseTimeMs.p50)} / ${fmt(r.responseTimeMs.p99)}`],
    ['failures', (r) => String(r.failures.total)],
    ...[...new Set(reports.flatMap(({ report }) => Object.keys(report.failures.byCode)))].sort()
      .map((code): [string, (r: Report) => string] => [`  ${code}`, (r) => String(r.failures.byCode[code] ?? 0)]),
  ];
  const header = ['metric', ...reports.map((r) => r.label)];
  const table = [header, ...rows.map(([name, value]) => [name, ...reports.map((r) => value(r.report))])];
  const widths = header.map((_, c) => Math.max(...table.map((row) => (row[c] ?? '').length)));
  return table.map((row) => row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0))).join('  ').trimEnd()).join('\n');
}

/** At most this many points per CDF or time series (a 10^6-invocation run stays a small SVG). */
const MAX_POINTS = 800;

/** Empirical CDF points (value, share ≤ value), thinned to MAX_POINTS, the extremes kept. */
export function cdfPoints(values: ArrayLike<number>): ChartPoint[] {
  const sorted = Float64Array.from(values).filter(Number.isFinite).sort();
  const n = sorted.length;
  const step = Math.max(1, Math.ceil(n / MAX_POINTS));
  const points: ChartPoint[] = [];
  for (let i = 0; i < n; i += step) points.push({ x: sorted[i] ?? 0, y: (i + 1) / n });
  if (n > 0 && (n - 1) % step !== 0) points.push({ x: sorted[n - 1] ?? 0, y: 1 });
  return points;
}

/** p50 and p99 of per-invocation scheduling latency per time bin of the send time (s). */
export function latencyOverTime(records: InvocationRecords): { p50: ChartPoint[]; p99: ChartPoint[] } {
  const latencies = schedulingLatenciesMs(records);
  let last = 0;
  for (let i = 0; i < records.length; i++) last = Math.max(last, records.sentMs[i] ?? 0);
  const binMs = Math.max(1_000, Math.ceil(last / 300 / 1000) * 1000);
  const bins = new Map<number, number[]>();
  for (let i = 0; i < records.length; i++) {
    const bin = Math.floor((records.sentMs[i] ?? 0) / binMs);
    const list = bins.get(bin);
    if (list === undefined) bins.set(bin, [latencies[i] ?? 0]);
    else list.push(latencies[i] ?? 0);
  }
  const p50: ChartPoint[] = [];
  const p99: ChartPoint[] = [];
  for (const [bin, values] of [...bins].sort(([a], [b]) => a - b)) {
    const [a = Number.NaN, b = Number.NaN] = percentiles(values, [50, 99]);
    const x = ((bin + 0.5) * binMs) / 1000;
    p50.push({ x, y: a });
    p99.push({ x, y: b });
  }
  return { p50, p99 };
}

export interface LabelledRecords {
  readonly label: string;
  readonly records: InvocationRecords;
}

/** The SVG files of `analyze --plots`, by file name; every file's data on the same axes. */
export function renderReportPlots(runs: readonly LabelledRecords[], options: ReportOptions = {}): Record<string, string> {
  const group = groupOption(options.groupBy);
  const warmupMinutes = options.warmupMinutes ?? 10;
  const series = (f: (r: InvocationRecords) => ArrayLike<number>): ChartSeries[] => runs.map(({ label, records }) => ({ name: label, points: cdfPoints(f(records)) }));
  return {
    'scheduling-latency-per-function-cdf.svg': renderLineChart({
      title: 'Per-function mean scheduling latency', xLabel: 'mean scheduling latency (ms)', yLabel: 'CDF (functions)', xScale: 'log',
      series: series((r) => perFunctionSchedulingLatency(r, group).map((f) => f.meanMs)),
    }),
    'scheduling-latency-cdf.svg': renderLineChart({
      title: 'Scheduling latency per invocation', xLabel: 'scheduling latency (ms)', yLabel: 'CDF (invocations)', xScale: 'log',
      series: series((r) => schedulingLatenciesMs(r)),
    }),
    'slowdown-per-function-cdf.svg': renderLineChart({
      title: `Per-function slowdown (geometric mean, minutes < ${warmupMinutes} dropped)`, xLabel: 'slowdown', yLabel: 'CDF (functions)', xScale: 'log',
      series: series((r) => perFunctionSlowdown(r, { ...group, warmupMinutes }).perFunction.map((f) => f.slowdown)),
    }),
    'latency-over-time.svg': renderLineChart({
      title: 'Scheduling latency over time', xLabel: 'time since start (s)', yLabel: 'scheduling latency (ms)', yScale: 'log',
      series: runs.flatMap(({ label, records }) => {
        const { p50, p99 } = latencyOverTime(records);
        return [{ name: `${label} p50`, points: p50 }, { name: `${label} p99`, points: p99 }];
      }),
    }),
  };
}
