import type { DemandAck, DemandReport } from '../api/dataplane.ts';
import type { Clock } from '../core/clock.ts';
import type { FunctionEntry } from './model.ts';

/** Entries applied per event-loop turn. */
export const DEMAND_CHUNK = 512;

export interface DemandIntakeOptions {
  readonly clock: Clock;
  readonly functions: { get(name: string): FunctionEntry | undefined };
  /** Throws ERR_DATAPLANE_NOT_FOUND for a data plane that must register first. */
  readonly requireDataplane: (dataplaneId: string) => unknown;
  readonly autoscaler: {
    reportDemand(fn: FunctionEntry, dataplaneId: string, concurrency: number): void;
    poke(fn: FunctionEntry, waiting: number): void;
  };
  readonly markUsed: (fn: FunctionEntry, sandboxIds: readonly string[], nowMs: number) => void;
}

/**
 * Takes the data planes' demand reports to the autoscaler: each entry's average concurrency, the
 * pokes (a function at zero with invocations waiting is scaled at once), and which sandboxes were
 * used (for least-recently-used eviction). The answer names the functions with invocations waiting
 * that no worker has room for, so that the data plane refuses them at once instead of at their
 * deadline.
 */
export class DemandIntake {
  readonly #o: DemandIntakeOptions;

  constructor(options: DemandIntakeOptions) {
    this.#o = options;
  }

  report(report: DemandReport): DemandAck {
    this.#o.requireDataplane(report.dataplaneId);
    const { length } = report.entries;
    if (report.isPoke || length <= DEMAND_CHUNK) return { noCapacity: this.#apply(report, 0, length) };
    // A periodic report of thousands of functions is applied in slices, one per event-loop turn,
    // so that it never holds up cold starts; its answer only needs the no-capacity check.
    const noCapacity: string[] = [];
    for (const entry of report.entries) {
      if (entry.queued > 0 && this.#o.functions.get(entry.function)?.sandboxes.hasNoCapacity === true) noCapacity.push(entry.function);
    }
    const slice = (from: number): void => {
      const to = Math.min(length, from + DEMAND_CHUNK);
      this.#apply(report, from, to);
      if (to < length) this.#o.clock.defer(() => slice(to));
    };
    slice(0);
    return { noCapacity };
  }

  /** Feeds entries [from, to) to the autoscaler; returns the functions among them no worker has room for. */
  #apply(report: DemandReport, from: number, to: number): string[] {
    const { functions, autoscaler } = this.#o;
    const noCapacity: string[] = [];
    const now = this.#o.clock.now();
    for (let i = from; i < to; i++) {
      const entry = report.entries[i] as DemandReport['entries'][number];
      const fn = functions.get(entry.function);
      if (fn === undefined || fn.isDeleting) continue;
      autoscaler.reportDemand(fn, report.dataplaneId, entry.concurrency);
      if (report.isPoke) autoscaler.poke(fn, entry.queued);
      if (fn.sandboxes.hasNoCapacity && entry.queued > 0) noCapacity.push(entry.function);
      if (entry.usedSandboxes !== undefined) this.#o.markUsed(fn, entry.usedSandboxes, now);
    }
    return noCapacity;
  }
}
