import type { PlanPolicies, PlanReason, SandboxView, ScaleInput, ScalePlan } from './types.ts';

const NONE: readonly string[] = [];

/**
 * Plans the sandboxes of one function towards its desired scale, as a pure function of a
 * snapshot (Nomad's scheduler: the plan is data, applied by someone else):
 *
 * 1. Rollout: ready sandboxes of an older generation are retired as current ones become ready,
 *    oldest first, keeping the function's ready count at the desired scale. Worked numbers:
 *    desired 3, 3 outdated ready, 1 current ready → retire 3 − max(0, 3 − 1) = 1.
 * 2. Scale up: desired − current (starting + ready of this generation) new sandboxes, at most
 *    `maxCreate` (what the function's quotas leave), placed by the placement policy — unless a
 *    recent failure is backing the function off.
 * 3. Scale down: current − desired, cancelling starting sandboxes first (newest first; they serve
 *    nothing yet), then draining ready ones: all of them when all go (scale to zero, the common
 *    case), else the victims the eviction policy picks.
 */
export function planScale(input: ScaleInput, policies: PlanPolicies): ScalePlan {
  const byPhase = splitSandboxes(input);
  const current = byPhase.starting.length + byPhase.ready.length;
  const drain: string[] = [];
  let reason: PlanReason = 'converged';
  if (byPhase.outdatedReady.length > 0) {
    const retire = byPhase.outdatedReady.length - Math.max(0, input.desired - byPhase.ready.length);
    if (retire > 0) {
      reason = 'rollout';
      for (const sandbox of oldestReadyFirst(byPhase.outdatedReady).slice(0, retire)) drain.push(sandbox.id);
    }
  }
  if (input.desired > current) {
    if (input.isBackingOff) return plan(input, { drain, reason: drain.length > 0 ? reason : 'backing-off' });
    const wanted = input.desired - current;
    const count = input.maxCreate === undefined ? wanted : Math.min(wanted, input.maxCreate);
    const isCappedByQuota = count < wanted;
    if (count <= 0) return plan(input, { drain, reason: drain.length > 0 ? reason : 'at-quota', isCappedByQuota });
    const placed = policies.placement.place({ function: input.function, runtime: input.runtime, artifact: input.artifact, resources: input.resources, count }, input.workers);
    const unplaced = placed.unplaced;
    return plan(input, {
      create: placed.workerIds, drain, unplaced,
      placementReason: unplaced > 0 ? placed.reason : undefined,
      reason: unplaced === 0 ? 'scale-up' : placed.workerIds.length > 0 ? 'scale-up-partly-placed' : 'no-worker-has-room',
      hasNoCapacity: unplaced > 0 && placed.workerIds.length === 0 && current === 0,
      isCappedByQuota,
    });
  }
  if (input.desired < current) {
    const count = current - input.desired;
    const cancel = byPhase.starting.slice(-count).map((s) => s.id);
    const rest = count - cancel.length;
    if (rest > 0) drain.push(...pickReadyToDrain(byPhase.ready, rest, policies));
    return plan(input, { cancel, drain, reason: 'scale-down' });
  }
  return drain.length === 0 ? plan(input, {}) : plan(input, { drain, reason });
}

/** True when applying the plan changes nothing. */
export function isEmptyPlan(p: ScalePlan): boolean {
  return p.create.length === 0 && p.cancel.length === 0 && p.drain.length === 0 && p.unplaced === 0;
}

function plan(input: ScaleInput, parts: Partial<ScalePlan>): ScalePlan {
  return {
    function: input.function,
    create: parts.create ?? NONE,
    cancel: parts.cancel ?? NONE,
    drain: parts.drain ?? NONE,
    unplaced: parts.unplaced ?? 0,
    placementReason: parts.placementReason,
    reason: parts.reason ?? 'converged',
    hasNoCapacity: parts.hasNoCapacity ?? false,
    isCappedByQuota: parts.isCappedByQuota ?? false,
  };
}

interface ByPhase {
  /** Of the current generation. */
  readonly starting: SandboxView[];
  readonly ready: SandboxView[];
  /** Ready, of an older generation. */
  readonly outdatedReady: SandboxView[];
}

function splitSandboxes(input: ScaleInput): ByPhase {
  const out: ByPhase = { starting: [], ready: [], outdatedReady: [] };
  for (const sandbox of input.sandboxes) {
    if (sandbox.phase === 'draining') continue;
    if (sandbox.generation !== input.generation) {
      if (sandbox.phase === 'ready') out.outdatedReady.push(sandbox);
    } else if (sandbox.phase === 'ready') {
      out.ready.push(sandbox);
    } else {
      out.starting.push(sandbox);
    }
  }
  return out;
}

function oldestReadyFirst(sandboxes: SandboxView[]): SandboxView[] {
  return sandboxes.sort((a, b) => (a.readyAtMs ?? 0) - (b.readyAtMs ?? 0));
}

function pickReadyToDrain(ready: readonly SandboxView[], count: number, policies: PlanPolicies): readonly string[] {
  if (count >= ready.length) return ready.map((s) => s.id);
  const candidates = ready.map((s) => ({ sandboxId: s.id, workerId: s.workerId, readyAtMs: s.readyAtMs ?? s.requestedAtMs, lastUsedMs: s.lastUsedMs }));
  return policies.eviction.pickVictims(candidates, count);
}
