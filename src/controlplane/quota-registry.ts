import type { FunctionSpec } from '../api/function-spec.ts';
import { isQuotaScope, quotaRequestSchema, quotaStoreKey, type QuotaRecord, type QuotaUsage } from '../api/quotas.ts';
import { compileScopes } from '../api/tokens.ts';
import { parseOrThrow } from '../api/validate.ts';
import { wallTimeMs } from '../core/clock.ts';
import { BatonError } from '../core/errors.ts';
import type { Logger } from '../observability/logger.ts';
import type { Store } from '../store/store.ts';
import type { FunctionEntry, Sandbox } from './model.ts';

/** One quota and what the sandboxes in its scope use, kept up to date on every sandbox change. */
interface QuotaState {
  record: QuotaRecord;
  readonly matches: (name: string) => boolean;
  sandboxes: number;
  memoryMiB: number;
  /** Functions that wanted more sandboxes than this quota left them: planned again when usage drops. */
  readonly held: Set<FunctionEntry>;
}

export interface QuotaRegistryOptions {
  readonly store: Store;
  readonly log: Logger;
  /** Every function (to check minimum scales against a quota). */
  readonly functions: { values(): Iterable<FunctionEntry> };
  /** Every sandbox (to count a new quota's usage once, when it is set). */
  readonly sandboxes: { values(): Iterable<Sandbox> };
  /** A function held back by a quota may grow again (usage dropped, the quota was raised or deleted). */
  readonly onReleased: (fn: FunctionEntry) => void;
}

const NO_QUOTAS: readonly QuotaState[] = [];
const NOTHING_TO_RELEASE = (): void => undefined;

/**
 * Per-scope quotas of sandboxes and memory (src/api/quotas.ts): stored, and enforced from counters
 * in memory, never from the store. The sandbox table tells it of every sandbox added or removed
 * (`added`, `removed`: O(quotas matching the function), and nothing at all while no quota
 * exists); the reconciler asks how many sandboxes a function may still add (`headroom`) and
 * creates no more. The counters are rebuilt from the sandboxes as they are known again after a
 * restart or a fail-over (adopted sandboxes pass through the same table). Which quotas match a
 * function is computed once per function and quota change, not per sandbox.
 */
export class QuotaRegistry {
  readonly #o: QuotaRegistryOptions;
  readonly #quotas = new Map<string, QuotaState>();
  /** Bumped on every quota set or deleted: a function's cached matches are recomputed then. */
  #version = 0;
  readonly #matching = new WeakMap<FunctionEntry, { version: number; quotas: readonly QuotaState[] }>();
  readonly #toRelease = new Set<FunctionEntry>();
  /** Specs admitted whose change is not registered yet, by name. */
  readonly #admitting = new Map<string, FunctionSpec>();
  #isReleaseQueued = false;

  constructor(options: QuotaRegistryOptions) {
    this.#o = options;
  }

  get size(): number {
    return this.#quotas.size;
  }

  async load(): Promise<void> {
    for (const record of await this.#o.store.list<QuotaRecord>('quotas')) {
      if (isQuotaScope(record.scope)) this.#quotas.set(record.scope, newState(record));
    }
    this.#version++;
  }

  /**
   * Sets (creates or replaces) the quota of a scope. A quota below what its scope uses now stops
   * growth; it removes no sandbox.
   * @throws BatonError ERR_INVALID_REQUEST for a bad scope or limits
   */
  async set(scope: string, body: unknown): Promise<QuotaUsage> {
    if (!isQuotaScope(scope)) throw badScope(scope);
    const request = parseOrThrow(quotaRequestSchema, body, 'ERR_INVALID_REQUEST', 'quota');
    const record: QuotaRecord = {
      scope, updatedAt: new Date(wallTimeMs()).toISOString(),
      ...(request.maxSandboxes === undefined ? {} : { maxSandboxes: request.maxSandboxes }),
      ...(request.maxMemoryMiB === undefined ? {} : { maxMemoryMiB: request.maxMemoryMiB }),
    };
    await this.#o.store.put('quotas', quotaStoreKey(scope), record);
    const existing = this.#quotas.get(scope);
    if (existing !== undefined) {
      existing.record = record;
      this.#release(existing);
      this.#releaseAllCapped();
    } else {
      const state = newState(record);
      for (const sandbox of this.#o.sandboxes.values()) {
        if (state.matches(sandbox.fn.name)) count(state, sandbox, 1);
      }
      this.#quotas.set(scope, state);
      this.#version++;
    }
    this.#o.log.info({ scope, maxSandboxes: record.maxSandboxes, maxMemoryMiB: record.maxMemoryMiB }, 'quota set');
    return usageOf(this.#quotas.get(scope) as QuotaState);
  }

  /** @throws BatonError ERR_QUOTA_NOT_FOUND */
  async delete(scope: string): Promise<void> {
    const state = this.#quotas.get(scope);
    if (state === undefined) throw new BatonError('ERR_QUOTA_NOT_FOUND', `no quota for scope '${scope}'`);
    await this.#o.store.delete('quotas', quotaStoreKey(scope));
    this.#quotas.delete(scope);
    this.#version++;
    this.#release(state);
    this.#releaseAllCapped();
    this.#o.log.info({ scope }, 'quota deleted');
  }

  /** Every quota with its usage, by scope. */
  list(): QuotaUsage[] {
    return [...this.#quotas.values()].map(usageOf).sort((a, b) => (a.scope < b.scope ? -1 : a.scope > b.scope ? 1 : 0));
  }

  /** The quotas that bind a function, with their usage. */
  of(fn: FunctionEntry): QuotaUsage[] {
    return this.#matchesOf(fn).map(usageOf);
  }

  /** The scope of a quota holding the function back (it wanted more sandboxes than it left), if any. */
  heldBy(fn: FunctionEntry): string | undefined {
    for (const state of this.#matchesOf(fn)) if (state.held.has(fn)) return state.record.scope;
    return undefined;
  }

  /** The sandbox table's: a sandbox was added. */
  added(sandbox: Sandbox): void {
    if (this.#quotas.size === 0) return;
    for (const state of this.#matchesOf(sandbox.fn)) count(state, sandbox, 1);
  }

  /** The sandbox table's: a sandbox was removed; functions its quotas held back are planned again. */
  removed(sandbox: Sandbox): void {
    if (this.#quotas.size === 0) return;
    for (const state of this.#matchesOf(sandbox.fn)) {
      count(state, sandbox, -1);
      if (state.held.size > 0) this.#release(state);
    }
  }

  /**
   * How many more sandboxes of `fn` its quotas allow now (Infinity under none), and the quota that
   * allows the fewest. Never below 0: a quota lowered below its usage stops growth only.
   */
  headroom(fn: FunctionEntry): { count: number; scope: string | undefined } {
    let best = Infinity;
    let scope: string | undefined;
    if (this.#quotas.size === 0) return { count: best, scope };
    const memoryMiB = fn.record.spec.resources.memoryMiB;
    for (const state of this.#matchesOf(fn)) {
      const { maxSandboxes, maxMemoryMiB } = state.record;
      let left = maxSandboxes === undefined ? Infinity : maxSandboxes - state.sandboxes;
      if (maxMemoryMiB !== undefined && memoryMiB > 0) left = Math.min(left, Math.floor((maxMemoryMiB - state.memoryMiB) / memoryMiB));
      if (left < best) {
        best = left;
        scope = state.record.scope;
      }
    }
    return { count: Math.max(0, best), scope };
  }

  /** The reconciler's: `fn` wanted more than the quota of `scope` allowed (or, with undefined, it no longer does). */
  markHeld(fn: FunctionEntry, scope: string | undefined): void {
    for (const state of this.#matchesOf(fn)) {
      if (state.record.scope === scope) state.held.add(fn);
      else state.held.delete(fn);
    }
  }

  /** A deleted function is held by nothing. */
  forget(fn: FunctionEntry): void {
    for (const state of this.#quotas.values()) state.held.delete(fn);
  }

  /**
   * Refuses a spec whose minimum scale cannot fit: with the minimum scales of the other functions
   * in a quota's scope (those registered, and those being created or updated now), it would exceed
   * the quota's sandboxes or memory (floors that cannot all be kept). A spec with `minScale: 0`
   * commits nothing and is always admitted. An admitted spec is reserved until the returned
   * function is called (once its change is registered, or failed), so that concurrent changes in
   * one scope are checked against each other.
   * @throws BatonError ERR_QUOTA_EXCEEDED naming the quota
   */
  admit(spec: FunctionSpec): () => void {
    const { minScale } = spec.scaling;
    if (this.#quotas.size === 0 || minScale === 0) return NOTHING_TO_RELEASE;
    for (const state of this.#quotas.values()) {
      if (!state.matches(spec.name)) continue;
      let sandboxes = minScale;
      let memoryMiB = minScale * spec.resources.memoryMiB;
      const add = (other: FunctionSpec): void => {
        sandboxes += other.scaling.minScale;
        memoryMiB += other.scaling.minScale * other.resources.memoryMiB;
      };
      for (const fn of this.#o.functions.values()) {
        if (!fn.isDeleting && fn.name !== spec.name && !this.#admitting.has(fn.name) && state.matches(fn.name)) add(fn.record.spec);
      }
      for (const [name, other] of this.#admitting) if (name !== spec.name && state.matches(name)) add(other);
      const { maxSandboxes, maxMemoryMiB } = state.record;
      if (maxSandboxes !== undefined && sandboxes > maxSandboxes) {
        throw exceeded(state, `minScale ${minScale} with the minimum scales of the other functions in scope makes ${sandboxes} sandboxes, over its maxSandboxes ${maxSandboxes}`, { field: 'scaling.minScale', sandboxes });
      }
      if (maxMemoryMiB !== undefined && memoryMiB > maxMemoryMiB) {
        throw exceeded(state, `minScale ${minScale} × ${spec.resources.memoryMiB} MiB with the minimum scales of the other functions in scope makes ${memoryMiB} MiB, over its maxMemoryMiB ${maxMemoryMiB}`, { field: 'scaling.minScale', memoryMiB });
      }
    }
    // Changes of one name are serialised by the function registry: one reservation per name at most.
    this.#admitting.set(spec.name, spec);
    return () => {
      if (this.#admitting.get(spec.name) === spec) this.#admitting.delete(spec.name);
    };
  }

  #matchesOf(fn: FunctionEntry): readonly QuotaState[] {
    if (this.#quotas.size === 0) return NO_QUOTAS;
    const cached = this.#matching.get(fn);
    if (cached !== undefined && cached.version === this.#version) return cached.quotas;
    const quotas: QuotaState[] = [];
    for (const state of this.#quotas.values()) if (state.matches(fn.name)) quotas.push(state);
    this.#matching.set(fn, { version: this.#version, quotas });
    return quotas;
  }

  /**
   * Plans the functions a quota held back again, once the current change is done (this is called
   * from inside the sandbox table's changes, where planning must not start).
   */
  #release(state: QuotaState): void {
    for (const fn of state.held) this.#toRelease.add(fn);
    state.held.clear();
    this.#queueRelease();
  }

  /** After a quota change: every function a quota capped is planned again (a change is rare; a walk is fine). */
  #releaseAllCapped(): void {
    for (const fn of this.#o.functions.values()) if (fn.quotaScaleCap !== undefined) this.#toRelease.add(fn);
    for (const state of this.#quotas.values()) state.held.clear();
    this.#queueRelease();
  }

  #queueRelease(): void {
    if (this.#isReleaseQueued || this.#toRelease.size === 0) return;
    this.#isReleaseQueued = true;
    queueMicrotask(() => {
      this.#isReleaseQueued = false;
      const released = [...this.#toRelease];
      this.#toRelease.clear();
      for (const fn of released) if (!fn.isDeleting) this.#o.onReleased(fn);
    });
  }
}

function newState(record: QuotaRecord): QuotaState {
  return { record, matches: compileScopes([record.scope]), sandboxes: 0, memoryMiB: 0, held: new Set() };
}

function count(state: QuotaState, sandbox: Sandbox, sign: 1 | -1): void {
  state.sandboxes += sign;
  state.memoryMiB += sign * sandbox.resources.memoryMiB;
}

function usageOf(state: QuotaState): QuotaUsage {
  const { scope, maxSandboxes, maxMemoryMiB } = state.record;
  return {
    scope, sandboxes: state.sandboxes, memoryMiB: state.memoryMiB,
    ...(maxSandboxes === undefined ? {} : { maxSandboxes }),
    ...(maxMemoryMiB === undefined ? {} : { maxMemoryMiB }),
  };
}

function badScope(scope: string): BatonError {
  return new BatonError('ERR_INVALID_REQUEST', `invalid quota scope '${scope}': must be a function-name glob (lowercase letters, digits, - and *, e.g. team-a-*)`, { details: { field: 'scope' } });
}

function exceeded(state: QuotaState, why: string, details: Record<string, unknown>): BatonError {
  return new BatonError('ERR_QUOTA_EXCEEDED', `over the quota of scope '${state.record.scope}': ${why}`, { details: { scope: state.record.scope, ...details } });
}
