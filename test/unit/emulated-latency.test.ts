import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BatonError } from '../../src/core/errors.ts';
import { createRandom } from '../../src/core/random.ts';
import { parseWorkerConfig, workerRuntimeOf } from '../../src/worker/config.ts';
import { MAX_LATENCY_MS, parseLatencySpec, sampleLatencyMs } from '../../src/worker/emulated/latency-spec.ts';

test('parses the fixed, uniform and log-normal forms', () => {
  assert.deepEqual(parseLatencySpec('0'), { kind: 'fixed', ms: 0 });
  assert.deepEqual(parseLatencySpec('40'), { kind: 'fixed', ms: 40 });
  assert.deepEqual(parseLatencySpec('40ms'), { kind: 'fixed', ms: 40 });
  assert.deepEqual(parseLatencySpec(' 2.5ms '), { kind: 'fixed', ms: 2.5 });
  assert.deepEqual(parseLatencySpec('uniform:20-60'), { kind: 'uniform', minMs: 20, maxMs: 60 });
  assert.deepEqual(parseLatencySpec('lognormal:median=40,sigma=0.5'), { kind: 'lognormal', medianMs: 40, sigma: 0.5 });
});

for (const bad of ['', 'fast', '-5', '40s', 'uniform:60-20', 'uniform:20', 'lognormal:median=0,sigma=1', 'lognormal:sigma=1,median=4',
  'lognormal:median=40,sigma=6', `${MAX_LATENCY_MS + 1}ms`, 'normal:40']) {
  test(`refuses '${bad}' with ERR_INVALID_CONFIG`, () => {
    assert.throws(() => parseLatencySpec(bad), (err) => err instanceof BatonError && err.code === 'ERR_INVALID_CONFIG' && err.message.includes(`'${bad}'`));
  });
}

test('a fixed latency is always itself', () => {
  const random = createRandom(1);
  for (let i = 0; i < 10; i++) assert.equal(sampleLatencyMs({ kind: 'fixed', ms: 40 }, random), 40);
});

test('uniform samples stay in range and the same seed repeats them', () => {
  const spec = parseLatencySpec('uniform:20-60');
  const a = createRandom(42);
  const b = createRandom(42);
  const samples = Array.from({ length: 1000 }, () => sampleLatencyMs(spec, a));
  assert.deepEqual(samples, Array.from({ length: 1000 }, () => sampleLatencyMs(spec, b)));
  assert.ok(samples.every((ms) => ms >= 20 && ms < 60));
  const mean = samples.reduce((s, ms) => s + ms, 0) / samples.length;
  assert.ok(Math.abs(mean - 40) < 2, `mean ${mean}`);
});

test('log-normal samples have the given median and are capped', () => {
  const spec = parseLatencySpec('lognormal:median=40,sigma=0.5');
  const random = createRandom(7);
  const samples = Array.from({ length: 4001 }, () => sampleLatencyMs(spec, random)).sort((x, y) => x - y);
  const median = samples[2000] as number;
  assert.ok(Math.abs(median - 40) < 3, `median ${median}`);
  assert.ok(samples.every((ms) => ms > 0 && ms <= MAX_LATENCY_MS));
  // σ 0.5: the 97.5th percentile is 40·e^(0.98) ≈ 107 ms.
  const p975 = samples[3900] as number;
  assert.ok(p975 > 90 && p975 < 125, `p97.5 ${p975}`);
  const wide = parseLatencySpec('lognormal:median=50000,sigma=5');
  assert.ok(Array.from({ length: 200 }, () => sampleLatencyMs(wide, random)).every((ms) => ms <= MAX_LATENCY_MS));
});

test('the worker config parses the latency once and names the key when it is bad', () => {
  assert.deepEqual(parseWorkerConfig({ emulatedCreateLatency: 'uniform:1-2' }).emulatedCreateLatency, { kind: 'uniform', minMs: 1, maxMs: 2 });
  assert.deepEqual(parseWorkerConfig({}).emulatedCreateLatency, { kind: 'fixed', ms: 0 });
  assert.throws(() => parseWorkerConfig({ emulatedCreateLatency: 'soon' }),
    (err) => err instanceof BatonError && err.code === 'ERR_INVALID_CONFIG' && err.message.includes('emulatedCreateLatency'));
});

test('emulate > 0 implies the emulated runtime and refuses the process one', () => {
  assert.equal(workerRuntimeOf(parseWorkerConfig({})), 'process');
  assert.equal(workerRuntimeOf(parseWorkerConfig({ runtime: 'emulated' })), 'emulated');
  assert.equal(workerRuntimeOf(parseWorkerConfig({ emulate: 3 })), 'emulated');
  assert.equal(workerRuntimeOf(parseWorkerConfig({ emulate: 3, runtime: 'emulated' })), 'emulated');
  assert.throws(() => parseWorkerConfig({ emulate: 3, runtime: 'process' }),
    (err) => err instanceof BatonError && err.code === 'ERR_INVALID_CONFIG' && err.message.includes('runtime'));
});

test('the emulated workers\' ports must fit below 65536', () => {
  assert.equal(parseWorkerConfig({ emulate: 10, emulatedPort: 65_526 }).emulatedPort, 65_526);
  assert.throws(() => parseWorkerConfig({ emulate: 11, emulatedPort: 65_526 }),
    (err) => err instanceof BatonError && err.code === 'ERR_INVALID_CONFIG' && err.message.includes('emulatedPort'));
});
