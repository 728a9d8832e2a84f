import type { SandboxFunction, SandboxLogsResponse } from '../../api/worker.ts';
import type { CancelSignal } from '../../core/cancellation.ts';
import type { Clock, Timer } from '../../core/clock.ts';
import { BatonError } from '../../core/errors.ts';
import type { Random } from '../../core/random.ts';
import type { SandboxExit, SandboxRuntime, StartedSandbox } from '../runtime.ts';
import { sampleLatencyMs, type LatencySpec } from './latency-spec.ts';

export interface EmulatedRuntimeOptions {
  /** `host:port` of this worker's invocation listener: the address of every sandbox it creates. */
  readonly address: string;
  /** Creation latency, sampled per sandbox. */
  readonly latency: LatencySpec;
  readonly random: Random;
  readonly clock: Clock;
}

/**
 * A runtime without sandboxes: `create` waits a sampled latency and reports the worker's shared
 * invocation listener as the address; the listener (invocation-handler.ts) answers every request
 * itself. Nothing runs, so nothing exits on its own (no `exited` events), there are no logs and
 * nothing is left behind by a crash.
 */
export class EmulatedRuntime implements SandboxRuntime {
  readonly name = 'emulated' as const;
  readonly needsArtifact = false;
  readonly #options: EmulatedRuntimeOptions;
  /** Ready sandboxes: id → function name. */
  readonly #sandboxes = new Map<string, string>();
  /** Ready sandboxes per function name. */
  readonly #perFunction = new Map<string, number>();
  readonly #starting = new Map<string, { timer: Timer; reject: (err: unknown) => void }>();

  constructor(options: EmulatedRuntimeOptions) {
    this.#options = options;
  }

  get address(): string {
    return this.#options.address;
  }

  create(sandboxId: string, fn: SandboxFunction, _artifactDir: string, signal: CancelSignal): Promise<StartedSandbox> {
    const { clock, latency, random, address } = this.#options;
    const startedAt = clock.now();
    const delayMs = sampleLatencyMs(latency, random);
    return new Promise<StartedSandbox>((resolve, reject) => {
      if (signal.aborted) {
        reject(startFailed(sandboxId, signal.reason));
        return;
      }
      if (delayMs <= 0) {
        // No creation latency: ready now, not at the next timer turn.
        this.#add(sandboxId, fn.name);
        resolve({ address, startMs: clock.now() - startedAt, readyMs: 0 });
        return;
      }
      const onAbort = (): void => {
        this.#starting.get(sandboxId)?.timer.cancel();
        this.#starting.delete(sandboxId);
        reject(startFailed(sandboxId, signal.reason));
      };
      const timer = clock.setTimeout(() => {
        this.#starting.delete(sandboxId);
        signal.removeEventListener('abort', onAbort);
        this.#add(sandboxId, fn.name);
        resolve({ address, startMs: clock.now() - startedAt, readyMs: 0 });
      }, delayMs);
      this.#starting.set(sandboxId, { timer, reject });
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  async delete(sandboxId: string): Promise<void> {
    const fn = this.#sandboxes.get(sandboxId);
    if (fn === undefined) return;
    this.#sandboxes.delete(sandboxId);
    const left = (this.#perFunction.get(fn) ?? 1) - 1;
    if (left === 0) this.#perFunction.delete(fn);
    else this.#perFunction.set(fn, left);
  }

  onExit(_listener: (exit: SandboxExit) => void): void {
    // Emulated sandboxes never exit on their own.
  }

  logs(sandboxId: string): SandboxLogsResponse | undefined {
    return this.#sandboxes.has(sandboxId) ? { sandboxId, lines: [], dropped: 0 } : undefined;
  }

  async cleanupLeftovers(): Promise<number> {
    return 0;
  }

  async close(): Promise<void> {
    for (const [sandboxId, { timer, reject }] of this.#starting) {
      timer.cancel();
      reject(new BatonError('ERR_SHUTTING_DOWN', `sandbox ${sandboxId}: the worker is closing`));
    }
    this.#starting.clear();
    this.#sandboxes.clear();
    this.#perFunction.clear();
  }

  /** Whether a ready sandbox of `fn` is here. */
  hasFunction(fn: string): boolean {
    return this.#perFunction.has(fn);
  }

  /** The function of every ready sandbox here when they all share one, else undefined. */
  soleFunction(): string | undefined {
    if (this.#perFunction.size !== 1) return undefined;
    return this.#perFunction.keys().next().value;
  }

  get readyCount(): number {
    return this.#sandboxes.size;
  }

  #add(sandboxId: string, fn: string): void {
    this.#sandboxes.set(sandboxId, fn);
    this.#perFunction.set(fn, (this.#perFunction.get(fn) ?? 0) + 1);
  }
}

function startFailed(sandboxId: string, reason: unknown): BatonError {
  if (reason instanceof BatonError) return reason;
  return new BatonError('ERR_SANDBOX_START_FAILED', `sandbox ${sandboxId} was cancelled while starting`, { cause: reason });
}
