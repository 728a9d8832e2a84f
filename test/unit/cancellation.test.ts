import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cancellation } from '../../src/core/cancellation.ts';

test('a cancellation aborts once: listeners in order, once each; removed and late ones never', () => {
  const cancel = new Cancellation();
  const calls: string[] = [];
  const a = () => calls.push('a');
  const b = () => calls.push('b');
  const c = () => calls.push('c');
  cancel.addEventListener('abort', a);
  cancel.addEventListener('abort', b);
  cancel.addEventListener('abort', c);
  cancel.removeEventListener('abort', b);
  assert.equal(cancel.aborted, false);
  assert.doesNotThrow(() => cancel.throwIfAborted());
  const reason = new Error('deleted');
  cancel.abort(reason);
  cancel.abort(new Error('again'));
  cancel.addEventListener('abort', () => calls.push('late'));
  assert.deepEqual(calls, ['a', 'c']);
  assert.equal(cancel.aborted, true);
  assert.equal(cancel.reason, reason, 'the first reason stays');
  assert.throws(() => cancel.throwIfAborted(), reason);
});

test('a listener that throws does not stop the others, and its error is rethrown from a microtask', () => {
  const cancel = new Cancellation();
  const calls: string[] = [];
  cancel.addEventListener('abort', () => { throw new Error('listener failed'); });
  cancel.addEventListener('abort', () => calls.push('second'));
  const queued: (() => void)[] = [];
  const original = globalThis.queueMicrotask;
  globalThis.queueMicrotask = (fn) => { queued.push(fn); };
  try {
    cancel.abort();
  } finally {
    globalThis.queueMicrotask = original;
  }
  assert.deepEqual(calls, ['second']);
  assert.equal(queued.length, 1);
  assert.throws(() => queued[0]!(), /listener failed/);
  assert.equal((cancel.reason as DOMException).name, 'AbortError', 'the default reason is an AbortError, as AbortController gives');
});

test('toAbortSignal gives a real AbortSignal that follows the cancellation, made before or after it aborted', () => {
  const before = new Cancellation();
  const signal = before.toAbortSignal();
  assert.ok(signal instanceof AbortSignal);
  assert.equal(before.toAbortSignal(), signal, 'one per cancellation');
  let fired = 0;
  signal.addEventListener('abort', () => fired++);
  before.abort('gone');
  assert.equal(signal.aborted, true);
  assert.equal(signal.reason, 'gone');
  assert.equal(fired, 1);
  const after = new Cancellation();
  after.abort('already');
  assert.equal(after.toAbortSignal().aborted, true);
  assert.equal(after.toAbortSignal().reason, 'already');
});
