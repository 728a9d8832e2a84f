import type { DrainWaitResponse } from '../api/dataplane.ts';
import type { Clock, Timer } from '../core/clock.ts';
import { createDeferred, type Deferred } from '../core/deferred.ts';
import type { EndpointEntry } from './routing-table.ts';

interface Waiter {
  readonly ids: readonly string[];
  readonly pending: Set<EndpointEntry>;
  readonly done: Deferred<DrainWaitResponse>;
  timer: Timer | undefined;
}

/**
 * Answers "wait until these sandboxes have no invocation in flight" for the control plane's
 * scale-down: resolves when every named endpoint is idle, or at the timeout with the busy ones
 * listed as `pending`. Ids the data plane does not know count as drained.
 */
export class DrainWaiter {
  readonly #clock: Clock;
  readonly #waiters = new Map<EndpointEntry, Set<Waiter>>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  wait(ids: readonly string[], endpoints: readonly (EndpointEntry | undefined)[], timeoutMs: number): Promise<DrainWaitResponse> {
    const pending = new Set<EndpointEntry>();
    for (const endpoint of endpoints) if (endpoint !== undefined && endpoint.inflight > 0) pending.add(endpoint);
    const waiter: Waiter = { ids, pending, done: createDeferred(), timer: undefined };
    if (pending.size === 0) return Promise.resolve(answer(waiter));
    for (const endpoint of pending) {
      let set = this.#waiters.get(endpoint);
      if (set === undefined) this.#waiters.set(endpoint, (set = new Set()));
      set.add(waiter);
    }
    waiter.timer = this.#clock.setTimeout(() => this.#settle(waiter), timeoutMs);
    return waiter.done.promise;
  }

  /** Called by the proxy whenever an endpoint's in-flight count reaches 0. */
  onIdle(endpoint: EndpointEntry): void {
    const set = this.#waiters.get(endpoint);
    if (set === undefined) return;
    this.#waiters.delete(endpoint);
    for (const waiter of set) {
      waiter.pending.delete(endpoint);
      if (waiter.pending.size === 0) this.#settle(waiter);
    }
  }

  /** Resolves every waiter now with what is still busy (shutdown). */
  settleAll(): void {
    const all = new Set<Waiter>();
    for (const set of this.#waiters.values()) for (const waiter of set) all.add(waiter);
    for (const waiter of all) this.#settle(waiter);
  }

  #settle(waiter: Waiter): void {
    waiter.timer?.cancel();
    for (const endpoint of waiter.pending) {
      const set = this.#waiters.get(endpoint);
      set?.delete(waiter);
      if (set?.size === 0) this.#waiters.delete(endpoint);
    }
    waiter.done.resolve(answer(waiter));
  }
}

function answer(waiter: Waiter): DrainWaitResponse {
  const busy = new Set<string>();
  for (const endpoint of waiter.pending) if (endpoint.inflight > 0) busy.add(endpoint.sandboxId);
  const drained: string[] = [];
  const pending: string[] = [];
  for (const id of waiter.ids) (busy.has(id) ? pending : drained).push(id);
  return { drained, pending };
}
