import type { AsyncEvent } from './async-event.ts';

/** What `load` found that could not be used (a torn or corrupt tail, cut off). */
export interface LoadReport {
  readonly events: AsyncEvent[];
  readonly corrupt: readonly { readonly where: string; readonly bytes: number; readonly reason: string }[];
}

/**
 * Where asynchronous invocations are kept: the embedded segment log (default) or Redis. The
 * owner (`AsyncInvocations`) keeps the working set in memory and writes every state change here;
 * after a restart it `load`s them back.
 */
export interface AsyncStore {
  /** Every kept event in its latest saved state. Called once, before any save. */
  load(): Promise<LoadReport>;
  /**
   * Saves the event's whole state; with `withRequest`, its request too (on acceptance, redrive and
   * dead-lettering). Resolves once durable.
   */
  save(event: AsyncEvent, withRequest: boolean): Promise<void>;
  /** The event is past its retention: nothing of it needs to be kept. */
  forget(id: string): void;
  close(): Promise<void>;
}
