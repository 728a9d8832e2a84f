import { controlPlaneToWorker } from '../api/contracts.ts';
import type { CreateSandboxesResponse, DeleteSandboxesResponse, ProcessSandboxesRequest, ProcessSandboxesResponse, SandboxFunction, SandboxLogsResponse } from '../api/worker.ts';
import type { Clock } from '../core/clock.ts';
import { BatonError } from '../core/errors.ts';
import { TurnBatcher } from '../core/turn-batcher.ts';
import type { Dispatcher } from 'undici';
import { JsonClient, type JsonClientOptions } from '../transport/json-client.ts';
import type { RpcConnection } from '../transport/rpc-client.ts';

/** What the control plane needs from a worker. The HTTP adapter below is the real one. */
export interface WorkerClient {
  createSandboxes(items: readonly { sandboxId: string; function: SandboxFunction }[]): Promise<CreateSandboxesResponse>;
  deleteSandboxes(sandboxIds: readonly string[]): Promise<DeleteSandboxesResponse>;
  logs(sandboxId: string, tail: number): Promise<SandboxLogsResponse>;
  close(): void;
}

export interface WorkerClientOptions {
  readonly dispatcher?: Dispatcher | undefined;
  readonly rpc?: RpcConnection | undefined;
  readonly leaderEpoch?: number | undefined;
  /** The worker's command credential (`Bearer <the token it registered with>`), on every HTTP call. */
  readonly authorization?: string | undefined;
}

function clientOptions(o: WorkerClientOptions): JsonClientOptions {
  return {
    timeoutMs: 10_000, connections: 4,
    ...(o.dispatcher === undefined ? {} : { dispatcher: o.dispatcher }), ...(o.rpc === undefined ? {} : { rpc: o.rpc }),
    ...(o.authorization === undefined ? {} : { authorization: o.authorization }),
  };
}

/**
 * `dispatcher`: shared connections per origin (several workers emulated by one process share one);
 * `rpc`: the origin's RPC stream, which then carries the calls. `leaderEpoch` is stamped on every
 * creation and deletion (fencing: a worker refuses those of a deposed leader).
 */
export function httpWorkerClient(url: string, o: WorkerClientOptions = {}): WorkerClient {
  const { leaderEpoch } = o;
  const client = new JsonClient(url, clientOptions(o));
  return {
    createSandboxes: (items) => client.invoke(controlPlaneToWorker.createSandboxes, { sandboxes: items, leaderEpoch }),
    deleteSandboxes: (sandboxIds) => client.invoke(controlPlaneToWorker.deleteSandboxes, { sandboxIds, leaderEpoch }),
    logs: (sandboxId, tail) => client.invoke(controlPlaneToWorker.sandboxLogs, { sandboxId, tail }),
    close: () => client.destroy(),
  };
}

/** Where the plan executor sends one worker's creations and deletions. */
export interface SandboxBatcher {
  readonly client: WorkerClient;
  create(sandboxId: string, fn: SandboxFunction): void;
  delete(sandboxId: string): void;
}

type CreationFailed = (sandboxIds: readonly string[], err: unknown) => void;

/**
 * Batches sandbox creations and deletions per worker: everything asked in one event-loop turn
 * travels in one request. Failures are reported per item through the callbacks.
 */
export class WorkerBatcher implements SandboxBatcher {
  readonly #client: WorkerClient;
  readonly #onCreateFailed: CreationFailed;
  readonly #creates: TurnBatcher<{ sandboxId: string; function: SandboxFunction }>;
  readonly #deletes: TurnBatcher<string>;

  constructor(client: WorkerClient, clock: Clock, onCreateFailed: CreationFailed) {
    this.#client = client;
    this.#onCreateFailed = onCreateFailed;
    this.#creates = new TurnBatcher(clock, (creates) => this.#sendCreates(creates));
    this.#deletes = new TurnBatcher(clock, (deletes) => this.#sendDeletes(deletes));
  }

  get client(): WorkerClient {
    return this.#client;
  }

  create(sandboxId: string, fn: SandboxFunction): void {
    this.#creates.add({ sandboxId, function: fn });
  }

  delete(sandboxId: string): void {
    this.#deletes.add(sandboxId);
  }

  #sendCreates(creates: { sandboxId: string; function: SandboxFunction }[]): void {
    const sandboxIds = creates.map((c) => c.sandboxId);
    this.#client.createSandboxes(creates).catch((err: unknown) => this.#onCreateFailed(sandboxIds, err));
  }

  #sendDeletes(deletes: string[]): void {
    // A failed delete is harmless to correctness: a worker that comes back reports what it runs,
    // and the control plane deletes whatever it does not know.
    this.#client.deleteSandboxes(deletes).catch(() => undefined);
  }
}

/** Sends one process-wide batch (POST {processUrl}/internal/v1/process/sandboxes). */
export type PostProcessSandboxes = (request: ProcessSandboxesRequest) => Promise<ProcessSandboxesResponse>;

export function httpProcessClient(processUrl: string, o: WorkerClientOptions = {}): { post: PostProcessSandboxes; close(): void } {
  const { leaderEpoch } = o;
  const client = new JsonClient(processUrl, clientOptions(o));
  return { post: (request) => client.invoke(controlPlaneToWorker.processSandboxes, { ...request, leaderEpoch }), close: () => client.destroy() };
}

/**
 * Batches the creations and deletions of every worker that shares one process (workers that
 * registered the same `processUrl`): one request per event-loop turn for all of them.
 */
export class ProcessBatcher {
  readonly #post: PostProcessSandboxes;
  readonly #onCreateFailed: CreationFailed;
  readonly #turn: TurnBatcher<never>;
  #request: ProcessSandboxesRequest = { creates: [], deletes: [] };

  constructor(post: PostProcessSandboxes, clock: Clock, onCreateFailed: CreationFailed) {
    this.#post = post;
    this.#onCreateFailed = onCreateFailed;
    this.#turn = new TurnBatcher(clock, () => this.#send());
  }

  /** The batcher of one worker of the process. */
  forWorker(workerId: string, client: WorkerClient): SandboxBatcher {
    return {
      client,
      create: (sandboxId, fn) => {
        this.#request.creates.push({ workerId, sandboxId, function: fn });
        this.#turn.schedule();
      },
      delete: (sandboxId) => {
        this.#request.deletes.push({ workerId, sandboxId });
        this.#turn.schedule();
      },
    };
  }

  #send(): void {
    const request = this.#request;
    this.#request = { creates: [], deletes: [] };
    if (request.creates.length === 0 && request.deletes.length === 0) return;
    // The answer needs only the creations' ids: the request itself (each creation carries its
    // function's spec) is not kept until it comes (see JsonClient.call).
    const sandboxIds = request.creates.map((c) => c.sandboxId);
    const workerIds = request.creates.map((c) => c.workerId);
    this.#post(request).then(
      (response) => {
        if (response.unknownWorkers.length === 0) return;
        const unknown = new Set(response.unknownWorkers);
        const failed = sandboxIds.filter((_, i) => unknown.has(workerIds[i] as string));
        if (failed.length > 0) this.#onCreateFailed(failed, new BatonError('ERR_WORKER_NOT_FOUND', 'the worker process does not run this worker'));
      },
      // Deletions that fail are harmless (see WorkerBatcher); creations are reported failed.
      (err: unknown) => this.#onCreateFailed(sandboxIds, err),
    );
  }
}
