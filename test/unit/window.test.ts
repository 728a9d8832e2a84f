import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BatonError } from '../../src/core/errors.ts';
import { ConcurrencyWindow } from '../../src/policy/autoscaling/window.ts';

/** 100-ms buckets, 1 s of history: 10 buckets. */
const newWindow = (): ConcurrencyWindow => new ConcurrencyWindow({ bucketMs: 100, maxWindowMs: 1_000 });

describe('ConcurrencyWindow', () => {
  it('sums the values recorded in one bucket', () => {
    const window = newWindow();
    window.record(0, 1);
    window.record(50, 2); //            same bucket [0, 100)
    window.record(99, 0.5);
    assert.equal(window.average(99, 1_000), 3.5);
  });

  it('divides a history shorter than the window by the shorter span', () => {
    const window = newWindow();
    window.record(0, 2);
    window.record(100, 4);
    assert.equal(window.average(100, 1_000), 3); // (2 + 4) / 2, not / 10
  });

  it('counts gaps between writes as zeros', () => {
    const window = newWindow();
    window.record(0, 6);
    window.record(300, 6); //           buckets 1 and 2 hold nothing
    assert.equal(window.average(300, 1_000), 3); // 12 / 4
  });

  it('leaves trailing buckets with no write yet out of the denominator', () => {
    const window = newWindow();
    window.record(0, 4);
    assert.equal(window.average(300, 1_000), 4);
  });

  it('averages only the buckets inside the asked window', () => {
    const window = newWindow();
    for (let i = 0; i < 10; i++) window.record(i * 100, i);
    assert.equal(window.average(900, 500), 7); //    buckets 5..9: 35 / 5
    assert.equal(window.average(900, 1_000), 4.5); // buckets 0..9: 45 / 10
    assert.equal(window.average(1_200, 500), 8.5); // window 8..12, written 8..9: 17 / 2
  });

  it('keeps only the newest buckets once the ring wraps', () => {
    const window = newWindow();
    for (let i = 0; i < 25; i++) window.record(i * 100, i);
    assert.equal(window.average(2_400, 1_000), 19.5); // buckets 15..24
    assert.equal(window.average(2_400, 300), 23); //    buckets 22..24
  });

  it('gives 0 once the data is older than the window', () => {
    const window = newWindow();
    window.record(0, 5);
    assert.equal(window.average(999, 1_000), 5);
    assert.equal(window.average(1_000, 1_000), 0);
    assert.equal(window.average(499, 500), 5);
    assert.equal(window.average(500, 500), 0);
    assert.equal(window.isEmpty(999), false);
    assert.equal(window.isEmpty(1_000), true);
  });

  it('starts over after a silence longer than the buffer', () => {
    const window = newWindow();
    window.record(0, 10);
    window.record(2_000, 2);
    assert.equal(window.average(2_000, 1_000), 2); // history starts again at 2 000
  });

  it('adds a late record to its bucket while it is still in the buffer, and drops older ones', () => {
    const window = newWindow();
    window.record(500, 4);
    window.record(300, 2); //           earlier than the first write: history now starts at bucket 3
    assert.equal(window.average(500, 1_000), 2); // (2 + 0 + 4) / 3
    window.record(1_000, 0);
    window.record(0, 100); //           bucket 0 is a whole buffer behind bucket 10: dropped
    assert.equal(window.average(1_000, 1_000), 0.75); // (2 + 0 + 4 + 0×5) / 8 over buckets 3..10
  });

  it('is empty before the first record and after reset', () => {
    const window = newWindow();
    assert.equal(window.isEmpty(), true);
    assert.equal(window.average(0, 1_000), 0);
    window.record(0, 1);
    assert.equal(window.isEmpty(), false);
    window.reset();
    assert.equal(window.isEmpty(), true);
    assert.equal(window.average(0, 1_000), 0);
    window.record(5_000, 3);
    assert.equal(window.average(5_000, 1_000), 3);
  });

  it('rejects bad sizes with ERR_INVALID_CONFIG', () => {
    const isConfigError = (err: unknown): boolean => err instanceof BatonError && err.code === 'ERR_INVALID_CONFIG';
    assert.throws(() => new ConcurrencyWindow({ bucketMs: 0, maxWindowMs: 1_000 }), isConfigError);
    assert.throws(() => new ConcurrencyWindow({ bucketMs: 100, maxWindowMs: 50 }), isConfigError);
    assert.throws(() => newWindow().average(0, 1_100), isConfigError);
    assert.throws(() => newWindow().average(0, 0), isConfigError);
  });
});
