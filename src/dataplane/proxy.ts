import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { RoutingFunction, DrainWaitResponse } from '../api/dataplane.ts';
import type { Clock } from '../core/clock.ts';
import { createDeferred, type Deferred } from '../core/deferred.ts';
import { BatonError, type ErrorCode } from '../core/errors.ts';
import type { Logger } from '../observability/logger.ts';
import type { LoadBalancer } from '../policy/load-balancing/types.ts';
import type { DemandReporter, DemandTracker } from './demand-reporter.ts';
import { DrainWaiter } from './drain-waiter.ts';
import { scanHttp2RequestHeaders, scanRequestHeaders, type ScannedRequest } from './forward-headers.ts';
import { isGrpcContentType, markGrpc, parseGrpcTimeout } from './grpc.ts';
import { Invocation, payloadTooLarge, sendError, type InvocationOwner } from './invocation.ts';
import { InvocationQueue } from './invocation-queue.ts';
import type { DataplaneMetrics, FunctionGaugeRow, FunctionMetrics } from './metrics.ts';
import { resolveRoute, type Route } from './route.ts';
import { RoutingTable, type EndpointEntry, type RoutedFunction } from './routing-table.ts';
import type { Upstream, UpstreamPools } from './upstream-pools.ts';

/** The proxy's state for one function, created when the function enters the routing table. */
export interface FunctionTraffic {
  readonly balancer: LoadBalancer;
  readonly queue: InvocationQueue<Invocation<FunctionTraffic>>;
  readonly demand: DemandTracker;
  readonly metrics: FunctionMetrics;
  /** Re-entrancy guard for `dispatchQueued`. */
  isDispatching: boolean;
}

export type FunctionState = RoutedFunction<FunctionTraffic>;

export interface InvocationProxyOptions {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics: DataplaneMetrics;
  readonly reporter: DemandReporter;
  readonly pools: UpstreamPools;
  readonly queueCapacity: number;
  readonly queueTimeoutMs: number;
  /** Invocations a function at its max scale with every slot busy may keep waiting, per slot. */
  readonly overloadQueuePerSlot: number;
  /** Most invocations admitted at once over all functions (running or waiting); 0: no limit. */
  readonly maxConcurrentInvocations: number;
  /** Largest invocation body of a function without its own `maxBodyBytes`. */
  readonly invocationBodyMaxBytes: number;
  /** One load balancer per function. */
  readonly createLoadBalancer: (fn: string) => LoadBalancer;
  /**
   * Requests other APIs on this port answer (the Lambda Invoke API, asynchronous invocations and
   * their results: `src/dataplane/async/`, `src/dataplane/lambda/`): called after routing, with
   * the function the request names (undefined when none); returns true when it took the request.
   */
  /** A function entered the routing table (the async queue then tries its waiting events at once). */
  readonly onFunctionAdded?: (name: string) => void;
  readonly intercept?: (req: IncomingMessage, res: ServerResponse, route: Route<FunctionState> | undefined, scanned: ScannedRequest) => boolean;
}

export type InvocationProxyState = 'open' | 'closing' | 'closed';

/**
 * The invocation path: route → pick an endpoint with a free slot (or queue and poke) → forward
 * over the endpoint's pooled connections → stream the answer back → release the slot and hand it
 * to the oldest queued invocation. Per request: one header scan, one route lookup, one Invocation
 * object (which is also undici's dispatch handler), no closures.
 */
export class InvocationProxy implements InvocationOwner<FunctionTraffic> {
  readonly table: RoutingTable<FunctionTraffic>;
  readonly #options: InvocationProxyOptions;
  readonly #log: Logger;
  readonly #drains: DrainWaiter;
  /** Endpoints removed from routing that still have invocations in flight. */
  readonly #lingering = new Map<string, EndpointEntry>();
  #state: InvocationProxyState = 'open';
  #inflight = 0;
  /** Invocations waiting in every function's queue. */
  #queued = 0;
  #idle: Deferred<void> | undefined;

  constructor(options: InvocationProxyOptions) {
    this.#options = options;
    this.#log = options.logger;
    this.#drains = new DrainWaiter(options.clock);
    this.table = new RoutingTable<FunctionTraffic>({
      createTraffic: (spec) => this.#createTraffic(spec),
      onFunctionRemoved: (fn) => this.#onFunctionRemoved(fn),
      onEndpointAdded: (endpoint) => {
        endpoint.upstream = options.pools.acquire(endpoint.address, this.table.getFunction(endpoint.function)?.spec.protocol);
      },
      onEndpointRetired: (endpoint) => this.#onEndpointRetired(endpoint),
      onCapacity: (fn) => this.dispatchQueued(fn),
    });
  }

  get state(): InvocationProxyState {
    return this.#state;
  }

  /** Invocations at sandboxes now, over all functions. */
  get inflight(): number {
    return this.#inflight;
  }

  /** Node's `request` listener for the invocation server (HTTP/1.1). */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    const url = req.url ?? '/';
    if (this.#isAnsweredHere(url, res)) return;
    this.#invoke(req, res, url, scanRequestHeaders(req.rawHeaders, req.socket.remoteAddress), undefined);
  };

  /**
   * The `request` listener for HTTP/2 on the invocation port (src/transport/h2c.ts): the same path,
   * with the compatibility API's request and response. A gRPC request gets Baton's errors as gRPC
   * statuses and its `grpc-timeout` as the invocation's deadline.
   */
  readonly handleHttp2 = (h2req: Http2ServerRequest, h2res: Http2ServerResponse): void => {
    const req = h2req as unknown as IncomingMessage;
    const res = h2res as unknown as ServerResponse;
    let deadlineMs: number | undefined;
    if (isGrpcContentType(h2req.headers['content-type'])) {
      markGrpc(res);
      const header = h2req.headers['grpc-timeout'];
      if (header !== undefined) {
        const timeout = String(header);
        deadlineMs = parseGrpcTimeout(timeout);
        if (deadlineMs === undefined) {
          sendError(res, new BatonError('ERR_INVALID_REQUEST', `grpc-timeout '${timeout}' is not 1 to 8 digits and a unit (H, M, S, m, u, n)`));
          return;
        }
      }
    }
    const url = h2req.url;
    if (this.#isAnsweredHere(url, res)) return;
    this.#invoke(req, res, url, scanHttp2RequestHeaders(h2req.rawHeaders, h2req.socket.remoteAddress, !h2req.stream.endAfterHeaders), deadlineMs);
  };

  /** Reserved paths and the refusal while closing, answered without routing. */
  #isAnsweredHere(url: string, res: ServerResponse): boolean {
    if (url.startsWith('/_baton/')) {
      this.#handleReserved(url, res);
      return true;
    }
    if (this.#state !== 'open') {
      res.shouldKeepAlive = false;
      sendError(res, new BatonError('ERR_SHUTTING_DOWN', 'the data plane is shutting down'));
      return true;
    }
    return false;
  }

  #invoke(req: IncomingMessage, res: ServerResponse, url: string, scanned: ScannedRequest, deadlineMs: number | undefined): void {
    const route = resolveRoute(scanned.host, url, (name) => this.table.getFunction(name));
    const intercept = this.#options.intercept;
    if (intercept !== undefined && intercept(req, res, route, scanned)) return;
    if (route === undefined) {
      sendError(res, new BatonError('ERR_FUNCTION_NOT_FOUND', `no function is named by host '${scanned.host}' or path '${url.split('?')[0] ?? ''}'`));
      return;
    }
    const invocation = new Invocation<FunctionTraffic>(this, route.fn, req, res, route.path, scanned.headers, scanned.hasBody);
    if (scanned.hasBody) {
      const maxBytes = route.fn.spec.maxBodyBytes ?? this.#options.invocationBodyMaxBytes;
      const declared = req.headers['content-length'];
      if (declared === undefined) invocation.bodyMaxBytes = maxBytes;
      else if (Number(declared) > maxBytes) {
        // Refused before a byte is read; the connection closes rather than read the rest.
        res.shouldKeepAlive = false;
        this.#reject(invocation, payloadTooLarge(maxBytes));
        return;
      }
    }
    if (deadlineMs !== undefined) this.#armDeadline(invocation, deadlineMs);
    this.#admit(invocation);
  }

  /** The client's deadline: waiting, the invocation leaves the queue; running, it is aborted at its sandbox. */
  #armDeadline(invocation: Invocation<FunctionTraffic>, deadlineMs: number): void {
    invocation.deadlineAt = this.#options.clock.now() + deadlineMs;
    invocation.deadline = this.#options.clock.setTimeout(() => {
      invocation.deadline = undefined;
      const err = new BatonError('ERR_DEADLINE_EXCEEDED', `the invocation of function '${invocation.fn.name}' passed its client's deadline (${deadlineMs} ms)`, { details: { deadlineMs } });
      if (invocation.state === 'running') {
        invocation.abortWith(err);
        return;
      }
      if (invocation.state !== 'waiting') return;
      const entry = invocation.queueEntry;
      if (entry !== undefined) {
        invocation.queueEntry = undefined;
        if (invocation.fn.traffic.queue.remove(entry)) this.#changeQueued(invocation.fn.traffic, -1);
      }
      this.#reject(invocation, err);
    }, deadlineMs);
  }

  /** Resolves when the named sandboxes have no invocation in flight here, or at `timeoutMs`. */
  drainWait(sandboxIds: readonly string[], timeoutMs: number): Promise<DrainWaitResponse> {
    const endpoints = sandboxIds.map((id) => this.table.getEndpoint(id) ?? this.#lingering.get(id));
    return this.#drains.wait(sandboxIds, endpoints, timeoutMs);
  }

  /** One row per function for the scrape-time gauges. */
  *gaugeRows(): Iterable<FunctionGaugeRow> {
    for (const fn of this.table.functions()) {
      const demand = fn.traffic.demand;
      yield { function: fn.name, inflight: demand.inflight, queued: demand.queued, endpoints: fn.endpoints.size };
    }
  }

  /**
   * Stops admitting invocations (503 ERR_SHUTTING_DOWN), fails the queued ones with
   * ERR_SHUTTING_DOWN and resolves when the in-flight ones have finished or `graceMs` passed.
   */
  async close(graceMs: number): Promise<void> {
    if (this.#state === 'open') {
      this.#state = 'closing';
      for (const fn of this.table.functions()) this.#failQueued(fn, 'ERR_SHUTTING_DOWN', 'the data plane is shutting down');
    }
    if (this.#inflight > 0) {
      this.#idle ??= createDeferred<void>();
      const timer = this.#options.clock.setTimeout(() => this.#idle?.resolve(), graceMs);
      await this.#idle.promise;
      timer.cancel();
    }
    this.#state = 'closed';
    this.#drains.settleAll();
  }

  #handleReserved(url: string, res: ServerResponse): void {
    if (url === '/_baton/healthz') {
      const status = this.#state === 'open' ? 200 : 503;
      const body = JSON.stringify({ status: this.#state === 'open' ? 'ok' : 'closing' });
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
      return;
    }
    sendError(res, new BatonError('ERR_NOT_FOUND', `no reserved path ${url}`));
  }

  /** Starts an invocation made by another API on this port (see `intercept`) down the ordinary path. */
  admit(invocation: Invocation<FunctionTraffic>): void {
    this.#admit(invocation);
  }

  #admit(invocation: Invocation<FunctionTraffic>): void {
    const fn = invocation.fn;
    const traffic = fn.traffic;
    const overLimit = this.#overLimit(fn);
    if (overLimit !== undefined) {
      this.#reject(invocation, overLimit);
      return;
    }
    if (traffic.queue.size === 0) {
      const endpoint = this.#pick(fn, fn.endpoints.items, invocation.key);
      if (endpoint !== undefined) {
        this.#start(invocation, endpoint, false);
        return;
      }
    }
    // Every slot is busy. While sandboxes can still be added the invocation waits for a cold start;
    // at the function's ceiling it may wait only behind what its slots serve in a few turns.
    if (this.#isAtCeiling(fn) && traffic.queue.size >= this.#overloadWaitLimit(fn)) {
      this.#reject(invocation, this.#overloaded(fn));
      return;
    }
    const entry = traffic.queue.push(invocation);
    if (entry === undefined) {
      this.#reject(invocation, new BatonError('ERR_QUEUE_FULL', `the queue of function '${fn.name}' is full (${traffic.queue.capacity})`));
      return;
    }
    invocation.queueEntry = entry;
    this.#changeQueued(traffic, 1);
    traffic.demand.poke();
  }

  /** A refusal when the function is at its `maxConcurrency` or the data plane at `maxConcurrentInvocations`. */
  #overLimit(fn: FunctionState): BatonError | undefined {
    const maxConcurrency = fn.spec.maxConcurrency;
    if (maxConcurrency !== undefined && fn.traffic.demand.concurrency >= maxConcurrency) {
      return new BatonError('ERR_TOO_MANY_REQUESTS', `function '${fn.name}' is at its maxConcurrency (${maxConcurrency} in flight)`, { details: { maxConcurrency, retryAfterSeconds: 1 } });
    }
    const max = this.#options.maxConcurrentInvocations;
    if (max > 0 && this.#inflight + this.#queued >= max) {
      return new BatonError('ERR_TOO_MANY_REQUESTS', `the data plane is at its maxConcurrentInvocations (${max})`, { details: { maxConcurrentInvocations: max, retryAfterSeconds: 1 } });
    }
    return undefined;
  }

  /** The function has as many serving sandboxes as its `scaling.maxScale`: no cold start will add a slot. */
  #isAtCeiling(fn: FunctionState): boolean {
    const maxScale = fn.spec.maxScale;
    return maxScale !== undefined && fn.liveEndpoints >= maxScale;
  }

  #overloadWaitLimit(fn: FunctionState): number {
    return this.#options.overloadQueuePerSlot * fn.liveEndpoints * fn.spec.concurrency;
  }

  #overloaded(fn: FunctionState): BatonError {
    const limit = this.#overloadWaitLimit(fn);
    return new BatonError('ERR_TOO_MANY_REQUESTS', `function '${fn.name}' is at its maxScale (${fn.spec.maxScale ?? '?'}) with every slot busy and ${limit} invocations waiting`, {
      details: { maxScale: fn.spec.maxScale, waiting: limit, retryAfterSeconds: 1 },
    });
  }

  #changeQueued(traffic: FunctionTraffic, delta: number): void {
    this.#queued += delta;
    traffic.demand.change(0, delta);
  }

  /** `key`: the invocation's affinity key; without one, the function's name (one ring position per function). */
  #pick(fn: FunctionState, endpoints: readonly EndpointEntry[], key: string | undefined): EndpointEntry | undefined {
    return fn.traffic.balancer.pick(endpoints, key ?? fn.name) as EndpointEntry | undefined;
  }

  /** Dispatches queued invocations, oldest first, while an endpoint has a free slot. */
  dispatchQueued(fn: FunctionState): void {
    const traffic = fn.traffic;
    if (traffic.isDispatching || this.#state !== 'open') return;
    traffic.isDispatching = true;
    try {
      while (traffic.queue.size > 0) {
        const head = traffic.queue.peek();
        if (head === undefined) break;
        const endpoint = this.#pick(fn, fn.endpoints.items, head.value.key);
        if (endpoint === undefined) break;
        const entry = traffic.queue.shift();
        if (entry === undefined) break;
        const invocation = entry.value;
        invocation.queueEntry = undefined;
        traffic.metrics.observeWait((this.#options.clock.now() - entry.enqueuedAt) / 1000);
        this.#queued--;
        this.#start(invocation, endpoint, true);
      }
      if (traffic.queue.size > 0 && this.#isAtCeiling(fn)) this.#trimToOverloadLimit(fn);
    } finally {
      traffic.isDispatching = false;
    }
  }

  /**
   * The function reached its ceiling with more waiting than its slots serve in a few turns (they
   * queued while sandboxes were still being added): the newest beyond the limit are refused now
   * rather than left to wait out the cold-start deadline.
   */
  #trimToOverloadLimit(fn: FunctionState): void {
    const queue = fn.traffic.queue;
    const limit = this.#overloadWaitLimit(fn);
    if (queue.size <= limit) return;
    const refusal = this.#overloaded(fn);
    while (queue.size > limit) {
      const entry = queue.pop();
      if (entry === undefined) break;
      entry.value.queueEntry = undefined;
      this.#changeQueued(fn.traffic, -1);
      this.#reject(entry.value, refusal);
    }
  }

  #start(invocation: Invocation<FunctionTraffic>, endpoint: EndpointEntry, isFromQueue: boolean): void {
    endpoint.inflight++;
    this.#inflight++;
    invocation.fn.traffic.demand.change(1, isFromQueue ? -1 : 0);
    invocation.fn.traffic.demand.markUsed(endpoint.sandboxId);
    invocation.begin(endpoint, endpoint.upstream as Upstream, invocation.deadlineAt === undefined ? 0 : this.#options.clock.now());
  }

  /** The invocation left its endpoint (answered, failed or aborted): free the slot. */
  release(invocation: Invocation<FunctionTraffic>, code: string): void {
    invocation.deadline?.cancel();
    const endpoint = invocation.endpoint;
    if (endpoint === undefined) return;
    invocation.endpoint = undefined;
    invocation.fn.traffic.metrics.countInvocation(code);
    this.#releaseSlot(invocation.fn, endpoint);
  }

  #releaseSlot(fn: FunctionState, endpoint: EndpointEntry): void {
    endpoint.inflight--;
    this.#inflight--;
    fn.traffic.demand.change(-1, 0);
    if (endpoint.inflight === 0) {
      if (endpoint.isRetired) {
        // A retired endpoint holds its pool until its last invocation ends (see #onEndpointRetired).
        if (this.#lingering.get(endpoint.sandboxId) === endpoint) this.#lingering.delete(endpoint.sandboxId);
        this.#options.pools.release(endpoint.address, endpoint.upstream);
      }
      this.#drains.onIdle(endpoint);
    }
    if (this.#inflight === 0 && this.#idle !== undefined) this.#idle.resolve();
    if (!endpoint.isRetired) this.dispatchQueued(fn);
  }

  /**
   * The connection to the endpoint was refused before any byte of the request was sent (so the
   * sandbox cannot have seen it, whatever the method): try one other endpoint with a free slot.
   * Returns false when there is none; the caller then answers 502.
   */
  retryElsewhere(invocation: Invocation<FunctionTraffic>): boolean {
    const failed = invocation.endpoint;
    if (failed === undefined || this.#state !== 'open') return false;
    const fn = invocation.fn;
    const other = this.#pick(fn, fn.endpoints.items.filter((e) => e !== failed), invocation.key);
    if (other === undefined) return false;
    this.#log.debug({ fn: fn.name, sandboxId: failed.sandboxId, retrySandboxId: other.sandboxId }, 'connection refused, retrying on another endpoint');
    invocation.endpoint = undefined;
    this.#start(invocation, other, false);
    this.#releaseSlot(fn, failed);
    return true;
  }

  /** A queued invocation's client went away: drop it from the queue. */
  abandonQueued(invocation: Invocation<FunctionTraffic>): void {
    invocation.deadline?.cancel();
    const entry = invocation.queueEntry;
    if (entry === undefined) return;
    invocation.queueEntry = undefined;
    const traffic = invocation.fn.traffic;
    if (traffic.queue.remove(entry)) {
      this.#changeQueued(traffic, -1);
      traffic.metrics.countInvocation('client_closed');
    }
  }

  #reject(invocation: Invocation<FunctionTraffic>, err: BatonError): void {
    invocation.deadline?.cancel();
    invocation.fn.traffic.metrics.countInvocation(err.code);
    invocation.fail(err);
  }

  #createTraffic(spec: RoutingFunction): FunctionTraffic {
    const options = this.#options;
    const queue = new InvocationQueue<Invocation<FunctionTraffic>>({
      capacity: options.queueCapacity,
      timeoutMs: options.queueTimeoutMs,
      clock: options.clock,
      onExpired: this.#onExpired,
    });
    const onAdded = options.onFunctionAdded;
    if (onAdded !== undefined) options.clock.setTimeout(() => onAdded(spec.name), 0);
    return {
      balancer: options.createLoadBalancer(spec.name),
      queue,
      demand: options.reporter.track(spec.name),
      metrics: options.metrics.forFunction(spec.name),
      isDispatching: false,
    };
  }

  /** One callback for every function's queue (not a closure per function). */
  readonly #onExpired = (invocation: Invocation<FunctionTraffic>): void => {
    invocation.queueEntry = undefined;
    this.#changeQueued(invocation.fn.traffic, -1);
    this.#reject(invocation, new BatonError('ERR_COLD_START_TIMEOUT', `no sandbox of function '${invocation.fn.name}' became free within ${this.#options.queueTimeoutMs} ms`));
  };

  #onFunctionRemoved(fn: FunctionState): void {
    this.#failQueued(fn, 'ERR_FUNCTION_NOT_FOUND', `function '${fn.name}' was deleted`);
    fn.traffic.metrics.remove();
  }

  /**
   * The control plane has no room for a sandbox of `name` (and it has none): its queued invocations
   * fail now with 503 ERR_NO_CAPACITY instead of waiting for their deadline.
   */
  rejectForNoCapacity(name: string): void {
    const fn = this.table.getFunction(name);
    if (fn === undefined || fn.endpoints.size > 0) return;
    this.#failQueued(fn, 'ERR_NO_CAPACITY', `no worker has room for a sandbox of function '${name}'`);
  }

  #failQueued(fn: FunctionState, code: ErrorCode, message: string): void {
    const waiting = fn.traffic.queue.drain();
    if (waiting.length === 0) return;
    this.#changeQueued(fn.traffic, -waiting.length);
    for (const invocation of waiting) {
      invocation.queueEntry = undefined;
      this.#reject(invocation, new BatonError(code, message));
    }
  }

  #onEndpointRetired(endpoint: EndpointEntry): void {
    if (endpoint.inflight === 0) {
      this.#options.pools.release(endpoint.address, endpoint.upstream);
      return;
    }
    this.#lingering.set(endpoint.sandboxId, endpoint);
  }
}
