import type { SandboxFunction, SandboxLogsResponse } from '../../src/api/worker.ts';
import { createDeferred, type Deferred } from '../../src/core/deferred.ts';
import type { SandboxExit, SandboxRuntime, StartedSandbox } from '../../src/worker/runtime.ts';

/** A SandboxRuntime whose creations the test completes by hand (`finish`/`fail`) or kills (`exit`). */
export class FakeRuntime implements SandboxRuntime {
  readonly name = 'process' as const;
  readonly needsArtifact = true;
  readonly pending = new Map<string, { fn: SandboxFunction; signal: AbortSignal; done: Deferred<StartedSandbox> }>();
  readonly running = new Set<string>();
  readonly deleted: string[] = [];
  #listeners: ((exit: SandboxExit) => void)[] = [];

  create(sandboxId: string, fn: SandboxFunction, _artifactDir: string, signal: AbortSignal): Promise<StartedSandbox> {
    const done = createDeferred<StartedSandbox>();
    this.pending.set(sandboxId, { fn, signal, done });
    signal.addEventListener('abort', () => {
      this.pending.delete(sandboxId);
      done.reject(signal.reason);
    }, { once: true });
    return done.promise;
  }

  finish(sandboxId: string, port = 1000): void {
    const p = this.pending.get(sandboxId);
    if (p === undefined) throw new Error(`no pending creation ${sandboxId}`);
    this.pending.delete(sandboxId);
    this.running.add(sandboxId);
    p.done.resolve({ address: `127.0.0.1:${port}`, pid: 4242, startMs: 1, readyMs: 2 });
  }

  fail(sandboxId: string, err: Error): void {
    const p = this.pending.get(sandboxId);
    this.pending.delete(sandboxId);
    p?.done.reject(err);
  }

  exit(sandboxId: string): void {
    this.running.delete(sandboxId);
    for (const listener of this.#listeners) listener({ sandboxId, exitCode: 1, signal: null });
  }

  async delete(sandboxId: string): Promise<void> {
    this.deleted.push(sandboxId);
    this.running.delete(sandboxId);
  }

  onExit(listener: (exit: SandboxExit) => void): void {
    this.#listeners.push(listener);
  }

  logs(sandboxId: string): SandboxLogsResponse | undefined {
    return this.running.has(sandboxId) ? { sandboxId, lines: [], dropped: 0 } : undefined;
  }

  async cleanupLeftovers(): Promise<number> {
    return 0;
  }

  async close(): Promise<void> {
    this.running.clear();
  }
}
