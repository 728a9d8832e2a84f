import type { CreateSandboxesResponse, DeleteSandboxesResponse, SandboxFunction, SandboxLogsResponse } from '../api/worker.ts';
import type { Dispatcher } from 'undici';
import { JsonClient } from '../transport/json-client.ts';

/** What the control plane needs from a worker. The HTTP adapter below is the real one. */
export interface WorkerClient {
  createSandboxes(items: readonly { sandboxId: string; function: SandboxFunction }[]): Promise<CreateSandboxesResponse>;
  deleteSandboxes(sandboxIds: readonly string[]): Promise<DeleteSandboxesResponse>;
  logs(sandboxId: string, tail: number): Promise<SandboxLogsResponse>;
  close(): void;
}

/** `dispatcher`: shared connections per origin (several workers emulated by one process share one). */
export function httpWorkerClient(url: string, dispatcher?: Dispatcher): WorkerClient {
  const client = new JsonClient(url, { timeoutMs: 10_000, connections: 4, ...(dispatcher === undefined ? {} : { dispatcher }) });
  return {
    createSandboxes: (items) => client.post('/internal/v1/sandboxes', { sandboxes: items }),
    deleteSandboxes: (sandboxIds) => client.post('/internal/v1/sandboxes/delete', { sandboxIds }),
    logs: (sandboxId, tail) => client.get(`/internal/v1/sandboxes/${encodeURIComponent(sandboxId)}/logs?tail=${tail}`),
    close: () => client.destroy(),
  };
}

/**
 * Batches sandbox creations and deletions per worker: everything asked in one event-loop turn
 * travels in one request. Failures are reported per item through the callbacks.
 */
export class WorkerBatcher {
  readonly #client: WorkerClient;
  readonly #onCreateFailed: (sandboxIds: readonly string[], err: unknown) => void;
  #creates: { sandboxId: string; function: SandboxFunction }[] = [];
  #deletes: string[] = [];
  #isScheduled = false;

  constructor(client: WorkerClient, onCreateFailed: (sandboxIds: readonly string[], err: unknown) => void) {
    this.#client = client;
    this.#onCreateFailed = onCreateFailed;
  }

  get client(): WorkerClient {
    return this.#client;
  }

  create(sandboxId: string, fn: SandboxFunction): void {
    this.#creates.push({ sandboxId, function: fn });
    this.#schedule();
  }

  delete(sandboxId: string): void {
    this.#deletes.push(sandboxId);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#isScheduled) return;
    this.#isScheduled = true;
    setImmediate(() => {
      this.#isScheduled = false;
      this.#flush();
    });
  }

  #flush(): void {
    const creates = this.#creates;
    const deletes = this.#deletes;
    this.#creates = [];
    this.#deletes = [];
    if (creates.length > 0) {
      this.#client.createSandboxes(creates).catch((err: unknown) => this.#onCreateFailed(creates.map((c) => c.sandboxId), err));
    }
    if (deletes.length > 0) {
      // A failed delete is harmless to correctness: a worker that comes back reports what it
      // runs, and the control plane deletes whatever it does not know.
      this.#client.deleteSandboxes(deletes).catch(() => undefined);
    }
  }
}
