import type { SandboxEvent } from '../api/worker.ts';

/** Failures kept per function for describe. */
export const RECENT_FAILURES = 10;

/** One sandbox failure as `GET /v1/functions/{name}` lists it. */
export interface SandboxFailureView {
  readonly sandboxId: string;
  readonly workerId: string;
  /** ISO time the control plane heard of it. */
  readonly at: string;
  /** `exit`, `signal`, `oom`, `start-timeout`, `start-error`, or `unknown` (a worker that does not say). */
  readonly reason: string;
  readonly code?: string;
  readonly message?: string;
  readonly exitCode?: number | null;
  readonly signal?: string | null;
}

/**
 * The last RECENT_FAILURES sandbox failures of one function (a creation that failed, a sandbox
 * that exited on its own), oldest first. Kept in the function's `FunctionSandboxes`, written by
 * the plan executor when it hears of the failure; describe reads it. Nothing is allocated until
 * the first failure.
 */
export class FailureHistory {
  #entries: SandboxFailureView[] | undefined;

  record(workerId: string, event: Extract<SandboxEvent, { type: 'failed' | 'exited' }>, wallMs: number): void {
    const entries = (this.#entries ??= []);
    const base = { sandboxId: event.sandboxId, workerId, at: new Date(wallMs).toISOString(), reason: event.reason ?? 'unknown' };
    entries.push(event.type === 'failed'
      ? { ...base, code: event.code, message: event.message }
      : { ...base, exitCode: event.exitCode, signal: event.signal });
    if (entries.length > RECENT_FAILURES) entries.shift();
  }

  entries(): readonly SandboxFailureView[] {
    return this.#entries ?? [];
  }
}
