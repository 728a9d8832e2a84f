import type { RuntimeName } from '../api/function-spec.ts';
import type { FailureReason, SandboxFunction, SandboxLogsResponse } from '../api/worker.ts';
import type { CancelSignal } from '../core/cancellation.ts';

/**
 * What the worker core needs from a sandbox runtime (process, container and emulated). A runtime starts and stops sandboxes and tells when one dies on its own; the core keeps
 * the table, the events and the metrics.
 */
export interface SandboxRuntime {
  readonly name: RuntimeName;
  /** False when sandboxes run no code (emulated): the worker then fetches no artifact and passes '' as `artifactDir`. */
  readonly needsArtifact: boolean;

  /**
   * Starts a sandbox of `fn` from the unpacked artifact in `artifactDir` and resolves once it is
   * ready to serve. Aborting `signal` (an AbortSignal, or the worker's lighter Cancellation) stops it
   * and rejects.
   * @throws BatonError ERR_SANDBOX_START_FAILED (spawn failed, exited early, not ready in time, aborted)
   */
  create(sandboxId: string, fn: SandboxFunction, artifactDir: string, signal: CancelSignal): Promise<StartedSandbox>;

  /** Stops a sandbox; resolves once it is gone. Unknown ids resolve at once. Never reported via onExit. */
  delete(sandboxId: string): Promise<void>;

  /** Registers the listener told when a ready sandbox exits without being deleted. */
  onExit(listener: (exit: SandboxExit) => void): void;

  /** The last `tail` captured output lines, or undefined for an unknown sandbox. */
  logs(sandboxId: string, tail: number): SandboxLogsResponse | undefined;

  /** Stops whatever a previous run of this worker left running; returns how many were stopped. */
  cleanupLeftovers(): Promise<number>;

  /** Stops every sandbox (or, with `keepSandboxes`, only lets go of them: a test-only crash stand-in). */
  close(options?: { keepSandboxes?: boolean }): Promise<void>;
}

export interface StartedSandbox {
  /** `host:port` the data plane connects to. */
  readonly address: string;
  readonly pid?: number;
  /** Spawn requested → process alive, ms. */
  readonly startMs: number;
  /** Process alive → ready signal (or first accepted connection), ms. */
  readonly readyMs: number;
  /** Container runtime: image unpack, bundle and network phases before the start, ms. */
  readonly unpackMs?: number;
  readonly bundleMs?: number;
  readonly networkMs?: number;
}

export interface SandboxExit {
  readonly sandboxId: string;
  readonly exitCode: number | null;
  readonly signal: string | null;
  /** `exit`, `signal` or `oom` (absent: the runtime cannot tell an OOM kill from a signal). */
  readonly reason?: FailureReason;
}
