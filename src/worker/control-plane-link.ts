import type { RuntimeName } from '../api/function-spec.ts';
import type { Capacity, HeartbeatRequest, RegisterWorkerRequest, RegisterWorkerResponse, SandboxInfo } from '../api/worker.ts';
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../observability/logger.ts';
import { MembershipLink, type HeartbeatTicker, type LinkState } from '../transport/membership-link.ts';

export type { HeartbeatTicker, LinkState } from '../transport/membership-link.ts';

/** The two calls the link makes; implemented over JsonClient in main.ts, faked in tests. */
export interface ControlPlaneCalls {
  register(request: RegisterWorkerRequest, signal: AbortSignal): Promise<RegisterWorkerResponse>;
  heartbeat(request: HeartbeatRequest, signal: AbortSignal): Promise<void>;
}

export interface ControlPlaneLinkOptions {
  readonly calls: ControlPlaneCalls;
  readonly workerId: string;
  readonly url: string;
  /** The process's base URL when several workers share it (see RegisterWorkerRequest.processUrl). */
  readonly processUrl?: string;
  /** The credential the worker accepts commands with (see RegisterWorkerRequest.commandToken). */
  readonly commandToken?: string;
  readonly capacity: Capacity;
  readonly runtimes: readonly RuntimeName[];
  /** What the worker runs right now, sent with every registration for reconciliation. */
  readonly listSandboxes: () => SandboxInfo[];
  readonly heartbeatIntervalMs: number;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Drives heartbeats instead of a timer of the link's own (many logical workers in one process). */
  readonly ticker?: HeartbeatTicker;
}

/**
 * Keeps the worker known to the control plane: the cluster's one membership state machine
 * (src/transport/membership-link.ts), registering with what the worker runs right now so that the
 * control plane reconciles its view (adopts what it lost, deletes what it replaced).
 */
export class ControlPlaneLink {
  readonly #link: MembershipLink<RegisterWorkerResponse>;

  constructor(options: ControlPlaneLinkOptions) {
    const { calls, workerId, url, capacity, runtimes, listSandboxes } = options;
    this.#link = new MembershipLink<RegisterWorkerResponse>({
      clock: options.clock, logger: options.logger, heartbeatIntervalMs: options.heartbeatIntervalMs,
      notFoundCode: 'ERR_WORKER_NOT_FOUND', intervalOf: (response) => response?.heartbeatIntervalMs,
      fields: { workerId },
      // A control plane that comes back is found within a second.
      maxRetryMs: 1_000,
      ...(options.ticker === undefined ? {} : { ticker: options.ticker }),
      calls: {
        register: (signal) => calls.register({
          workerId, url, capacity, runtimes: [...runtimes], sandboxes: listSandboxes(),
          ...(options.processUrl === undefined ? {} : { processUrl: options.processUrl }),
          ...(options.commandToken === undefined ? {} : { commandToken: options.commandToken }),
        }, signal),
        heartbeat: (signal) => calls.heartbeat({ workerId }, signal),
      },
    });
  }

  get state(): LinkState {
    return this.#link.state;
  }

  start(): void {
    this.#link.start();
  }

  /** Registers again at once (e.g. the control plane refused an event batch for an unknown worker). */
  requestRegistration(): void {
    this.#link.requestRegistration();
  }

  close(): Promise<void> {
    return this.#link.close();
  }
}
