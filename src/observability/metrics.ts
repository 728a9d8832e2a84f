import { nextTurn } from '../core/clock.ts';
import { Registry, collectDefaultMetrics } from 'prom-client';

/** Exposition text, whole or in slices (a scrape yields the event loop between slices). */
export type Exposition = () => string | Iterable<string>;

/**
 * A prom-client registry that also serves text rendered by Baton itself (`addExposition`): for
 * counter families with one series per function, which prom-client formats at ~4 µs a series — a
 * scrape of 12,500 functions held the event loop for ~50 ms per family — and Baton in well under 1.
 * A family rendered in slices lets the daemon's other work run between them: one slice of 1,000
 * series is ~60 KB of text, where a whole family at 12,500 functions is ~0.8 MB, which held the
 * control plane for up to ~25 ms when its code was cold or the machine busy.
 */
export class MetricsRegistry extends Registry {
  readonly #expositions: Exposition[] = [];

  addExposition(render: Exposition): void {
    this.#expositions.push(render);
  }

  override async metrics(): Promise<string> {
    const text = await super.metrics();
    if (this.#expositions.length === 0) return text;
    let out = text.endsWith('\n') || text.length === 0 ? text : `${text}\n`;
    for (const render of this.#expositions) {
      const rendered = render();
      if (typeof rendered === 'string') {
        out += rendered;
        continue;
      }
      for (const slice of rendered) {
        out += slice;
        await nextTurn();
      }
    }
    return out;
  }
}

/** Series per slice of a counter family's exposition text. */
export const SERIES_PER_SLICE = 1_000;

/** One registry per process, with Node's default process metrics prefixed by the plane. */
export function createRegistry(plane: string, options: { withDefaults?: boolean } = {}): MetricsRegistry {
  const registry = new MetricsRegistry();
  if (options.withDefaults ?? true) collectDefaultMetrics({ register: registry, prefix: `baton_${plane}_` });
  return registry;
}

/**
 * A Prometheus counter family kept as plain numbers and rendered as exposition text at scrape time:
 * `add` costs a map update, not a label-set hash and validation. Label values are escaped when
 * rendered (backslash, double quote, newline).
 */
export class CounterFamily {
  readonly #name: string;
  readonly #help: string;
  readonly #labelNames: readonly string[];
  /** Label values joined by NUL (a single label: the value itself) → count. */
  readonly #values = new Map<string, number>();

  constructor(name: string, help: string, labelNames: readonly string[]) {
    this.#name = name;
    this.#help = help;
    this.#labelNames = labelNames;
  }

  add(labelValues: readonly string[], n = 1): void {
    const key = this.#key(labelValues);
    this.#values.set(key, (this.#values.get(key) ?? 0) + n);
  }

  /** Drops a series (its subject is gone). */
  remove(labelValues: readonly string[]): void {
    this.#values.delete(this.#key(labelValues));
  }

  /** The series' value, or undefined (tests). */
  get(labelValues: readonly string[]): number | undefined {
    return this.#values.get(this.#key(labelValues));
  }

  render(): string {
    let out = '';
    for (const slice of this.slices(Number.POSITIVE_INFINITY)) out += slice;
    return out;
  }

  /**
   * The exposition text in slices of `seriesPerSlice` series, read as they are produced: a series
   * added or changed between slices shows in a later slice with its value then, one removed is left
   * out if not yet rendered.
   */
  *slices(seriesPerSlice = SERIES_PER_SLICE): Generator<string> {
    let out = `# HELP ${this.#name} ${this.#help}\n# TYPE ${this.#name} counter\n`;
    let inSlice = 0;
    for (const [key, value] of this.#values) {
      const values = this.#labelNames.length === 1 ? [key] : key.split('\u0000');
      let labels = '';
      for (let i = 0; i < this.#labelNames.length; i++) {
        labels += `${i === 0 ? '' : ','}${this.#labelNames[i]}="${escapeLabelValue(values[i] ?? '')}"`;
      }
      out += `${this.#name}{${labels}} ${value}\n`;
      if (++inSlice >= seriesPerSlice) {
        yield out;
        out = '';
        inSlice = 0;
      }
    }
    if (out !== '') yield out;
  }

  #key(labelValues: readonly string[]): string {
    return labelValues.length === 1 ? (labelValues[0] as string) : labelValues.join('\u0000');
  }
}

/** A Prometheus label value, escaped for the exposition format. */
export function escapeLabelValue(value: string): string {
  return /[\\"\n]/.test(value) ? value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : value;
}

/** Cold-start phases shared by the worker and control-plane histograms. */
export const COLD_START_BUCKETS_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
