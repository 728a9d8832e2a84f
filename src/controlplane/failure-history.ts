import type { SandboxEvent } from '../api/worker.ts';
import type { FunctionEntry } from './model.ts';

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
 * The last RECENT_FAILURES sandbox failures of each function (a creation that failed, a sandbox
 * that exited on its own), newest last. Kept beside the function's entry, not in it, and dropped
 * with it (a WeakMap): describe reads it, nothing else does.
 */
const histories = new WeakMap<FunctionEntry, SandboxFailureView[]>();

export function recordSandboxFailure(fn: FunctionEntry, workerId: string, event: Extract<SandboxEvent, { type: 'failed' | 'exited' }>, wallMs: number): void {
  let history = histories.get(fn);
  if (history === undefined) histories.set(fn, history = []);
  const base = { sandboxId: event.sandboxId, workerId, at: new Date(wallMs).toISOString(), reason: event.reason ?? 'unknown' };
  history.push(event.type === 'failed'
    ? { ...base, code: event.code, message: event.message }
    : { ...base, exitCode: event.exitCode, signal: event.signal });
  if (history.length > RECENT_FAILURES) history.shift();
}

export function recentFailuresOf(fn: FunctionEntry): readonly SandboxFailureView[] {
  return histories.get(fn) ?? [];
}
