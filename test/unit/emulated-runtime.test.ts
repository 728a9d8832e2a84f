import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import type { SandboxFunction } from '../../src/api/worker.ts';
import { BatonError } from '../../src/core/errors.ts';
import { createRandom } from '../../src/core/random.ts';
import { EmulatedRuntime } from '../../src/worker/emulated/emulated-runtime.ts';
import { parseLatencySpec } from '../../src/worker/emulated/latency-spec.ts';
import { ManualClock } from '../kit/manual-clock.ts';

const fn = (name: string): SandboxFunction => ({
  name, generation: 1, runtime: 'emulated', concurrency: 1, timeoutMs: 1000, env: {}, resources: { cpuMilli: 100, memoryMiB: 128 },
});

function setup(latency = '40ms') {
  const clock = new ManualClock();
  const runtime = new EmulatedRuntime({ address: '127.0.0.1:7000', latency: parseLatencySpec(latency), random: createRandom(1), clock });
  return { clock, runtime };
}

test('creation takes the configured latency and yields the shared address', async () => {
  const { clock, runtime } = setup('40ms');
  let started: unknown;
  const creating = runtime.create('s1', fn('a'), '', new AbortController().signal).then((s) => { started = s; return s; });
  clock.advance(39);
  await turn();
  assert.equal(started, undefined);
  clock.advance(1);
  assert.deepEqual(await creating, { address: '127.0.0.1:7000', startMs: 40, readyMs: 0 });
  assert.equal(runtime.readyCount, 1);
  assert.deepEqual(runtime.logs('s1'), { sandboxId: 's1', lines: [], dropped: 0 });
  assert.equal(runtime.logs('nope'), undefined);
});

test('aborting a creation rejects it and leaves nothing behind', async () => {
  const { clock, runtime } = setup('uniform:10-20');
  const abort = new AbortController();
  const creating = runtime.create('s1', fn('a'), '', abort.signal);
  abort.abort(new BatonError('ERR_SANDBOX_START_FAILED', 'deleted while starting'));
  await assert.rejects(creating, (err) => err instanceof BatonError && err.code === 'ERR_SANDBOX_START_FAILED');
  clock.advance(100);
  assert.equal(runtime.readyCount, 0);
  assert.equal(clock.pendingTimers, 0);
});

test('knows which functions have ready sandboxes, and forgets deleted ones', async () => {
  const { clock, runtime } = setup('0');
  const signal = new AbortController().signal;
  const created = [runtime.create('s1', fn('a'), '', signal), runtime.create('s2', fn('a'), '', signal), runtime.create('s3', fn('b'), '', signal)];
  clock.advance(0);
  await Promise.all(created);
  assert.ok(runtime.hasFunction('a') && runtime.hasFunction('b'));
  assert.equal(runtime.soleFunction(), undefined);
  await runtime.delete('s3');
  assert.equal(runtime.hasFunction('b'), false);
  assert.equal(runtime.soleFunction(), 'a');
  await runtime.delete('s1');
  assert.equal(runtime.soleFunction(), 'a');
  await runtime.delete('s2');
  await runtime.delete('unknown');
  assert.equal(runtime.soleFunction(), undefined);
});

test('close rejects creations still waiting', async () => {
  const { runtime } = setup('1000');
  const creating = runtime.create('s1', fn('a'), '', new AbortController().signal);
  await runtime.close();
  await assert.rejects(creating, (err) => err instanceof BatonError && err.code === 'ERR_SHUTTING_DOWN');
});
