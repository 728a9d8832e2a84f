import type { Clock, Timer } from '../core/clock.ts';

/** The part of a ChildProcess the supervisor uses. */
export interface SupervisedProcess {
  readonly pid?: number | undefined;
  readonly exitCode: number | null;
  readonly signalCode: NodeJS.Signals | null;
  kill(signal?: NodeJS.Signals): boolean;
  once(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): unknown;
}

export interface RestartPolicy {
  /** Delay before the first restart after a crash. Default 200 ms. */
  readonly initialDelayMs?: number;
  /** The delay doubles with each crash in a row, up to this. Default 10 s. */
  readonly maxDelayMs?: number;
  /** A run at least this long counts as healthy: the next crash restarts after `initialDelayMs` again. Default 30 s. */
  readonly stableAfterMs?: number;
}

/**
 * Exponential back-off for one daemon: 200, 400, 800 … ms (capped), back to the start once a run
 * has lasted `stableAfterMs`. A daemon that crashes at once on every start is retried ever more
 * slowly instead of in a tight loop; one that crashed once after running for hours comes back at once.
 */
export class RestartBackoff {
  readonly #initialMs: number;
  readonly #maxMs: number;
  readonly #stableMs: number;
  #nextMs: number;

  constructor(policy: RestartPolicy = {}) {
    this.#initialMs = policy.initialDelayMs ?? 200;
    this.#maxMs = policy.maxDelayMs ?? 10_000;
    this.#stableMs = policy.stableAfterMs ?? 30_000;
    if (!(this.#initialMs >= 0 && this.#maxMs >= this.#initialMs && this.#stableMs >= 0)) throw new Error('invalid restart policy');
    this.#nextMs = this.#initialMs;
  }

  /** A run that lasted `uptimeMs` ended: the delay before the next start. */
  delayAfter(uptimeMs: number): number {
    if (uptimeMs >= this.#stableMs) this.#nextMs = this.#initialMs;
    const delay = this.#nextMs;
    this.#nextMs = Math.min(this.#maxMs, Math.max(1, this.#nextMs * 2));
    return delay;
  }
}

export interface SupervisorOptions {
  readonly clock: Clock;
  readonly policy?: RestartPolicy;
  /** One line for people: a daemon exited, is restarted, … */
  readonly report: (line: string) => void;
}

interface Entry {
  readonly name: string;
  readonly start: () => SupervisedProcess;
  readonly backoff: RestartBackoff;
  process: SupervisedProcess | undefined;
  startedAt: number;
  restarts: number;
  pending: Timer | undefined;
}

/**
 * Keeps daemons running: each is started by its `start` function; one that exits on its own is
 * started again after its back-off while the others keep running. `stop` ends them all — the
 * last added first, each sent SIGTERM and waited for — and cancels restarts that were due.
 */
export class Supervisor {
  readonly #o: SupervisorOptions;
  readonly #entries: Entry[] = [];
  #isStopping = false;

  constructor(options: SupervisorOptions) {
    this.#o = options;
  }

  /** Starts `start()` now and keeps it running under `name`. */
  add(name: string, start: () => SupervisedProcess): SupervisedProcess {
    const entry: Entry = { name, start, backoff: new RestartBackoff(this.#o.policy), process: undefined, startedAt: 0, restarts: 0, pending: undefined };
    this.#entries.push(entry);
    return this.#launch(entry);
  }

  /** The process running under `name` now (undefined while it waits for its restart). */
  current(name: string): SupervisedProcess | undefined {
    const entry = this.#entries.find((e) => e.name === name);
    return entry?.process !== undefined && isRunning(entry.process) ? entry.process : undefined;
  }

  /** How many times `name` was restarted. */
  restarts(name: string): number {
    return this.#entries.find((e) => e.name === name)?.restarts ?? 0;
  }

  async stop(): Promise<void> {
    this.#isStopping = true;
    for (const entry of [...this.#entries].reverse()) {
      entry.pending?.cancel();
      entry.pending = undefined;
      const child = entry.process;
      if (child === undefined || !isRunning(child)) continue;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      await exited;
    }
  }

  #launch(entry: Entry): SupervisedProcess {
    const child = entry.start();
    entry.process = child;
    entry.startedAt = this.#o.clock.now();
    child.once('exit', (code, signal) => this.#onExit(entry, child, code, signal));
    return child;
  }

  #onExit(entry: Entry, child: SupervisedProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.#isStopping || entry.process !== child) return;
    const uptimeMs = this.#o.clock.now() - entry.startedAt;
    const delayMs = entry.backoff.delayAfter(uptimeMs);
    const how = signal === null ? `with code ${code}` : `on ${signal}`;
    this.#o.report(`${entry.name} (pid ${child.pid}) exited ${how} after ${formatMs(uptimeMs)}; restarting it in ${formatMs(delayMs)}`);
    entry.pending = this.#o.clock.setTimeout(() => {
      entry.pending = undefined;
      if (this.#isStopping) return;
      entry.restarts++;
      let started: SupervisedProcess;
      try {
        started = this.#launch(entry);
      } catch (err) {
        this.#o.report(`${entry.name} could not be started: ${(err as Error).message}`);
        return;
      }
      this.#o.report(`${entry.name} restarted (pid ${started.pid}, restart ${entry.restarts})`);
    }, delayMs);
  }
}

function isRunning(child: SupervisedProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function formatMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}
