import type { Clock } from '../core/clock.ts';
import { BatonError } from '../core/errors.ts';
import { sendJson } from '../transport/json-router.ts';
import type { RpcReply } from '../transport/rpc-server.ts';
import { dataplaneToControlPlane } from '../api/contracts.ts';
import type { WorkerMembership } from './worker-membership.ts';
import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * After a restart the control plane knows its workers only from the store, as `unregistered`;
 * what runs on them it learns as each registers again. Until then a data plane's demand would be
 * decided against an empty cluster: a cold start queued during the outage would be scaled onto no
 * worker and refused with ERR_NO_CAPACITY. So data-plane registrations — and with them demand
 * reports, which need a registered data plane — wait (ERR_UNAVAILABLE, retried by the data plane,
 * whose routing view and queues are untouched) until every worker loaded from the store has
 * registered again or the failure-detection time has passed since the start (a worker silent that
 * long is failed anyway). On a first start, with no workers in the store, it is open at once.
 */
export class RecoveryGate {
  readonly #workers: Pick<WorkerMembership, 'get' | 'values'>;
  readonly #clock: Clock;
  readonly #closesAtMs: number;
  readonly #expected: readonly string[];
  #isOpen: boolean;

  constructor(options: { workers: Pick<WorkerMembership, 'get' | 'values'>; clock: Clock; maxWaitMs: number }) {
    this.#workers = options.workers;
    this.#clock = options.clock;
    this.#closesAtMs = options.clock.now() + options.maxWaitMs;
    this.#expected = [...options.workers.values()].filter((w) => w.state === 'unregistered').map((w) => w.id);
    this.#isOpen = this.#expected.length === 0;
  }

  get isOpen(): boolean {
    if (this.#isOpen) return true;
    const isEveryWorkerBack = this.#expected.every((id) => {
      const worker = this.#workers.get(id);
      return worker === undefined || worker.state !== 'unregistered';
    });
    this.#isOpen = isEveryWorkerBack || this.#clock.now() >= this.#closesAtMs;
    return this.#isOpen;
  }

  /** @throws BatonError ERR_UNAVAILABLE while closed */
  check(): void {
    if (this.isOpen) return;
    const waiting = this.#expected.filter((id) => this.#workers.get(id)?.state === 'unregistered').length;
    throw new BatonError('ERR_UNAVAILABLE', `the control plane is recovering: ${waiting} of ${this.#expected.length} workers have not registered again yet`, {
      details: { waitingWorkers: waiting },
    });
  }
}

const GATED = dataplaneToControlPlane.registerDataplane;

/** The control plane's HTTP handler and RPC dispatch. */
export type Routes = { handle(req: IncomingMessage, res: ServerResponse): void; dispatch(method: string, path: string, body: unknown): Promise<RpcReply> };

/**
 * The control plane's HTTP handler and RPC dispatch with two guards in front: while closing,
 * every call but `/healthz` (which says `closing`) is refused with 503 ERR_SHUTTING_DOWN — a call
 * that came on a connection kept alive from before the close is not run against state being torn
 * down —, and data-plane registrations wait for `recovery`.
 */
export function guardRoutes(router: Routes, guards: { recovery: RecoveryGate; isClosing: () => boolean }): Routes {
  const refusal = (method: string | undefined, path: string | undefined): BatonError | undefined => {
    if (guards.isClosing() && path !== '/healthz') return new BatonError('ERR_SHUTTING_DOWN', 'the control plane is shutting down');
    if (method !== GATED.method || path !== GATED.path || guards.recovery.isOpen) return undefined;
    try {
      guards.recovery.check();
      return undefined;
    } catch (err) {
      return err as BatonError;
    }
  };
  return {
    handle(req, res) {
      const err = refusal(req.method, req.url);
      if (err === undefined) {
        router.handle(req, res);
        return;
      }
      req.resume();
      res.shouldKeepAlive = false;
      sendJson(res, err.status, err.toBody());
    },
    dispatch(method, path, body) {
      const err = refusal(method, path);
      return err === undefined ? router.dispatch(method, path, body) : Promise.resolve({ status: err.status, body: err.toBody() });
    },
  };
}
