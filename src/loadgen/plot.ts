/**
 * A dependency-free SVG line chart for benchmark results, e.g. a cold-start sweep: x = cold starts
 * per second, y = latency (ms), one series per percentile. Pure: options in, SVG text out.
 *
 * Log axes drop points whose value is not positive (they have no place on them); non-finite
 * points are dropped on every axis. Each series is a `<polyline>` plus one `<circle>` per point.
 */

export type AxisScale = 'linear' | 'log';

export interface ChartPoint {
  readonly x: number;
  readonly y: number;
}

export interface ChartSeries {
  readonly name: string;
  readonly points: readonly ChartPoint[];
  /** CSS colour; default from a fixed palette by series order. */
  readonly color?: string;
}

export interface LineChartOptions {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly ChartSeries[];
  /** Default 'linear'. */
  readonly xScale?: AxisScale;
  /** Default 'linear'. */
  readonly yScale?: AxisScale;
  /** Default 720 × 440 px. */
  readonly widthPx?: number;
  readonly heightPx?: number;
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];
const MARGIN = { left: 72, right: 150, top: 44, bottom: 56 } as const;

interface Axis {
  readonly scale: AxisScale;
  readonly min: number;
  readonly max: number;
  readonly ticks: readonly number[];
}

/** Renders the chart as a standalone SVG document. */
export function renderLineChart(options: LineChartOptions): string {
  const width = options.widthPx ?? 720;
  const height = options.heightPx ?? 440;
  const xScale = options.xScale ?? 'linear';
  const yScale = options.yScale ?? 'linear';
  const series = options.series.map((s, i) => ({
    name: s.name, color: s.color ?? PALETTE[i % PALETTE.length] ?? '#000',
    points: s.points.filter((p) => fits(p.x, xScale) && fits(p.y, yScale)).slice().sort((a, b) => a.x - b.x),
  }));
  const xAxis = makeAxis(series.flatMap((s) => s.points.map((p) => p.x)), xScale);
  const yAxis = makeAxis(series.flatMap((s) => s.points.map((p) => p.y)), yScale);
  const plotW = width - MARGIN.left - MARGIN.right;
  const plotH = height - MARGIN.top - MARGIN.bottom;
  const px = (x: number): number => MARGIN.left + position(xAxis, x) * plotW;
  const py = (y: number): number => MARGIN.top + (1 - position(yAxis, y)) * plotH;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="${MARGIN.left + plotW / 2}" y="${MARGIN.top / 2 + 6}" text-anchor="middle" font-size="16">${escapeXml(options.title)}</text>`,
    ...xAxis.ticks.map((t) => tickX(px(t), MARGIN.top, MARGIN.top + plotH, formatTick(t))),
    ...yAxis.ticks.map((t) => tickY(py(t), MARGIN.left, MARGIN.left + plotW, formatTick(t))),
    `<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#000"/>`,
    `<text x="${MARGIN.left + plotW / 2}" y="${height - 14}" text-anchor="middle">${escapeXml(options.xLabel)}</text>`,
    `<text x="18" y="${MARGIN.top + plotH / 2}" text-anchor="middle" transform="rotate(-90 18 ${MARGIN.top + plotH / 2})">${escapeXml(options.yLabel)}</text>`,
  ];
  series.forEach((s, i) => {
    const coords = s.points.map((p) => `${round(px(p.x))},${round(py(p.y))}`);
    parts.push(`<g class="series" data-name="${escapeXml(s.name)}">`);
    parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${coords.join(' ')}"/>`);
    for (const c of coords) {
      const [cx, cy] = c.split(',');
      parts.push(`<circle cx="${cx}" cy="${cy}" r="3" fill="${s.color}"/>`);
    }
    parts.push('</g>');
    const ly = MARGIN.top + 14 + i * 20;
    const lx = MARGIN.left + plotW + 16;
    parts.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 24}" y2="${ly}" stroke="${s.color}" stroke-width="2"/>`);
    parts.push(`<text x="${lx + 30}" y="${ly + 4}">${escapeXml(s.name)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

function fits(value: number, scale: AxisScale): boolean {
  return Number.isFinite(value) && (scale === 'linear' || value > 0);
}

function makeAxis(values: readonly number[], scale: AxisScale): Axis {
  const lo = values.length === 0 ? (scale === 'log' ? 1 : 0) : Math.min(...values);
  const hi = values.length === 0 ? (scale === 'log' ? 10 : 1) : Math.max(...values);
  return scale === 'log' ? logAxis(lo, hi) : linearAxis(lo, hi);
}

/** Decades around the data: [1.3, 250] → 1, 10, 100, 1000; adds 2× and 5× ticks within two decades. */
function logAxis(lo: number, hi: number): Axis {
  const first = Math.floor(Math.log10(lo));
  const last = Math.max(first + 1, Math.ceil(Math.log10(hi)));
  const ticks: number[] = [];
  for (let k = first; k <= last; k++) {
    const decade = 10 ** k;
    ticks.push(decade);
    if (last - first <= 2 && k < last) ticks.push(2 * decade, 5 * decade);
  }
  return { scale: 'log', min: 10 ** first, max: 10 ** last, ticks: ticks.map((t) => Number(t.toPrecision(12))) };
}

/** About five ticks with a step of 1, 2 or 5 × 10^k: [3, 97] → step 20, ticks 0 … 100. */
function linearAxis(lo: number, hi: number): Axis {
  const [low, high] = lo === hi ? [lo - 1, hi + 1] : [lo, hi];
  const rough = (high - low) / 5;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = ([1, 2, 5, 10].find((m) => m * magnitude >= rough) ?? 10) * magnitude;
  const min = Math.floor(low / step) * step;
  const max = Math.ceil(high / step) * step;
  const ticks: number[] = [];
  for (let t = min; t <= max + step / 2; t += step) ticks.push(Number(t.toPrecision(12)));
  return { scale: 'linear', min, max, ticks };
}

/** Where v falls on the axis, 0 … 1. */
function position(axis: Axis, v: number): number {
  if (axis.scale === 'log') return (Math.log10(v) - Math.log10(axis.min)) / (Math.log10(axis.max) - Math.log10(axis.min));
  return (v - axis.min) / (axis.max - axis.min);
}

function tickX(x: number, top: number, bottom: number, label: string): string {
  return `<line x1="${round(x)}" y1="${top}" x2="${round(x)}" y2="${bottom}" stroke="#ddd"/>`
    + `<text x="${round(x)}" y="${bottom + 16}" text-anchor="middle">${label}</text>`;
}

function tickY(y: number, left: number, right: number, label: string): string {
  return `<line x1="${left}" y1="${round(y)}" x2="${right}" y2="${round(y)}" stroke="#ddd"/>`
    + `<text x="${left - 6}" y="${round(y) + 4}" text-anchor="end">${label}</text>`;
}

function formatTick(v: number): string {
  if (v !== 0 && (Math.abs(v) >= 1e6 || Math.abs(v) < 1e-3)) return v.toExponential(0);
  return String(Number(v.toPrecision(6)));
}

function round(v: number): number {
  return Math.round(v * 100) / 100;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
