import type { DemandEntry, DemandReport } from '../api/dataplane.ts';
import type { Clock, Timer } from '../core/clock.ts';
import type { Logger } from '../observability/logger.ts';
import { FlatRecords } from '../core/flat-records.ts';

/**
 * One function's demand as the data plane sees it: invocations in flight at sandboxes and
 * invocations queued, and the integral of their sum over time since the last report.
 * The proxy owns one per function and calls `change` on every transition (cheap: a few
 * arithmetic operations, no allocation).
 */
export class DemandTracker {
  readonly function: string;
  inflight = 0;
  queued = 0;
  /** ∫ (inflight + queued) dt over the current interval, in invocation·ms. */
  integral = 0;
  lastChangeAt = 0;
  isActive = false;
  isPokePending = false;
  isPokeInFlight = false;
  /** Queue length sent with the last poke: a new poke goes out only if the queue grew. */
  pokedQueued = 0;
  /** Sandboxes that received an invocation in the current interval (for least-recently-used eviction). */
  used: Set<string> | undefined;
  readonly #reporter: DemandReporter;

  constructor(fn: string, reporter: DemandReporter) {
    this.function = fn;
    this.#reporter = reporter;
  }

  get concurrency(): number {
    return this.inflight + this.queued;
  }

  /** Moves the counts by the given deltas (e.g. dequeue to a sandbox is `change(+1, -1)`). */
  change(deltaInflight: number, deltaQueued: number): void {
    const now = this.#reporter.now();
    if (this.isActive) this.integral += this.concurrency * (now - this.lastChangeAt);
    else this.#reporter.activate(this, now);
    this.lastChangeAt = now;
    this.inflight += deltaInflight;
    this.queued += deltaQueued;
  }

  /** An invocation was sent to this sandbox. */
  markUsed(sandboxId: string): void {
    (this.used ??= new Set()).add(sandboxId);
  }

  /** An invocation found no free capacity: tell the control plane at the next turn. */
  poke(): void {
    this.#reporter.poke(this);
  }
}

export interface DemandReporterOptions {
  readonly dataplaneId: string;
  readonly intervalMs: number;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Delivers one report; rejects when the control plane cannot be reached. */
  readonly send: (report: DemandReport) => Promise<void>;
  /** Runs `fn` at the next event-loop turn; the clock's `defer` unless said otherwise. */
  readonly defer?: (fn: () => void) => void;
}

/**
 * Functions per periodic message. A report of thousands of functions leaves as several messages,
 * each sent when the one before has been answered, so that neither end holds its event loop for
 * long on one (its encoding here; parsing, validating and applying it at the control plane). One
 * message of 5,000 functions (491 KiB) took the control plane ~8 ms to parse and validate on an idle
 * machine; a part of 256 takes ~0.3 ms.
 */
export const REPORT_CHUNK = 256;

const REPORT_FIELDS = ['concurrency', 'queued', 'inflight'] as const;

/**
 * Up to REPORT_CHUNK functions of a periodic report, as the numbers taken at the tick: the entries
 * are built when the part is sent. The parts of a report leave one after another, so a part may
 * wait through a scavenge or two, and an object per function kept that long is promoted.
 */
interface ReportPart {
  readonly trackers: DemandTracker[];
  /** Per function, the tick's numbers (core/flat-records.ts: a part may wait through a scavenge or two). */
  readonly numbers: FlatRecords<'concurrency' | 'queued' | 'inflight'>;
  /** Per function: the sandboxes it used in the interval, if any. */
  readonly used: (string[] | undefined)[];
  /** Functions whose closing zero this part carries: reported again if it is not delivered. */
  readonly closing: DemandTracker[];
}

function partEntries(part: ReportPart): DemandEntry[] {
  const { trackers, numbers, used } = part;
  const entries: DemandEntry[] = [];
  for (let i = 0; i < trackers.length; i++) {
    const entry: DemandEntry = { function: (trackers[i] as DemandTracker).function, concurrency: numbers.get(i, 'concurrency'), queued: numbers.get(i, 'queued'), inflight: numbers.get(i, 'inflight') };
    const usedSandboxes = used[i];
    entries.push(usedSandboxes === undefined ? entry : { ...entry, usedSandboxes });
  }
  return entries;
}

/**
 * Sends the control plane what the autoscaler needs, as few messages as possible:
 *
 * - Every `intervalMs`, one batched report (sent in parts of REPORT_CHUNK functions) with, per
 *   function active in the interval, the time-weighted average of (in flight + queued). Worked numbers: interval 1000 ms, 2 invocations
 *   for the first 250 ms, then 0 → integral 2 × 250 = 500 → concurrency 0.5. A function whose
 *   count returned to 0 is reported once more (with 0) in the next interval, then leaves the active
 *   set, so an idle function costs nothing; with no active function the timer stops.
 * - The poke: when an invocation finds no free capacity, its function is sent at the next
 *   event-loop turn in an `isPoke` report (all pokes of that turn batched), with its current
 *   counts. While a poke for a function is in flight it is not poked again unless its queue grew.
 *
 * Failed sends are logged at debug and not retried as such: the next report carries the current
 * state. Nothing accumulates: at most one part of a periodic report in flight, and the parts of the
 * newest report waiting (a new report replaces the unsent parts of the one before); a function's
 * closing zero entry is kept until a report carrying it succeeds.
 */
export class DemandReporter {
  readonly #options: DemandReporterOptions;
  readonly #defer: (fn: () => void) => void;
  readonly #active = new Set<DemandTracker>();
  readonly #pokes = new Set<DemandTracker>();
  #isPokeFlushScheduled = false;
  #timer: Timer | undefined;
  #intervalStartedAt = 0;
  #isSending = false;
  /** Unsent parts of the newest periodic report. */
  #queue: ReportPart[] = [];
  #isClosed = false;

  constructor(options: DemandReporterOptions) {
    this.#options = options;
    this.#defer = options.defer ?? ((fn) => options.clock.defer(fn));
  }

  track(fn: string): DemandTracker {
    return new DemandTracker(fn, this);
  }

  now(): number {
    return this.#options.clock.now();
  }

  /** Called by a tracker on its first change since it left the active set. */
  activate(tracker: DemandTracker, now: number): void {
    tracker.isActive = true;
    tracker.integral = 0;
    this.#active.add(tracker);
    if (this.#timer === undefined && !this.#isClosed) {
      this.#intervalStartedAt = now;
      this.#timer = this.#options.clock.setTimeout(this.#onTick, this.#options.intervalMs);
    }
  }

  poke(tracker: DemandTracker): void {
    if (this.#isClosed || tracker.isPokePending) return;
    if (tracker.isPokeInFlight && tracker.queued <= tracker.pokedQueued) return;
    tracker.isPokePending = true;
    this.#pokes.add(tracker);
    if (!this.#isPokeFlushScheduled) {
      this.#isPokeFlushScheduled = true;
      this.#defer(this.#flushPokes);
    }
  }

  /**
   * Pokes every function with invocations queued, whatever was poked before: after a (re)registration
   * with a control plane that may have restarted, and so never heard the pokes sent while it was
   * away, the queued cold starts are asked for at once instead of at its next autoscaler tick.
   */
  pokeQueued(): void {
    for (const tracker of this.#active) {
      if (tracker.queued === 0) continue;
      tracker.pokedQueued = 0;
      this.poke(tracker);
    }
  }

  /** Builds the periodic report now (exposed for tests; the timer calls it every interval). */
  tick(): void {
    this.#timer = undefined;
    const now = this.now();
    const elapsed = now - this.#intervalStartedAt;
    const parts: ReportPart[] = [];
    let part: ReportPart | undefined;
    for (const tracker of this.#active) {
      tracker.integral += tracker.concurrency * (now - tracker.lastChangeAt);
      tracker.lastChangeAt = now;
      const concurrency = elapsed > 0 ? tracker.integral / elapsed : tracker.concurrency;
      tracker.integral = 0;
      if (part === undefined || part.trackers.length >= REPORT_CHUNK) {
        part = { trackers: [], numbers: new FlatRecords(REPORT_FIELDS), used: [], closing: [] };
        parts.push(part);
      }
      part.trackers.push(tracker);
      const row = part.numbers.append();
      part.numbers.set(row, 'concurrency', concurrency);
      part.numbers.set(row, 'queued', tracker.queued);
      part.numbers.set(row, 'inflight', tracker.inflight);
      if (tracker.used !== undefined && tracker.used.size > 0) {
        part.used.push([...tracker.used]);
        tracker.used.clear();
      } else {
        part.used.push(undefined);
      }
      if (concurrency === 0 && tracker.concurrency === 0) {
        tracker.isActive = false;
        this.#active.delete(tracker);
        part.closing.push(tracker);
      }
    }
    if (this.#active.size > 0 && !this.#isClosed) {
      this.#intervalStartedAt = now;
      this.#timer = this.#options.clock.setTimeout(this.#onTick, this.#options.intervalMs);
    }
    if (parts.length > 0) this.#sendPeriodic(parts);
  }

  /** Stops the timer; pending sends finish on their own. */
  close(): void {
    this.#isClosed = true;
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  readonly #onTick = (): void => this.tick();

  #sendPeriodic(parts: ReportPart[]): void {
    // Unsent parts of an older report are replaced; their closing zeros go into the next report.
    for (const old of this.#queue) this.#reactivate(old.closing);
    this.#queue = parts;
    if (!this.#isSending) this.#sendNextPart();
  }

  #sendNextPart(): void {
    const part = this.#queue.shift();
    if (part === undefined) return;
    this.#isSending = true;
    this.#options.send({ dataplaneId: this.#options.dataplaneId, isPoke: false, entries: partEntries(part) }).then(
      () => undefined,
      (err: unknown) => {
        this.#options.logger.debug({ err }, 'demand report failed');
        this.#reactivate(part.closing);
      },
    ).finally(() => {
      this.#isSending = false;
      this.#sendNextPart();
    });
  }

  /** A closing zero entry was not delivered: report the function again next interval. */
  #reactivate(trackers: readonly DemandTracker[]): void {
    if (this.#isClosed) return;
    const now = this.now();
    for (const tracker of trackers) {
      if (!tracker.isActive) this.activate(tracker, now);
      tracker.lastChangeAt = now;
    }
  }

  readonly #flushPokes = (): void => {
    this.#isPokeFlushScheduled = false;
    if (this.#pokes.size === 0) return;
    const trackers = [...this.#pokes];
    this.#pokes.clear();
    const entries: DemandEntry[] = [];
    for (const tracker of trackers) {
      tracker.isPokePending = false;
      tracker.isPokeInFlight = true;
      tracker.pokedQueued = tracker.queued;
      entries.push({ function: tracker.function, concurrency: tracker.concurrency, queued: tracker.queued, inflight: tracker.inflight });
    }
    this.#options.send({ dataplaneId: this.#options.dataplaneId, isPoke: true, entries }).catch((err: unknown) => {
      this.#options.logger.debug({ err }, 'demand poke failed');
    }).finally(() => {
      for (const tracker of trackers) tracker.isPokeInFlight = false;
    });
  };
}
