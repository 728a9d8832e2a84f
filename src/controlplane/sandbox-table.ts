import type { Sandbox } from './model.ts';

/** What everyone but the plan executor sees of the sandboxes. */
export interface SandboxReader {
  get(sandboxId: string): Sandbox | undefined;
  values(): IterableIterator<Sandbox>;
  readonly size: number;
}

/** Told of each sandbox as it is indexed and forgotten (constant work each). */
export interface SandboxAccounting {
  added(sandbox: Sandbox): void;
  removed(sandbox: Sandbox): void;
}

/**
 * Every sandbox the control plane knows, by id, with the indexes that keep per-cold-start work
 * constant: each function's and each worker's sandboxes (their SlotSets) and each worker's
 * allocated CPU and memory. Only the plan executor holds this class and changes it; the rest of
 * the control plane reads through `SandboxReader`.
 */
export class SandboxTable implements SandboxReader {
  readonly #byId = new Map<string, Sandbox>();
  readonly #accounting: SandboxAccounting | undefined;

  /** `accounting` hears of every sandbox added and removed (the quota counters). */
  constructor(accounting?: SandboxAccounting) {
    this.#accounting = accounting;
  }

  get size(): number {
    return this.#byId.size;
  }

  get(sandboxId: string): Sandbox | undefined {
    return this.#byId.get(sandboxId);
  }

  values(): IterableIterator<Sandbox> {
    return this.#byId.values();
  }

  /** Indexes a sandbox and adds its resources to its worker's allocation (undone by `remove`). */
  add(sandbox: Sandbox): void {
    const { worker } = sandbox;
    worker.allocated.cpuMilli += sandbox.resources.cpuMilli;
    worker.allocated.memoryMiB += sandbox.resources.memoryMiB;
    worker.sandboxes.add(sandbox);
    sandbox.fn.sandboxes.items.add(sandbox);
    this.#byId.set(sandbox.id, sandbox);
    this.#accounting?.added(sandbox);
  }

  /** Forgets a sandbox and releases its resources; false when it was already gone. */
  remove(sandbox: Sandbox): boolean {
    if (sandbox.isRemoved) return false;
    sandbox.isRemoved = true;
    sandbox.createTimer?.cancel();
    sandbox.createTimer = undefined;
    const { worker } = sandbox;
    worker.allocated.cpuMilli -= sandbox.resources.cpuMilli;
    worker.allocated.memoryMiB -= sandbox.resources.memoryMiB;
    worker.sandboxes.delete(sandbox);
    sandbox.fn.sandboxes.items.delete(sandbox);
    this.#byId.delete(sandbox.id);
    this.#accounting?.removed(sandbox);
    return true;
  }
}
