/**
 * Batches drain waits per data plane: every sandbox drained in one event-loop turn travels in one
 * `POST /internal/v1/drain/wait`, so a burst of scale-downs costs one request per data plane, not
 * one per sandbox.
 */
export class DrainBatcher {
  readonly #send: (sandboxIds: readonly string[], timeoutMs: number) => Promise<unknown>;
  readonly #timeoutMs: number;
  #pending: { ids: string[]; resolve: () => void }[] = [];
  #isScheduled = false;

  constructor(send: (sandboxIds: readonly string[], timeoutMs: number) => Promise<unknown>, timeoutMs: number) {
    this.#send = send;
    this.#timeoutMs = timeoutMs;
  }

  /** Resolves when the data plane reports these sandboxes idle, the timeout passed, or the call failed. */
  wait(sandboxIds: readonly string[]): Promise<void> {
    return new Promise((resolve) => {
      this.#pending.push({ ids: [...sandboxIds], resolve });
      if (this.#isScheduled) return;
      this.#isScheduled = true;
      setImmediate(() => this.#flush());
    });
  }

  #flush(): void {
    this.#isScheduled = false;
    const batch = this.#pending;
    this.#pending = [];
    const ids = batch.flatMap((b) => b.ids);
    const done = (): void => {
      for (const item of batch) item.resolve();
    };
    this.#send(ids, this.#timeoutMs).then(done, done);
  }
}
