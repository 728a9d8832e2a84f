import { setMaxListeners } from 'node:events';
import { dataplaneToControlPlane, type Contract, type RequestOf, type ResponseOf } from '../api/contracts.ts';
import type { DemandAck, DemandReport, RegisterDataplaneRequest } from '../api/dataplane.ts';
import type { Clock } from '../core/clock.ts';
import { toBatonError } from '../core/errors.ts';
import type { Logger } from '../observability/logger.ts';
import type { CallOptions } from '../transport/json-client.ts';
import { MembershipLink, type LinkState } from '../transport/membership-link.ts';

export type { LinkState } from '../transport/membership-link.ts';

/** The part of JsonClient the link uses (a fake in tests). */
export interface ControlPlaneClient {
  invoke<C extends Contract>(c: C, request: RequestOf<C>, options?: CallOptions): Promise<ResponseOf<C>>;
}

export interface ControlPlaneLinkOptions {
  readonly client: ControlPlaneClient;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly registration: RegisterDataplaneRequest;
  readonly heartbeatIntervalMs: number;
  /** First retry delay after a failed registration; doubles up to `maxRetryMs`. Default 100. */
  readonly initialRetryMs?: number;
  /**
   * Default 250: a control plane that comes back (or that held registrations while it recovered)
   * is found within a quarter of a second — a registration attempt is one small call.
   */
  readonly maxRetryMs?: number;
  /** Each successful registration (the first, then one per resync). */
  readonly onRegistered?: () => void;
}

/**
 * The data plane's membership with the control plane — the cluster's one membership state machine
 * (src/transport/membership-link.ts) — and its demand reports. Each successful registration makes
 * the control plane push a fresh routing snapshot, so a restarted control plane and this data
 * plane resync. A demand report answered ERR_DATAPLANE_NOT_FOUND sends the link to registering.
 */
export class ControlPlaneLink {
  readonly #client: ControlPlaneClient;
  readonly #link: MembershipLink<unknown>;

  constructor(options: ControlPlaneLinkOptions) {
    const { client, registration } = options;
    this.#client = client;
    const heartbeatTimeoutMs = Math.max(1_000, options.heartbeatIntervalMs);
    this.#link = new MembershipLink<unknown>({
      clock: options.clock, logger: options.logger, heartbeatIntervalMs: options.heartbeatIntervalMs,
      notFoundCode: 'ERR_DATAPLANE_NOT_FOUND',
      fields: { dataplaneId: registration.dataplaneId, url: registration.url },
      ...(options.initialRetryMs === undefined ? {} : { firstRetryMs: options.initialRetryMs }),
      maxRetryMs: options.maxRetryMs ?? 250,
      ...(options.onRegistered === undefined ? {} : { onRegistered: options.onRegistered }),
      calls: {
        register: (signal) => client.invoke(dataplaneToControlPlane.registerDataplane, registration, { signal, timeoutMs: 5_000 }),
        heartbeat: (signal) => client.invoke(dataplaneToControlPlane.dataplaneHeartbeat, { dataplaneId: registration.dataplaneId }, { signal, timeoutMs: heartbeatTimeoutMs }).then(() => undefined),
      },
    });
    // Every call to the control plane listens on this one signal, and under load many demand pokes
    // are in flight at once: past Node's default of 10 listeners it would warn of a leak there is not.
    setMaxListeners(0, this.#link.signal);
  }

  get state(): LinkState {
    return this.#link.state;
  }

  /** How many registrations succeeded (the first, then one per resync). */
  get registrations(): number {
    return this.#link.registrations;
  }

  start(): void {
    this.#link.start();
  }

  /** Posts a demand report; a control plane that forgot us triggers a new registration. */
  sendDemand(report: DemandReport): Promise<DemandAck> {
    // Not an async function: its frame would keep `report` until the answer (see JsonClient.call).
    return this.#client.invoke(dataplaneToControlPlane.reportDemand, report, { signal: this.#link.signal, timeoutMs: 5_000 }).catch((err: unknown) => {
      if (toBatonError(err).code === 'ERR_DATAPLANE_NOT_FOUND') this.#link.requestRegistration();
      throw err;
    });
  }

  close(): void {
    void this.#link.close();
  }
}
