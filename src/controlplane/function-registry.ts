import { functionSpecSchema, SECRET_PLACEHOLDER, type FunctionRecord, type FunctionSpec } from '../api/function-spec.ts';
import { parseOrThrow } from '../api/validate.ts';
import { digestOf, inspectArchive } from '../core/archive.ts';
import { wallTimeMs } from '../core/clock.ts';
import { BatonError } from '../core/errors.ts';
import type { Logger } from '../observability/logger.ts';
import type { Store } from '../store/store.ts';
import { FunctionEntry, toRoutingFunction } from './model.ts';
import type { RoutingChange } from '../api/dataplane.ts';

export interface FunctionRegistryOptions {
  readonly store: Store;
  readonly log: Logger;
  /**
   * Where function changes go to reach every data plane (the routing fan-out). `delivered()`
   * resolves once every connected data plane has acknowledged what was published so far (and every
   * one known from the store has registered again, after a restart or a fail-over), or after
   * a bounded wait (a data plane that does not answer must not hold the API up); never rejects.
   */
  readonly routing: { publish(change: RoutingChange): void; delivered(): Promise<void> };
  readonly autoscaler: {
    /** A function with a minimum scale, or sandboxes, is decided for from now on. */
    ensureActive(fn: FunctionEntry): void;
    /** A new generation: keep the size while the new sandboxes replace the old. */
    onUpdated(fn: FunctionEntry): void;
    forget(fn: FunctionEntry): void;
  };
  /** Drains and deletes every sandbox of a function being deleted. */
  readonly removeSandboxes: (fn: FunctionEntry) => Promise<void>;
  readonly limits: { readonly maxPackedBytes: number; readonly maxUnpackedBytes: number; readonly maxEntries: number };
  /**
   * Refuses (throws) a spec its quotas cannot take, else reserves it until the returned function is
   * called (the quota registry's `admit`); absent: every spec fits.
   */
  readonly admit?: (spec: FunctionSpec) => () => void;
}

/**
 * Functions and artifacts: validated, persisted durably, then published to every data plane; a
 * change is acknowledged once the connected data planes have it (read-your-writes: an invocation
 * sent after `create` returns finds the function), or after a bounded wait. An invalid request
 * changes nothing. The one owner of the function
 * table (a function's record and its deletion); the rest of the control plane reads it here.
 */
export class FunctionRegistry {
  readonly #o: FunctionRegistryOptions;
  readonly #functions = new Map<string, FunctionEntry>();
  /** Serialises changes per name so concurrent updates cannot interleave. */
  readonly #locks = new Map<string, Promise<unknown>>();

  constructor(options: FunctionRegistryOptions) {
    this.#o = options;
  }

  async load(): Promise<void> {
    for (const record of await this.#o.store.list<FunctionRecord>('functions')) {
      const fn = new FunctionEntry(record);
      this.#functions.set(record.spec.name, fn);
      if (record.spec.scaling.minScale > 0) this.#o.autoscaler.ensureActive(fn);
    }
  }

  get size(): number {
    return this.#functions.size;
  }

  /** The function of that name, being deleted or not (internal readers check `isDeleting`). */
  find(name: string): FunctionEntry | undefined {
    return this.#functions.get(name);
  }

  /** Every function, those being deleted included. */
  values(): IterableIterator<FunctionEntry> {
    return this.#functions.values();
  }

  async putArtifact(archive: Buffer): Promise<{ digest: string; isNew: boolean }> {
    await inspectArchive(archive, this.#o.limits);
    const digest = digestOf(archive);
    const isNew = !(await this.#o.store.hasBlob(digest));
    if (isNew) await this.#o.store.putBlob(digest, archive);
    return { digest, isNew };
  }

  async getArtifact(digest: string): Promise<Buffer> {
    const blob = /^sha256:[0-9a-f]{64}$/.test(digest) ? await this.#o.store.getBlob(digest) : undefined;
    if (blob === undefined) throw new BatonError('ERR_ARTIFACT_NOT_FOUND', `no artifact ${digest}`);
    return blob;
  }

  get(name: string): FunctionEntry {
    const fn = this.#functions.get(name);
    if (fn === undefined || fn.isDeleting) throw new BatonError('ERR_FUNCTION_NOT_FOUND', `no function '${name}'`);
    return fn;
  }

  list(): FunctionEntry[] {
    return [...this.#functions.values()].filter((fn) => !fn.isDeleting);
  }

  async create(body: unknown): Promise<FunctionRecord> {
    const parsed = parseOrThrow(functionSpecSchema, body, 'ERR_INVALID_SPEC', 'function spec');
    // A new function has no current secret for `(secret)` to keep.
    const spec = { ...parsed, secretEnv: keptSecrets(parsed.secretEnv, {}) };
    return this.#delivered(this.#serialise(spec.name, async () => {
      if (this.#functions.has(spec.name)) throw new BatonError('ERR_FUNCTION_EXISTS', `function '${spec.name}' already exists`);
      const release = this.#o.admit?.(spec);
      const now = new Date(wallTimeMs()).toISOString();
      const record: FunctionRecord = { spec, generation: 1, createdAt: now, updatedAt: now };
      const fn = new FunctionEntry(record);
      try {
        await this.#requireArtifact(spec);
        await this.#o.store.put('functions', spec.name, record);
        this.#functions.set(spec.name, fn);
      } finally {
        release?.();
      }
      this.#o.routing.publish({ type: 'function.put', function: toRoutingFunction(fn) });
      if (spec.scaling.minScale > 0) this.#o.autoscaler.ensureActive(fn);
      this.#o.log.info({ fn: spec.name, generation: 1 }, 'function created');
      return record;
    }));
  }

  async update(name: string, body: unknown): Promise<FunctionRecord> {
    const withName = typeof body === 'object' && body !== null && !('name' in body) ? { ...body, name } : body;
    const parsed = parseOrThrow(functionSpecSchema, withName, 'ERR_INVALID_SPEC', 'function spec');
    if (parsed.name !== name) {
      throw new BatonError('ERR_INVALID_SPEC', `invalid function spec: name: must equal the name in the path ('${name}')`, { details: { issues: [{ field: 'name', rule: 'must equal the name in the path' }] } });
    }
    const isSendingSecrets = typeof body === 'object' && body !== null && 'secretEnv' in body;
    return this.#delivered(this.#serialise(name, async () => {
      const fn = this.get(name);
      const spec = { ...parsed, secretEnv: isSendingSecrets ? keptSecrets(parsed.secretEnv, fn.record.spec.secretEnv) : fn.record.spec.secretEnv };
      for (const key of Object.keys(spec.secretEnv)) {
        if (Object.hasOwn(spec.env, key)) throw invalidSecret(key, 'is also in env (a variable is in one or the other)');
      }
      const release = this.#o.admit?.(spec);
      const record: FunctionRecord = { spec, generation: fn.record.generation + 1, createdAt: fn.record.createdAt, updatedAt: new Date(wallTimeMs()).toISOString() };
      try {
        await this.#requireArtifact(spec);
        await this.#o.store.put('functions', name, record);
        fn.replaceRecord(record);
      } finally {
        release?.();
      }
      this.#o.routing.publish({ type: 'function.put', function: toRoutingFunction(fn) });
      this.#o.autoscaler.onUpdated(fn);
      this.#o.log.info({ fn: name, generation: record.generation }, 'function updated');
      return record;
    }));
  }

  delete(name: string): Promise<void> {
    return this.#delivered(this.#serialise(name, async () => {
      const fn = this.get(name);
      await this.#o.store.delete('functions', name);
      fn.markDeleting();
      this.#o.autoscaler.forget(fn);
      await this.#o.removeSandboxes(fn);
      this.#functions.delete(name);
      this.#o.routing.publish({ type: 'function.delete', name });
      this.#o.log.info({ fn: name }, 'function deleted');
    }));
  }

  /** The change's result once the data planes have it (outside the name's lock: others go on meanwhile). */
  async #delivered<T>(change: Promise<T>): Promise<T> {
    const result = await change;
    await this.#o.routing.delivered();
    return result;
  }

  async #requireArtifact(spec: FunctionSpec): Promise<void> {
    // An emulated function runs no code: an artifact it names is never fetched, so not checked.
    if (spec.runtime !== 'emulated' && spec.artifact !== undefined && !(await this.#o.store.hasBlob(spec.artifact))) {
      throw new BatonError('ERR_INVALID_SPEC', `invalid function spec: artifact: no artifact ${spec.artifact} has been uploaded`, {
        details: { issues: [{ field: 'artifact', rule: 'must be the digest of an uploaded artifact (PUT /v1/artifacts)' }] },
      });
    }
  }

  async #serialise<T>(name: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(name) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(work);
    this.#locks.set(name, next);
    try {
      return await next;
    } finally {
      if (this.#locks.get(name) === next) this.#locks.delete(name);
    }
  }
}

/**
 * The secret variables of an update: those sent, where `(secret)` keeps the current value.
 * @throws BatonError ERR_INVALID_SPEC for `(secret)` on a variable the function does not have
 */
function keptSecrets(sent: Readonly<Record<string, string>>, current: Readonly<Record<string, string>>): Record<string, string> {
  const secrets: Record<string, string> = {};
  for (const [key, value] of Object.entries(sent)) {
    if (value !== SECRET_PLACEHOLDER) secrets[key] = value;
    else if (Object.hasOwn(current, key)) secrets[key] = current[key] as string;
    else throw invalidSecret(key, `is ${SECRET_PLACEHOLDER}, which keeps a current value, but the function has no such secret`);
  }
  return secrets;
}

function invalidSecret(key: string, rule: string): BatonError {
  return new BatonError('ERR_INVALID_SPEC', `invalid function spec: secretEnv.${key}: ${rule}`, { details: { issues: [{ field: `secretEnv.${key}`, rule }] } });
}
