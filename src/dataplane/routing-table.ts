import type { RoutingEndpoint, RoutingFunction, RoutingUpdate, RoutingAck, RoutingChange } from '../api/dataplane.ts';
import { BatonError } from '../core/errors.ts';
import { SlotSet } from '../core/slot-set.ts';
import type { EndpointView } from '../policy/load-balancing/types.ts';
import { InvocationTokens } from './invocation-tokens.ts';

/** One endpoint as the data plane tracks it; the load balancer sees it as an EndpointView. */
export class EndpointEntry implements EndpointView {
  readonly sandboxId: string;
  readonly function: string;
  readonly address: string;
  isDraining: boolean;
  /** The function's concurrency (max in flight at this endpoint from this data plane). */
  capacity: number;
  /** Invocations from this data plane at this endpoint right now. */
  inflight = 0;
  /** A connection to it was refused (see EndpointView): picked no more until the control plane withdraws it. */
  isRefused = false;
  /** True once the endpoint left the routing table; it lingers while `inflight > 0`. */
  isRetired = false;
  /** Per-endpoint slot for the proxy (its upstream pool), set by `onEndpointAdded`. */
  upstream: unknown;
  /** Its place in its function's `endpoints` (-1 once retired). */
  index = -1;

  constructor(endpoint: RoutingEndpoint, capacity: number) {
    this.sandboxId = endpoint.sandboxId;
    this.function = endpoint.function;
    this.address = endpoint.address;
    this.isDraining = endpoint.isDraining;
    this.capacity = capacity;
  }
}

/** One function: its spec, its endpoints, and the proxy's per-function state `R`. */
export class RoutedFunction<R> {
  readonly name: string;
  spec: RoutingFunction;
  /**
   * Its endpoints, in no particular order; `endpoints.items` is the load balancer's array itself,
   * not rebuilt at every change. Ids are looked up in the table's map.
   */
  readonly endpoints = new SlotSet<EndpointEntry, 'index'>('index');
  /** How many of `endpoints` are not draining (kept by the table). */
  liveEndpoints = 0;
  readonly traffic: R;

  constructor(spec: RoutingFunction, traffic: R) {
    this.name = spec.name;
    this.spec = spec;
    this.traffic = traffic;
  }
}

/** What the owner of the table does when routing changes. Called after the update is applied. */
export interface RoutingHooks<R> {
  createTraffic(spec: RoutingFunction): R;
  /** The function left the table; its queued invocations must fail (ERR_FUNCTION_NOT_FOUND). */
  onFunctionRemoved(fn: RoutedFunction<R>): void;
  onEndpointAdded(endpoint: EndpointEntry): void;
  /** The endpoint left the table; in-flight invocations at it finish normally. */
  onEndpointRetired(endpoint: EndpointEntry): void;
  /** The function may have new free capacity (endpoint added or undrained, concurrency raised). */
  onCapacity(fn: RoutedFunction<R>): void;
}

/**
 * The data plane's routing view: functions by name, endpoints by sandbox id, with the
 * control plane's `epoch` and `version`. A snapshot replaces the view (keeping the state of
 * endpoints that remain, so in-flight counts survive a resync); a delta applies only on top of
 * the exact version it was computed from, otherwise ERR_VERSION_GAP and nothing changes. Every
 * change is keyed, so applying one twice is harmless.
 */
export class RoutingTable<R> {
  readonly #hooks: RoutingHooks<R>;
  readonly #functions = new Map<string, RoutedFunction<R>>();
  readonly #endpoints = new Map<string, EndpointEntry>();
  /** The tokens that may invoke functions with `auth: "token"`. */
  readonly tokens = new InvocationTokens();
  #epoch = '';
  #version = 0;
  /** Functions touched by the update being applied that may have gained capacity. */
  readonly #gained = new Set<RoutedFunction<R>>();

  constructor(hooks: RoutingHooks<R>) {
    this.#hooks = hooks;
  }

  get epoch(): string {
    return this.#epoch;
  }

  get version(): number {
    return this.#version;
  }

  get functionCount(): number {
    return this.#functions.size;
  }

  getFunction(name: string): RoutedFunction<R> | undefined {
    return this.#functions.get(name);
  }

  getEndpoint(sandboxId: string): EndpointEntry | undefined {
    return this.#endpoints.get(sandboxId);
  }

  functions(): IterableIterator<RoutedFunction<R>> {
    return this.#functions.values();
  }

  /** Applies a snapshot or a delta; throws ERR_VERSION_GAP (nothing changed) when a delta does not fit. */
  apply(update: RoutingUpdate): RoutingAck {
    if (update.kind === 'delta') {
      if (update.epoch !== this.#epoch || update.baseVersion !== this.#version) {
        throw new BatonError('ERR_VERSION_GAP', `delta ${update.epoch}/${update.baseVersion}→${update.version} does not start at ${this.#epoch || '(none)'}/${this.#version}`, {
          details: { epoch: this.#epoch, version: this.#version },
        });
      }
      for (const change of update.changes) this.#applyChange(change);
    } else {
      this.#applySnapshot(update.functions, update.endpoints);
      this.tokens.replaceAll(update.tokens ?? []);
    }
    this.#epoch = update.epoch;
    this.#version = update.version;
    this.#flush();
    return { epoch: this.#epoch, version: this.#version };
  }

  #applySnapshot(functions: readonly RoutingFunction[], endpoints: readonly RoutingEndpoint[]): void {
    const wantedFunctions = new Set<string>();
    for (const spec of functions) wantedFunctions.add(spec.name);
    for (const fn of [...this.#functions.values()]) {
      if (!wantedFunctions.has(fn.name)) this.#deleteFunction(fn.name);
    }
    for (const spec of functions) this.#putFunction(spec);
    const wantedEndpoints = new Set<string>();
    for (const endpoint of endpoints) wantedEndpoints.add(endpoint.sandboxId);
    for (const sandboxId of [...this.#endpoints.keys()]) {
      if (!wantedEndpoints.has(sandboxId)) this.#deleteEndpoint(sandboxId);
    }
    for (const endpoint of endpoints) this.#putEndpoint(endpoint);
  }

  #applyChange(change: RoutingChange): void {
    switch (change.type) {
      case 'function.put': return this.#putFunction(change.function);
      case 'function.delete': return this.#deleteFunction(change.name);
      case 'endpoint.put': return this.#putEndpoint(change.endpoint);
      case 'endpoint.delete': return this.#deleteEndpoint(change.sandboxId);
      case 'token.put': return this.tokens.put(change.token);
      case 'token.delete': return this.tokens.delete(change.id);
      default: {
        const never: never = change;
        throw new Error(`unknown routing change ${JSON.stringify(never)}`);
      }
    }
  }

  #putFunction(spec: RoutingFunction): void {
    const fn = this.#functions.get(spec.name);
    if (fn === undefined) {
      this.#functions.set(spec.name, new RoutedFunction(spec, this.#hooks.createTraffic(spec)));
      return;
    }
    const previous = fn.spec;
    fn.spec = spec;
    if (spec.concurrency !== previous.concurrency) {
      for (const endpoint of fn.endpoints) endpoint.capacity = spec.concurrency;
      if (spec.concurrency > previous.concurrency) this.#gained.add(fn);
    }
  }

  #deleteFunction(name: string): void {
    const fn = this.#functions.get(name);
    if (fn === undefined) return;
    for (const endpoint of [...fn.endpoints.items]) this.#deleteEndpoint(endpoint.sandboxId);
    this.#functions.delete(name);
    this.#gained.delete(fn);
    this.#hooks.onFunctionRemoved(fn);
  }

  /**
   * Adds or updates an endpoint. A sandbox id that reappears with another function or address is
   * a new endpoint (the old one is retired); otherwise only `isDraining` can change. An endpoint of
   * a function the table does not know is ignored: the control plane puts functions first.
   */
  #putEndpoint(endpoint: RoutingEndpoint): void {
    const existing = this.#endpoints.get(endpoint.sandboxId);
    if (existing !== undefined) {
      if (existing.function === endpoint.function && existing.address === endpoint.address) {
        const owner = this.#functions.get(existing.function) as RoutedFunction<R>;
        if (existing.isDraining && !endpoint.isDraining) {
          this.#gained.add(owner);
          owner.liveEndpoints++;
        } else if (!existing.isDraining && endpoint.isDraining) owner.liveEndpoints--;
        existing.isDraining = endpoint.isDraining;
        return;
      }
      this.#deleteEndpoint(endpoint.sandboxId);
    }
    const fn = this.#functions.get(endpoint.function);
    if (fn === undefined) return;
    const entry = new EndpointEntry(endpoint, fn.spec.concurrency);
    fn.endpoints.add(entry);
    this.#endpoints.set(entry.sandboxId, entry);
    if (!entry.isDraining) {
      this.#gained.add(fn);
      fn.liveEndpoints++;
    }
    this.#hooks.onEndpointAdded(entry);
  }

  #deleteEndpoint(sandboxId: string): void {
    const entry = this.#endpoints.get(sandboxId);
    if (entry === undefined) return;
    this.#endpoints.delete(sandboxId);
    const fn = this.#functions.get(entry.function);
    if (fn !== undefined) {
      fn.endpoints.delete(entry);
      if (!entry.isDraining) fn.liveEndpoints--;
    }
    entry.isRetired = true;
    this.#hooks.onEndpointRetired(entry);
  }

  /** Lets the owner dispatch the queued work of functions that may have gained capacity. */
  #flush(): void {
    const gained = [...this.#gained];
    this.#gained.clear();
    for (const fn of gained) this.#hooks.onCapacity(fn);
  }
}
