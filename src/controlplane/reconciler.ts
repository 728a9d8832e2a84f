import type { Logger } from '../observability/logger.ts';
import { isEmptyPlan, planScale } from '../policy/plan/plan-scale.ts';
import type { PlanPolicies } from '../policy/plan/types.ts';
import type { WorkerSnapshot } from '../policy/placement/types.ts';
import { countSandboxes, type FunctionEntry } from './model.ts';
import type { PlanExecutor } from './plan-executor.ts';
import type { QuotaRegistry } from './quota-registry.ts';

export interface ReconcilerOptions {
  readonly policies: PlanPolicies;
  readonly executor: PlanExecutor;
  /** The scale the autoscaler asks for (the autoscaler owns it). */
  readonly desiredScale: (fn: FunctionEntry) => number;
  /** The workers, for placement (an array rebuilt only when one joins). */
  readonly workers: () => readonly WorkerSnapshot[];
  readonly log: Logger;
  /** The quotas: how many sandboxes a function may still add, and which functions they hold back. */
  readonly quotas: Pick<QuotaRegistry, 'size' | 'headroom' | 'markHeld'>;
  /** Sends the function's routing entry to the data planes again (its quota cap changed). */
  readonly publishFunction: (fn: FunctionEntry) => void;
}

/**
 * decide → plan → apply: the autoscaler decides a function's desired scale; `converge` takes a
 * snapshot of the function (its sandboxes, the workers, the back-off) and has the pure planner
 * (`src/policy/plan/`) turn it into a plan, which the executor applies. It is the one way into
 * planning: a decision, a sandbox that became ready or failed, a drained sandbox, a lost worker,
 * the end of a back-off and a registry change all come here. A converged function costs one
 * walk over its sandboxes and applies nothing. A function under quotas creates no more sandboxes
 * than they leave; one held back is remembered, and planned again when its quota has room.
 */
export class Reconciler {
  readonly #o: ReconcilerOptions;

  constructor(options: ReconcilerOptions) {
    this.#o = options;
  }

  converge(fn: FunctionEntry): void {
    if (fn.isDeleting) return;
    const { spec, generation } = fn.record;
    const { quotas } = this.#o;
    // Functions under no quota (every one while none exists) pay this one check.
    const headroom = quotas.size === 0 ? undefined : quotas.headroom(fn);
    const plan = planScale({
      function: spec.name, runtime: spec.runtime, artifact: spec.artifact, resources: spec.resources,
      generation, desired: this.#o.desiredScale(fn), sandboxes: fn.sandboxes.values(),
      isBackingOff: fn.sandboxes.isBackingOff, workers: this.#o.workers(),
      ...(headroom === undefined || headroom.count === Infinity ? {} : { maxCreate: headroom.count }),
    }, this.#o.policies);
    if (headroom !== undefined) this.#holdBack(fn, plan.isCappedByQuota ? headroom.scope : undefined, plan.create.length);
    else if (fn.quotaScaleCap !== undefined) this.#setCap(fn, undefined);
    if (isEmptyPlan(plan)) return;
    if (this.#o.log.isLevelEnabled('debug')) {
      this.#o.log.debug({ fn: plan.function, reason: plan.reason, create: plan.create.length, cancel: plan.cancel.length, drain: plan.drain.length, unplaced: plan.unplaced }, 'plan');
    }
    this.#o.executor.apply(fn, plan);
  }

  /** Held back (or not) by the quota of `scope`: the data planes see what it may have as its maxScale. */
  #holdBack(fn: FunctionEntry, scope: string | undefined, creating: number): void {
    this.#o.quotas.markHeld(fn, scope);
    // Walked only while held: a function under no quota, or with room in it, pays nothing here.
    this.#setCap(fn, scope === undefined ? undefined : countSandboxes(fn).current + creating);
  }

  /**
   * A cap of 0 (the quota is used up by the scope's other functions) is told to the data planes as
   * no capacity: its waiting invocations are refused at once (ERR_NO_CAPACITY) instead of waiting
   * out the cold-start deadline; any other cap goes to them as the function's maxScale.
   */
  #setCap(fn: FunctionEntry, cap: number | undefined): void {
    const previous = fn.quotaScaleCap;
    if (previous === cap) return;
    fn.quotaScaleCap = cap;
    if (cap === 0) fn.sandboxes.hasNoCapacity = true;
    else if (previous === 0) fn.sandboxes.hasNoCapacity = false;
    if ((previous ?? 0) > 0 || (cap ?? 0) > 0) this.#o.publishFunction(fn);
  }
}
