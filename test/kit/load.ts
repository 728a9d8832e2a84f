import { memberHeaders } from './cluster.ts';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Steady invocation load for fault tests, and the checks made after a fault: what each
 * invocation got (a coded error, never a hang or an empty 200) and whether the data planes' views
 * and the workers' sandboxes agree.
 */

/** An invocation's outcome: 200 with a body, or the error code it failed with (`status` 0: no HTTP answer). */
export interface Outcome { readonly status: number; readonly code?: string }

const CODED = /^ERR_[A-Z_]+$/;

/** One invocation; a timeout (a hang) comes back as `TimeoutError`, a reset as the fetch error's name. */
export async function invoke(url: string, fn: string, options: { execMs?: number; timeoutMs?: number } = {}): Promise<Outcome> {
  try {
    const res = await fetch(`${url}/fn/${fn}/`, { headers: { 'x-baton-exec-ms': String(options.execMs ?? 2) }, signal: AbortSignal.timeout(options.timeoutMs ?? 20_000) });
    const text = await res.text();
    if (res.status === 200) return text.length > 0 ? { status: 200 } : { status: 200, code: 'empty body' };
    try {
      return { status: res.status, code: (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? `HTTP ${res.status} without a code` };
    } catch {
      return { status: res.status, code: `HTTP ${res.status} without a code` };
    }
  } catch (err) {
    return { status: 0, code: (err as Error).name };
  }
}

/** Invocations sent, succeeded, and failed by code. */
export class Tally {
  sent = 0;
  ok = 0;
  readonly failed = new Map<string, number>();

  add(outcome: Outcome): void {
    this.sent++;
    if (outcome.status === 200 && outcome.code === undefined) this.ok++;
    else this.failed.set(outcome.code ?? String(outcome.status), (this.failed.get(outcome.code ?? String(outcome.status)) ?? 0) + 1);
  }

  get failures(): number {
    return this.sent - this.ok;
  }

  /** Failures that are not a coded Baton error (a hang, a reset, an empty 200, an error without a code). */
  uncoded(): string[] {
    return [...this.failed.keys()].filter((code) => !CODED.test(code));
  }

  toString(): string {
    return `sent ${this.sent}, succeeded ${this.ok}, failed ${JSON.stringify(Object.fromEntries(this.failed))}`;
  }
}

export interface LoadOptions {
  /** Where invocations go (read before each one: a data plane that restarts may move). */
  readonly url: () => string;
  /** Functions with sandboxes already: `warmClients` loop over them. */
  readonly warm: readonly string[];
  readonly warmClients?: number;
  /** Functions never invoked yet: one is invoked every `coldEveryMs`, each once, while any is left. */
  readonly cold?: readonly string[];
  readonly coldEveryMs?: number;
  readonly execMs?: number;
  /** Bounds: the load stops by itself after this many warm invocations or this long. */
  readonly maxWarm?: number;
  readonly maxMs?: number;
}

export interface Load {
  readonly warm: Tally;
  readonly cold: Tally;
  /** Cold invocations sent and not answered yet. */
  readonly coldPending: number;
  /** Resolves once `n` more warm invocations have been answered (bounded by `timeoutMs`). */
  more(n: number, timeoutMs?: number): Promise<void>;
  /** Stops sending and waits for every invocation sent to be answered. */
  stop(): Promise<void>;
}

/**
 * Warm invocations from `warmClients` concurrent clients, each sending the next when the last is
 * answered, and cold ones at a steady pace — bounded in count and time.
 */
export function startLoad(o: LoadOptions): Load {
  const warm = new Tally();
  const cold = new Tally();
  const startedAt = Date.now();
  const maxWarm = o.maxWarm ?? 20_000;
  const maxMs = o.maxMs ?? 60_000;
  let isRunning = true;
  let coldPending = 0;
  const isBounded = (): boolean => isRunning && warm.sent < maxWarm && Date.now() - startedAt < maxMs;
  const invokeOptions = o.execMs === undefined ? {} : { execMs: o.execMs };
  const clients = Array.from({ length: o.warmClients ?? 4 }, async (_, i) => {
    for (let n = i; isBounded(); n++) warm.add(await invoke(o.url(), o.warm[n % o.warm.length] as string, invokeOptions));
  });
  const colds: Promise<void>[] = [];
  const coldLoop = (async () => {
    for (const fn of o.cold ?? []) {
      if (!isBounded()) break;
      coldPending++;
      colds.push(invoke(o.url(), fn, invokeOptions).then((outcome) => {
        coldPending--;
        cold.add(outcome);
      }));
      await sleep(o.coldEveryMs ?? 200);
    }
  })();
  return {
    warm, cold,
    get coldPending() {
      return coldPending;
    },
    async more(n, timeoutMs = 15_000) {
      const target = warm.sent + n;
      const deadline = Date.now() + timeoutMs;
      while (warm.sent < target) {
        if (Date.now() > deadline) throw new Error(`the warm load did not reach ${n} more invocations within ${timeoutMs} ms: ${warm}`);
        if (!isBounded()) throw new Error(`the warm load stopped at its bound: ${warm}`);
        await sleep(25);
      }
    },
    async stop() {
      isRunning = false;
      await Promise.all([...clients, coldLoop]);
      await Promise.all(colds);
    },
  };
}

/** Sandbox ids per function, in the order listed. */
type ByFunction = Map<string, string[]>;

const push = (map: ByFunction, fn: string, id: string): void => {
  const ids = map.get(fn);
  if (ids === undefined) map.set(fn, [id]);
  else ids.push(id);
};

/** A data plane's routing view (its internal API): the endpoints not draining, per function. */
export async function routedEndpoints(dpInternalUrl: string): Promise<ByFunction> {
  const view = await (await fetch(`${dpInternalUrl}/internal/v1/routing`, { headers: memberHeaders(), signal: AbortSignal.timeout(5_000) })).json() as { endpoints: { sandboxId: string; function: string; isDraining: boolean }[] };
  const byFunction: ByFunction = new Map();
  for (const e of view.endpoints) if (!e.isDraining) push(byFunction, e.function, e.sandboxId);
  return byFunction;
}

/** What runs on the workers (their internal APIs): the ready sandboxes, per function, over all of them. */
export async function workerSandboxes(workerUrls: readonly string[]): Promise<ByFunction> {
  const byFunction: ByFunction = new Map();
  for (const url of workerUrls) {
    const list = await (await fetch(`${url}/internal/v1/sandboxes`, { headers: memberHeaders(), signal: AbortSignal.timeout(5_000) })).json() as { sandboxes: { sandboxId: string; function: string; state: string }[] };
    for (const s of list.sandboxes) if (s.state === 'ready') push(byFunction, s.function, s.sandboxId);
  }
  return byFunction;
}

export interface ViewsOptions {
  readonly dataplanes: readonly string[];
  readonly workers: readonly string[];
  readonly functions: readonly string[];
  /** The most sandboxes a function may have once converged (default: no bound). */
  readonly maxPerFunction?: number;
}

/**
 * Why the views have not converged, or undefined when they have: on every data plane each
 * function's endpoints are exactly the ready sandboxes the workers run of it — at least one, no
 * duplicate, at most `maxPerFunction`.
 */
export async function divergence(o: ViewsOptions): Promise<string | undefined> {
  const running = await workerSandboxes(o.workers);
  for (const dp of o.dataplanes) {
    const routed = await routedEndpoints(dp);
    for (const fn of o.functions) {
      const r = [...(routed.get(fn) ?? [])].sort();
      const w = [...(running.get(fn) ?? [])].sort();
      if (w.length === 0) return `${fn}: no ready sandbox on any worker`;
      if (new Set(w).size !== w.length) return `${fn}: a sandbox listed twice by the workers: ${w.join()}`;
      if (new Set(r).size !== r.length) return `${fn}: an endpoint routed twice by ${dp}: ${r.join()}`;
      if (o.maxPerFunction !== undefined && w.length > o.maxPerFunction) return `${fn}: ${w.length} sandboxes, above ${o.maxPerFunction}`;
      if (r.join() !== w.join()) return `${fn}: ${dp} routes [${r.join()}] but the workers run [${w.join()}]`;
    }
  }
  return undefined;
}

/** Waits (bounded) until the views converge; throws naming the last difference. */
export async function waitForConvergence(o: ViewsOptions & { timeoutMs?: number }): Promise<void> {
  const deadline = Date.now() + (o.timeoutMs ?? 15_000);
  let last: string | undefined = 'not checked';
  while (Date.now() <= deadline) {
    last = await divergence(o).catch((err: unknown) => `not answered: ${(err as Error).message}`);
    if (last === undefined) return;
    await sleep(100);
  }
  throw new Error(`the views did not converge: ${last}`);
}
