import { setMaxListeners } from 'node:events';
import type { DemandAck, DemandReport, RegisterDataplaneRequest } from '../api/dataplane.ts';
import type { Clock, Timer } from '../core/clock.ts';
import { toBatonError } from '../core/errors.ts';
import type { Logger } from '../observability/logger.ts';
import type { CallOptions } from '../transport/json-client.ts';

/** The part of JsonClient the link uses (a fake in tests). */
export interface ControlPlaneClient {
  post<T>(path: string, body: unknown, options?: CallOptions): Promise<T>;
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
  /** Each successful registration (the first, then one per resync), after the state changed. */
  readonly onRegistered?: () => void;
}

/** `registering`: until the control plane accepts us; `registered`: heartbeating. */
export type LinkState = 'idle' | 'registering' | 'registered' | 'closed';

/**
 * The data plane's membership with the control plane: register (retrying with exponential
 * backoff until it succeeds), then heartbeat every `heartbeatIntervalMs`. A heartbeat answered
 * ERR_DATAPLANE_NOT_FOUND (the control plane forgot us) or that cannot reach the control plane
 * sends the link back to registering; each successful registration makes the control plane push
 * a fresh routing snapshot, so a restarted control plane and this data plane resync.
 */
export class ControlPlaneLink {
  readonly #options: ControlPlaneLinkOptions;
  readonly #log: Logger;
  readonly #abort = new AbortController();
  #state: LinkState = 'idle';
  #timer: Timer | undefined;
  #retryMs: number;
  #registrations = 0;

  constructor(options: ControlPlaneLinkOptions) {
    this.#options = options;
    this.#log = options.logger;
    this.#retryMs = options.initialRetryMs ?? 100;
    // Every call to the control plane listens on this one signal, and under load many demand pokes
    // are in flight at once: past Node's default of 10 listeners it would warn of a leak there is not.
    setMaxListeners(0, this.#abort.signal);
  }

  get state(): LinkState {
    return this.#state;
  }

  /** How many registrations succeeded (the first, then one per resync). */
  get registrations(): number {
    return this.#registrations;
  }

  start(): void {
    if (this.#state === 'idle') this.#register();
  }

  /** Posts a demand report; a control plane that forgot us triggers a new registration. */
  sendDemand(report: DemandReport): Promise<DemandAck | undefined> {
    // Not an async function: its frame would keep `report` until the answer (see JsonClient.call).
    return this.#options.client.post<DemandAck | undefined>('/internal/v1/demand', report, { signal: this.#abort.signal, timeoutMs: 5_000 }).catch((err: unknown) => {
      if (toBatonError(err).code === 'ERR_DATAPLANE_NOT_FOUND' && this.#state === 'registered') this.#reregister();
      throw err;
    });
  }

  close(): void {
    this.#state = 'closed';
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#abort.abort();
  }

  #register(): void {
    this.#state = 'registering';
    this.#options.client.post('/internal/v1/dataplanes/register', this.#options.registration, { signal: this.#abort.signal, timeoutMs: 5_000 }).then(
      () => {
        if (this.#state !== 'registering') return;
        this.#state = 'registered';
        this.#registrations++;
        this.#retryMs = this.#options.initialRetryMs ?? 100;
        this.#log.info({ dataplaneId: this.#options.registration.dataplaneId, url: this.#options.registration.url }, 'registered with the control plane');
        this.#schedule(this.#heartbeat, this.#options.heartbeatIntervalMs);
        this.#options.onRegistered?.();
      },
      (err: unknown) => {
        if (this.#state !== 'registering') return;
        this.#log.debug({ err: toBatonError(err).message, retryMs: this.#retryMs }, 'registration failed');
        this.#schedule(() => this.#register(), this.#retryMs);
        this.#retryMs = Math.min(this.#retryMs * 2, this.#options.maxRetryMs ?? 250);
      },
    );
  }

  readonly #heartbeat = (): void => {
    if (this.#state !== 'registered') return;
    const body = { dataplaneId: this.#options.registration.dataplaneId };
    const timeoutMs = Math.max(1_000, this.#options.heartbeatIntervalMs);
    this.#options.client.post('/internal/v1/dataplanes/heartbeat', body, { signal: this.#abort.signal, timeoutMs }).then(
      () => {
        if (this.#state === 'registered') this.#schedule(this.#heartbeat, this.#options.heartbeatIntervalMs);
      },
      (err: unknown) => {
        if (this.#state !== 'registered') return;
        const error = toBatonError(err);
        switch (error.code) {
          case 'ERR_DATAPLANE_NOT_FOUND':
          case 'ERR_UNAVAILABLE':
          case 'ERR_TIMEOUT':
            this.#log.warn({ code: error.code }, 'lost the control plane; registering again');
            this.#reregister();
            return;
          default:
            this.#log.warn({ err: error }, 'heartbeat failed');
            this.#schedule(this.#heartbeat, this.#options.heartbeatIntervalMs);
        }
      },
    );
  };

  #reregister(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#register();
  }

  #schedule(fn: () => void, ms: number): void {
    this.#timer?.cancel();
    this.#timer = this.#options.clock.setTimeout(fn, ms);
  }
}
