import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { createRandom } from '../../src/core/random.ts';
import { computeDesiredScale } from '../../src/policy/autoscaling/kpa.ts';
import { INITIAL_KPA_STATE } from '../../src/policy/autoscaling/types.ts';
import type { KpaSettings } from '../../src/policy/autoscaling/types.ts';
import { boundedLoad, ChBlBalancer } from '../../src/policy/load-balancing/ch-bl.ts';
import { createLoadBalancer, LOAD_BALANCING_POLICIES } from '../../src/policy/load-balancing/index.ts';
import type { EndpointView } from '../../src/policy/load-balancing/index.ts';
import { createPlacementPolicy, PLACEMENT_POLICIES } from '../../src/policy/placement/index.ts';
import type { PlacementRequest, WorkerSnapshot } from '../../src/policy/placement/index.ts';
import { localityScore } from '../../src/policy/placement/artifact-locality.ts';
import { pickBest, placeEach } from '../../src/policy/placement/candidates.ts';
import { kubernetesScore } from '../../src/policy/placement/kubernetes.ts';
import { freeFraction, usedFraction } from '../../src/policy/placement/scores.ts';

const RUNS = { numRuns: 150 };
const isEligible = (e: EndpointView): boolean => !e.isDraining && e.inflight < e.capacity;

const endpointsArb = fc.array(
  fc.record({ inflight: fc.nat(6), capacity: fc.integer({ min: 0, max: 6 }), isDraining: fc.boolean() }),
  { maxLength: 10 },
).map((list) => list.map((e, i): EndpointView => ({ sandboxId: `s${i}`, ...e })));

describe('load balancing properties', () => {
  it('(a) never returns a draining or full endpoint; undefined only when none is eligible', () => {
    fc.assert(fc.property(
      fc.constantFrom(...LOAD_BALANCING_POLICIES), fc.nat(), fc.array(fc.tuple(endpointsArb, fc.option(fc.string({ maxLength: 6 }), { nil: undefined })), { minLength: 1, maxLength: 8 }),
      (name, seed, calls) => {
        const lb = createLoadBalancer(name, { random: createRandom(seed) });
        for (const [endpoints, key] of calls) {
          const chosen = lb.pick(endpoints, key);
          if (chosen === undefined) assert.equal(endpoints.some(isEligible), false);
          else {
            assert.ok(endpoints.includes(chosen));
            assert.ok(isEligible(chosen));
          }
        }
      },
    ), RUNS);
  });

  it('(d) ch-bl: a picked endpoint never exceeds the bounded load at the moment of the pick', () => {
    const opArb = fc.oneof(
      fc.record({ kind: fc.constant('pick' as const), key: fc.option(fc.string({ maxLength: 4 }), { nil: undefined }) }),
      fc.record({ kind: fc.constant('complete' as const), index: fc.nat() }),
    );
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 20 }), fc.constantFrom(0, 0.1, 0.25, 1),
      fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }), fc.array(opArb, { maxLength: 120 }), fc.nat(),
      (count, capacity, epsilon, draining, ops, seed) => {
        const inflight = new Array<number>(count).fill(0);
        const lb = new ChBlBalancer(createRandom(seed), epsilon);
        for (const op of ops) {
          const endpoints = inflight.map((n, i): EndpointView => ({ sandboxId: `s${i}`, inflight: n, capacity, isDraining: draining[i] === true }));
          if (op.kind === 'complete') {
            const i = op.index % count;
            inflight[i] = Math.max(0, (inflight[i] ?? 0) - 1);
            continue;
          }
          const open = endpoints.filter((e) => !e.isDraining);
          const bound = boundedLoad(epsilon, open.reduce((sum, e) => sum + e.inflight, 0), open.length);
          const chosen = lb.pick(endpoints, op.key);
          if (chosen === undefined) {
            assert.equal(endpoints.some(isEligible), false);
            continue;
          }
          assert.ok(chosen.inflight + 1 <= bound, `load ${chosen.inflight + 1} over bound ${bound}`);
          const i = Number(chosen.sandboxId.slice(1));
          inflight[i] = (inflight[i] ?? 0) + 1;
        }
      },
    ), RUNS);
  });
});

const workersArb = fc.array(
  fc.record({
    cpu: fc.integer({ min: 0, max: 4_000 }),
    memory: fc.integer({ min: 0, max: 4_096 }),
    usedCpu: fc.integer({ min: 0, max: 4_500 }),
    usedMemory: fc.integer({ min: 0, max: 4_500 }),
    runtimes: fc.subarray(['process', 'container']),
    isSchedulable: fc.boolean(),
    cached: fc.boolean(),
  }),
  { maxLength: 8 },
).map((list) => list.map((w, i): WorkerSnapshot => ({
  id: `w${i}`,
  capacity: { cpuMilli: w.cpu, memoryMiB: w.memory },
  allocated: { cpuMilli: w.usedCpu, memoryMiB: w.usedMemory },
  runtimes: w.runtimes,
  isSchedulable: w.isSchedulable,
  cachedArtifacts: new Set(w.cached ? ['sha256:aa'] : []),
})));

const requestArb = fc.record({
  cpuMilli: fc.integer({ min: 1, max: 2_000 }),
  memoryMiB: fc.integer({ min: 1, max: 2_048 }),
  count: fc.nat(12),
}).map(({ cpuMilli, memoryMiB, count }): PlacementRequest => ({ function: 'f', runtime: 'process', artifact: 'sha256:aa', resources: { cpuMilli, memoryMiB }, count }));

describe('placement properties', () => {
  it('one sandbox by score: the single pass over the workers decides as filter → score → pick does', () => {
    // Few distinct sizes, so that equal scores (and the tie rules) come up often.
    const tieWorkersArb = fc.array(fc.record({
      cpu: fc.constantFrom(1_000, 2_000), memory: fc.constantFrom(1_000, 2_000),
      usedCpu: fc.constantFrom(0, 500, 1_000), usedMemory: fc.constantFrom(0, 500, 1_000),
      isSchedulable: fc.boolean(), cached: fc.boolean(),
    }), { maxLength: 10 }).map((list) => list.map((w, i): WorkerSnapshot => ({
      id: `w${i}`, capacity: { cpuMilli: w.cpu, memoryMiB: w.memory }, allocated: { cpuMilli: w.usedCpu, memoryMiB: w.usedMemory },
      runtimes: ['process'], isSchedulable: w.isSchedulable, cachedArtifacts: new Set(w.cached ? ['sha256:aa'] : []),
    })));
    const scored = [
      ['least-allocated', freeFraction, false], ['kubernetes', kubernetesScore, true],
      ['bin-packing', usedFraction, false], ['artifact-locality', localityScore, false],
    ] as const;
    fc.assert(fc.property(fc.constantFrom(...scored), fc.nat(), fc.oneof(workersArb, tieWorkersArb), requestArb, ([name, score, isRandomTie], seed, workers, anyRequest) => {
      const request = { ...anyRequest, count: 1 };
      const fast = createPlacementPolicy(name, { random: createRandom(seed) }).place(request, workers);
      const random = createRandom(seed);
      const general = placeEach(name, request, workers, (candidates) => pickBest(candidates, request, score, isRandomTie ? random : undefined));
      assert.deepEqual(fast.workerIds, general.workerIds);
      assert.equal(fast.unplaced, general.unplaced);
      assert.equal(fast.reason, general.reason);
    }), RUNS);
  });

  it('(b) never overcommits, picks only schedulable workers with the runtime, and places all that fit', () => {
    fc.assert(fc.property(fc.constantFrom(...PLACEMENT_POLICIES), fc.nat(), workersArb, requestArb, (name, seed, workers, request) => {
      const decision = createPlacementPolicy(name, { random: createRandom(seed) }).place(request, workers);
      assert.equal(decision.workerIds.length + decision.unplaced, request.count);
      const free = new Map(workers.map((w) => [w.id, { cpu: w.capacity.cpuMilli - w.allocated.cpuMilli, memory: w.capacity.memoryMiB - w.allocated.memoryMiB }]));
      for (const id of decision.workerIds) {
        const w = workers.find((x) => x.id === id);
        const room = free.get(id);
        assert.ok(w !== undefined && room !== undefined);
        assert.ok(w.isSchedulable && w.runtimes.includes('process'), `${id} is not eligible`);
        room.cpu -= request.resources.cpuMilli;
        room.memory -= request.resources.memoryMiB;
        assert.ok(room.cpu >= 0 && room.memory >= 0, `${id} overcommitted`);
      }
      if (decision.unplaced > 0) {
        const stillFits = workers.some((w) => {
          const room = free.get(w.id);
          return w.isSchedulable && w.runtimes.includes('process') && room !== undefined
            && room.cpu >= request.resources.cpuMilli && room.memory >= request.resources.memoryMiB;
        });
        assert.equal(stillFits, false, 'left a sandbox unplaced while a worker had room');
      }
    }), RUNS);
  });
});

const settingsArb = fc.record({
  targetPerSandbox: fc.double({ min: 0.01, max: 100, noNaN: true }),
  stableWindowMs: fc.integer({ min: 1_000, max: 120_000 }),
  panicThreshold: fc.double({ min: 1.1, max: 10, noNaN: true }),
  maxScaleUpRate: fc.double({ min: 1.01, max: 1_000, noNaN: true }),
  maxScaleDownRate: fc.double({ min: 1.01, max: 10, noNaN: true }),
  minScale: fc.nat(5),
  extraScale: fc.nat(50),
  scaleToZeroGraceMs: fc.nat(60_000),
}).map(({ extraScale, ...s }): KpaSettings => ({ ...s, panicWindowMs: Math.ceil(s.stableWindowMs / 10), maxScale: Math.max(1, s.minScale + extraScale) }));

const tickArb = fc.record({
  advanceMs: fc.nat(10_000),
  stableAverage: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 2_000, noNaN: true })),
  panicAverage: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 2_000, noNaN: true })),
  readySandboxes: fc.nat(120),
  currentScale: fc.nat(120),
});

describe('autoscaling properties', () => {
  it('(c) desired is an integer within [minScale, maxScale], and 0 only when minScale is 0', () => {
    fc.assert(fc.property(settingsArb, fc.array(tickArb, { minLength: 1, maxLength: 40 }), (settings, ticks) => {
      let state = INITIAL_KPA_STATE;
      let now = 0;
      for (const tick of ticks) {
        now += tick.advanceMs;
        const decision = computeDesiredScale({ now, settings, state, ...tick });
        assert.ok(Number.isInteger(decision.desired), decision.reason);
        assert.ok(decision.desired >= settings.minScale && decision.desired <= settings.maxScale, decision.reason);
        if (decision.desired === 0) assert.equal(settings.minScale, 0);
        state = decision.state;
      }
    }), RUNS);
  });
});
