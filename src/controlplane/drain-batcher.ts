import type { Clock } from '../core/clock.ts';
import { TurnBatcher } from '../core/turn-batcher.ts';

interface DrainWait {
  readonly ids: readonly string[];
  readonly resolve: () => void;
}

/**
 * Batches drain waits per data plane: every sandbox drained in one event-loop turn travels in one
 * `POST /internal/v1/drain/wait`, so a burst of scale-downs costs one request per data plane, not
 * one per sandbox.
 */
export class DrainBatcher {
  readonly #send: (sandboxIds: readonly string[], timeoutMs: number) => Promise<unknown>;
  readonly #timeoutMs: number;
  readonly #waits: TurnBatcher<DrainWait>;

  constructor(send: (sandboxIds: readonly string[], timeoutMs: number) => Promise<unknown>, timeoutMs: number, clock: Clock) {
    this.#send = send;
    this.#timeoutMs = timeoutMs;
    this.#waits = new TurnBatcher(clock, (waits) => this.#flush(waits));
  }

  /** Resolves when the data plane reports these sandboxes idle, the timeout passed, or the call failed. */
  wait(sandboxIds: readonly string[]): Promise<void> {
    return new Promise((resolve) => this.#waits.add({ ids: sandboxIds, resolve }));
  }

  #flush(waits: DrainWait[]): void {
    const ids = waits.flatMap((w) => w.ids);
    const done = (): void => {
      for (const wait of waits) wait.resolve();
    };
    this.#send(ids, this.#timeoutMs).then(done, done);
  }
}
