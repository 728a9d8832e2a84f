import type { Clock, Timer } from '../core/clock.ts';
import { ConcurrencyWindow } from '../policy/autoscaling/window.ts';
import { computeDesiredScale, initialKpaState, kpaSettingsFromSpec } from '../policy/autoscaling/kpa.ts';
import { INITIAL_KPA_STATE, type KpaSettings, type KpaState } from '../policy/autoscaling/types.ts';
import type { FunctionSpec } from '../api/function-spec.ts';
import { ReusableFifo } from '../core/reusable-fifo.ts';
import { IntrusiveList } from '../core/intrusive-list.ts';
import { computePokeScale } from '../policy/autoscaling/poke.ts';
import { countSandboxes, type FunctionEntry } from './model.ts';

/** A data plane's last report is ignored after this many buckets without a new one. */
const STALE_BUCKETS = 3;
/** Stale demand samples a function keeps (for data planes that report again) before dropping them. */
const KEPT_STALE_SAMPLES = 4;
/** Active functions sampled (and, on a tick, decided) per event-loop turn. */
const CHUNK = 256;
/** Scale-downs a tick decides are handed on over this share of the tick, in slices… */
const SCALE_DOWN_SPREAD = 0.8;
/** …one every this many milliseconds. */
const SCALE_DOWN_SLICE_MS = 10;

interface ScalingState {
  readonly fn: FunctionEntry;
  /**
   * Links in the list of active functions (`isLinked`: active). Under churn thousands of functions
   * go active and idle every second; see IntrusiveList for why not a Map.
   */
  isLinked: boolean;
  prev: ScalingState | undefined;
  next: ScalingState | undefined;
  /** Queued for a paced scale-down (in `#scaleDowns`, not yet handed on). */
  isScaleDownQueued: boolean;
  window: ConcurrencyWindow;
  /** The function's stable window the buffer was sized for; a spec update may change it. */
  stableWindowMs: number;
  kpa: KpaState;
  /** The scale asked for (current generation only): the autoscaler is its one owner; 0 while idle. */
  desired: number;
  /**
   * Each data plane's last report, updated in place (one report per function per data plane per
   * second). An array, not a Map: it holds one entry per data plane, and a Map that empties on
   * every scale to zero is given a new table each time (V8 shrinks a Map on delete, and `clear`
   * allocates a new one).
   */
  readonly demand: DemandSample[];
  /** Whether the last sample found a fresh report (one at most STALE_BUCKETS old). */
  hasDemand: boolean;
  isPanicking: boolean;
  /** KPA settings compiled from `settingsOf` (the function's spec; an update replaces it). */
  settings: KpaSettings | undefined;
  settingsOf: FunctionSpec | undefined;
  /**
   * What the last decision was, kept as plain numbers: its reason is text built only when read
   * (describe), by deciding again from the same input — the decision is a pure function of it. A
   * decision object kept per function per tick would live just long enough to be copied out of the
   * young generation, at thousands of active functions: most of what the control plane promoted
   * (bench/README.md, churn, "Garbage collection").
   */
  lastKind: LastKind;
  /** What the last decision was made from; one record per function, overwritten by each decision. */
  readonly last: LastDecisionInput;
}

/** The input of a function's last decision: a poke's numbers, or a tick's KPA input without its settings. */
interface LastDecisionInput {
  pokeWaiting: number;
  pokeDesired: number;
  /** The KPA state the tick started from, its instant, averages and counts. */
  kpa: KpaState;
  now: number;
  stableAverage: number;
  panicAverage: number;
  readySandboxes: number;
  currentScale: number;
}

type LastKind = 'activated' | 'poke' | 'tick';

interface DemandSample { readonly dataplaneId: string; concurrency: number; atMs: number }

export interface AutoscalerOptions {
  readonly clock: Clock;
  readonly bucketMs: number;
  readonly tickMs: number;
  /**
   * Called with each decision that asks for a change — the desired scale differs from the function's
   * current scale, or sandboxes of an older generation are ready — and with every poke; the caller
   * plans the function towards `desiredScale(fn)`. A decision that keeps a converged function as it
   * is calls nothing: at thousands of active functions per tick those are most decisions.
   */
  readonly onDecision: (fn: FunctionEntry) => void;
  /** How many decisions each tick took (converged ones included), once per tick. */
  readonly onDecisions?: (count: number) => void;
  /** A function's sample or decision threw: reported here, and the sweep goes on with the others. */
  readonly onError?: (fn: FunctionEntry, err: unknown) => void;
}

/**
 * Drives one KPA decision per *active* function. A function becomes active when demand is
 * reported for it, when it is poked, or when it has sandboxes or a minimum scale; it goes idle
 * (and its windows are dropped) once it is at zero with no demand. One timer serves every active
 * function: an idle function costs nothing.
 *
 * Scale-ups (and rollouts) are handed on as they are decided. Scale-downs are paced: the ones a
 * tick decides are handed on in slices spread over most of the tick, as if each function were
 * decided on its own timer (Knative's autoscaler has one per revision). One sweep decides every
 * function at the same moment, and functions whose demand ended together — a burst, or demand
 * reports that arrive once a second — would otherwise all drain and be deleted at once: under
 * churn that was thousands of sandboxes in one burst of work for every daemon, once a second,
 * which is what the cold starts of that moment waited behind. A scale-down is never urgent; when
 * its turn comes the reconciler plans from the function's desired scale as it is then, so demand
 * that came back meanwhile (a later decision) wins, and a function that has converged meanwhile is
 * skipped.
 */
export class Autoscaler {
  readonly #options: AutoscalerOptions;
  /** Active functions in activation order; a sweep walks it. */
  readonly #active = new IntrusiveList<ScalingState>();
  /**
   * Each function's state, kept while it is idle and reset when it becomes active again: under
   * churn a function is activated for every cold start, and a new state (windows, maps) each time
   * would only be promoted to the old generation to die there.
   */
  readonly #states = new WeakMap<FunctionEntry, ScalingState>();
  #timer: Timer | undefined;
  #bucketsSinceTick = 0;
  #isSweeping = false;
  /**
   * Functions decided down and not yet handed on, oldest decision first. A state unqueued meanwhile
   * (forgotten) has `isScaleDownQueued` false and is skipped when its turn comes.
   */
  readonly #scaleDowns = new ReusableFifo<ScalingState>();
  #scaleDownsQueued = 0;
  #scaleDownTimer: Timer | undefined;
  #scaleDownSlicesLeft = 0;

  constructor(options: AutoscalerOptions) {
    this.#options = options;
  }

  get activeCount(): number {
    return this.#active.size;
  }

  /** The scale asked for `fn` (0 for an idle function). */
  desiredScale(fn: FunctionEntry): number {
    const state = this.#states.get(fn);
    return state?.isLinked === true ? state.desired : 0;
  }

  describe(fn: FunctionEntry): { isPanicking: boolean; reason: string } | undefined {
    const state = this.#states.get(fn);
    if (state === undefined || !state.isLinked) return undefined;
    return { isPanicking: state.isPanicking, reason: lastReason(state) };
  }

  /** A data plane's average concurrency for `fn` over its last report interval. */
  reportDemand(fn: FunctionEntry, dataplaneId: string, concurrency: number): void {
    const state = this.#activate(fn);
    const atMs = this.#options.clock.now();
    const last = state.demand.find((d) => d.dataplaneId === dataplaneId);
    if (last === undefined) {
      state.demand.push({ dataplaneId, concurrency, atMs });
    } else {
      last.concurrency = concurrency;
      last.atMs = atMs;
    }
  }

  /**
   * An invocation found no free capacity. At zero, scale up at once (Knative's poke) instead of
   * waiting for the next tick, to exactly the capacity the waiting invocations need (one sandbox
   * per `concurrency` of them); the next ticks add the target-utilisation headroom if demand stays.
   */
  poke(fn: FunctionEntry, waiting: number): void {
    const state = this.#activate(fn);
    const { scaling, concurrency } = fn.record.spec;
    const desired = computePokeScale({ waiting, currentScale: countSandboxes(fn).current, concurrency, minScale: scaling.minScale, maxScale: scaling.maxScale });
    if (desired === undefined) return;
    state.desired = desired;
    state.lastKind = 'poke';
    state.last.pokeWaiting = waiting;
    state.last.pokeDesired = desired;
    this.#options.onDecision(fn);
  }

  /**
   * A new generation was registered: keep the current size (at least the ready sandboxes and the
   * minimum), so that new sandboxes replace the old generation one for one as they become ready.
   */
  onUpdated(fn: FunctionEntry): void {
    const state = this.#activate(fn);
    const { scaling } = fn.record.spec;
    const ready = fn.sandboxes.values().filter((s) => s.phase === 'ready').length;
    state.desired = Math.min(scaling.maxScale, Math.max(state.desired, ready, scaling.minScale));
    this.#options.onDecision(fn);
  }

  /** Makes sure a function with sandboxes or a minimum scale is being decided for. */
  ensureActive(fn: FunctionEntry, options: { isRecovered?: boolean } = {}): void {
    const state = this.#activate(fn);
    if (options.isRecovered === true) {
      // After a control-plane restart the windows are empty: start in panic at the current
      // size, and ask for that size until the first tick, so that nothing is scaled down before
      // the windows refill.
      const { ready } = countSandboxes(fn);
      state.kpa = initialKpaState(ready, this.#options.clock.now());
      state.desired = Math.max(state.desired, ready);
    }
  }

  forget(fn: FunctionEntry): void {
    const state = this.#states.get(fn);
    if (state === undefined) return;
    state.desired = 0;
    this.#active.remove(state);
    this.#unqueueScaleDown(state);
  }

  /** Scale-downs decided and not yet handed on. */
  get scaleDownsWaiting(): number {
    return this.#scaleDownsQueued;
  }

  close(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#scaleDownTimer?.cancel();
    this.#scaleDownTimer = undefined;
    this.#scaleDowns.forEach((state) => { state.isScaleDownQueued = false; });
    this.#scaleDowns.clear();
    this.#scaleDownsQueued = 0;
    this.#active.clear();
  }

  #activate(fn: FunctionEntry): ScalingState {
    let state = this.#states.get(fn);
    if (state?.isLinked === true) return state;
    const { stableWindowMs } = fn.record.spec.scaling;
    if (state === undefined) {
      state = {
        fn,
        isLinked: false,
        prev: undefined,
        next: undefined,
        isScaleDownQueued: false,
        window: this.#newWindow(stableWindowMs),
        stableWindowMs,
        kpa: INITIAL_KPA_STATE,
        desired: 0,
        demand: [],
        hasDemand: false,
        isPanicking: false,
        settings: undefined,
        settingsOf: undefined,
        lastKind: 'activated',
        last: { pokeWaiting: 0, pokeDesired: 0, kpa: INITIAL_KPA_STATE, now: 0, stableAverage: 0, panicAverage: 0, readySandboxes: 0, currentScale: 0 },
      };
      this.#states.set(fn, state);
    } else {
      // Back from idle: everything it knew is history.
      if (stableWindowMs === state.stableWindowMs) state.window.reset();
      else state.window = this.#newWindow(stableWindowMs);
      state.stableWindowMs = stableWindowMs;
      state.kpa = INITIAL_KPA_STATE;
      state.desired = 0;
      for (const sample of state.demand) sample.atMs = Number.NEGATIVE_INFINITY;
      state.hasDemand = false;
      state.isPanicking = false;
      state.lastKind = 'activated';
    }
    this.#active.push(state);
    this.#arm();
    return state;
  }

  #queueScaleDown(state: ScalingState): void {
    if (state.isScaleDownQueued) return;
    state.isScaleDownQueued = true;
    this.#scaleDowns.push(state);
    this.#scaleDownsQueued++;
  }

  #unqueueScaleDown(state: ScalingState): void {
    if (!state.isScaleDownQueued) return;
    state.isScaleDownQueued = false;
    this.#scaleDownsQueued--;
  }

  #arm(): void {
    if (this.#timer !== undefined) return;
    this.#timer = this.#options.clock.setTimeout(() => {
      this.#timer = undefined;
      this.#onBucket();
      if (this.#active.size > 0) this.#arm();
    }, this.#options.bucketMs);
  }

  /**
   * Records each active function's demand for the bucket just ended and, every tick, decides its
   * scale. With thousands of active functions this is done in slices of CHUNK functions, one per
   * event-loop turn, so that invocations and sandbox events are never held up for long (5,000
   * functions cost ~10 ms in all; a slice well under 1 ms).
   */
  #onBucket(): void {
    if (this.#isSweeping) return;
    const now = this.#options.clock.now();
    this.#bucketsSinceTick++;
    const isTick = this.#bucketsSinceTick * this.#options.bucketMs >= this.#options.tickMs;
    if (isTick) this.#bucketsSinceTick = 0;
    // A walk over the active list, advanced one slice per turn: a function that goes idle
    // meanwhile is skipped, one that becomes active is sampled in this sweep too.
    this.#active.startWalk();
    let decisions = 0;
    const sweep = (): void => {
      for (let n = 0; n < CHUNK; n++) {
        const state = this.#active.step();
        if (state === undefined) {
          this.#isSweeping = false;
          if (isTick) {
            this.#options.onDecisions?.(decisions);
            this.#paceScaleDowns();
          }
          return;
        }
        const { fn } = state;
        try {
          this.#sample(fn, state, now);
          if (isTick) {
            decisions++;
            this.#decide(fn, state, now);
          }
        } catch (err) {
          this.#options.onError?.(fn, err);
        }
      }
      this.#options.clock.defer(sweep);
    };
    this.#isSweeping = true;
    sweep();
  }

  /** A window holding at least one bucket, even when the stable window is shorter than a bucket. */
  #newWindow(stableWindowMs: number): ConcurrencyWindow {
    return new ConcurrencyWindow({ bucketMs: this.#options.bucketMs, maxWindowMs: Math.max(this.#options.bucketMs, stableWindowMs) });
  }

  #sample(fn: FunctionEntry, state: ScalingState, now: number): void {
    const { stableWindowMs } = fn.record.spec.scaling;
    if (stableWindowMs !== state.stableWindowMs) {
      // An update changed the window: start a new one, and hold the current size (panic mode at
      // the ready count) until it has filled, as after a restart.
      state.window = this.#newWindow(stableWindowMs);
      state.stableWindowMs = stableWindowMs;
      state.kpa = initialKpaState(countSandboxes(fn).ready, now);
    }
    const staleMs = STALE_BUCKETS * this.#options.bucketMs;
    let total = 0;
    // Stale samples stay (an array that empties on every scale to zero would be given a new backing
    // store each time) unless there are more than a few: data planes that left.
    const { demand } = state;
    let fresh = 0;
    for (let i = demand.length - 1; i >= 0; i--) {
      const sample = demand[i] as DemandSample;
      if (now - sample.atMs <= staleMs) {
        total += sample.concurrency;
        fresh++;
      } else if (demand.length > KEPT_STALE_SAMPLES) {
        demand[i] = demand[demand.length - 1] as DemandSample;
        demand.pop();
      }
    }
    state.hasDemand = fresh > 0;
    state.window.record(now, total);
  }

  #decide(fn: FunctionEntry, state: ScalingState, now: number): void {
    const { spec } = fn.record;
    const counts = countSandboxes(fn);
    if (state.settingsOf !== spec || state.settings === undefined) {
      state.settings = kpaSettingsFromSpec(spec.concurrency, spec.scaling);
      state.settingsOf = spec;
    }
    const stableAverage = state.window.average(now, spec.scaling.stableWindowMs);
    const panicAverage = state.window.average(now, spec.scaling.panicWindowMs);
    const decision = computeDesiredScale({
      now, settings: state.settings, state: state.kpa, stableAverage, panicAverage,
      readySandboxes: counts.ready, currentScale: counts.current,
    });
    state.lastKind = 'tick';
    const { last } = state;
    last.kpa = state.kpa;
    last.now = now;
    last.stableAverage = stableAverage;
    last.panicAverage = panicAverage;
    last.readySandboxes = counts.ready;
    last.currentScale = counts.current;
    state.kpa = decision.state;
    state.isPanicking = decision.isPanicking;
    state.desired = decision.desired;
    if (counts.outdatedReady > 0 || decision.desired > counts.current) this.#options.onDecision(fn);
    else if (decision.desired < counts.current) this.#queueScaleDown(state);
    const isIdle = decision.desired === 0 && counts.current === 0 && counts.draining === 0
      && counts.outdatedReady === 0 && !state.hasDemand;
    if (isIdle) this.#active.remove(state);
  }

  /** Spreads the waiting scale-downs over the coming tick: a new tick starts the spread again. */
  #paceScaleDowns(): void {
    if (this.#scaleDownsQueued === 0) return;
    this.#scaleDownSlicesLeft = Math.max(1, Math.floor((this.#options.tickMs * SCALE_DOWN_SPREAD) / SCALE_DOWN_SLICE_MS));
    this.#scaleDownTimer ??= this.#options.clock.setTimeout(this.#onScaleDownSlice, SCALE_DOWN_SLICE_MS);
  }

  readonly #onScaleDownSlice = (): void => {
    this.#scaleDownTimer = undefined;
    const slicesLeft = Math.max(1, this.#scaleDownSlicesLeft--);
    let n = Math.ceil(this.#scaleDownsQueued / slicesLeft);
    while (n > 0 && this.#scaleDowns.size > 0) {
      const state = this.#scaleDowns.shift() as ScalingState;
      if (!state.isScaleDownQueued) continue;
      n--;
      this.#unqueueScaleDown(state);
      const { fn } = state;
      // Converged meanwhile (a later decision, a lost worker, a deletion): nothing to hand on.
      if (state.desired === countSandboxes(fn).current) continue;
      try {
        this.#options.onDecision(fn);
      } catch (err) {
        this.#options.onError?.(fn, err);
      }
    }
    if (this.#scaleDownsQueued > 0) this.#scaleDownTimer = this.#options.clock.setTimeout(this.#onScaleDownSlice, SCALE_DOWN_SLICE_MS);
  };
}

/** The reason for a function's last decision, for people (describe). */
function lastReason(state: ScalingState): string {
  switch (state.lastKind) {
    case 'activated':
      return 'activated';
    case 'poke':
      return `poke: ${state.last.pokeWaiting} waiting at zero → ${state.last.pokeDesired}`;
    case 'tick':
      if (state.settings === undefined) return 'activated';
      return computeDesiredScale({
        now: state.last.now, settings: state.settings, state: state.last.kpa, stableAverage: state.last.stableAverage,
        panicAverage: state.last.panicAverage, readySandboxes: state.last.readySandboxes, currentScale: state.last.currentScale,
      }).reason;
  }
}
