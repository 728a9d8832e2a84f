import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { BatonError } from '../../src/core/errors.ts';
import { parseTrace, readTrace, traceFunctionName } from '../../src/loadgen/trace.ts';
import type { TraceFiles } from '../../src/loadgen/trace.ts';

const FIXTURE = join(import.meta.dirname, '..', 'fixtures', 'azure2019-example');

async function fixtureFiles(): Promise<TraceFiles> {
  const read = (f: string): Promise<string> => readFile(join(FIXTURE, f), 'utf8');
  return { invocationsCsv: await read('invocations.csv'), durationsCsv: await read('durations.csv'), memoryCsv: await read('memory.csv') };
}

const DUR_HEADER = 'HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,percentile_Average_1,percentile_Average_25,percentile_Average_50,percentile_Average_75,percentile_Average_99,percentile_Average_100';
const MEM_HEADER = 'HashOwner,HashApp,HashFunction,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1,AverageAllocatedMb_pct5,AverageAllocatedMb_pct25,AverageAllocatedMb_pct50,AverageAllocatedMb_pct75,AverageAllocatedMb_pct95,AverageAllocatedMb_pct99,AverageAllocatedMb_pct100';
const small = (over: Partial<TraceFiles> = {}): TraceFiles => ({
  invocationsCsv: 'HashOwner,HashApp,HashFunction,Trigger,540,541,542\no,a,f1,http,1,0,3\no,a,f2,timer,2,2,2\n',
  durationsCsv: `${DUR_HEADER}\no,a,f1,100,10,99,101,99,99,99,100,101,101,101\no,a,f2,5,10,1,9,1,2,3,4,5,6,9\n`,
  memoryCsv: `${MEM_HEADER}\no,a,f1,10,120,100,102,114,123,127,136,143,152\no,a,f2,10,120,100,102,114,123,127,136,143,152\n`,
  ...over,
});

function assertInvalid(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => err instanceof BatonError && err.code === 'ERR_INVALID_REQUEST' && pattern.test(err.message));
}

describe('parseTrace', () => {
  it('reads the Azure 2019 example: 4 functions, 1440 minutes, joined stats', async () => {
    const trace = await readTrace(FIXTURE);
    assert.equal(trace.minutes, 1440);
    assert.equal(trace.issues.length, 0);
    assert.equal(trace.functions.length, 4);
    const [f1, f2] = trace.functions;
    assert.ok(f1 && f2);
    assert.equal(f1.name, 'tc13acdc7567b225971-0');
    assert.equal(f1.trigger.length > 0, true);
    assert.equal(f1.perMinute.reduce((a, b) => a + b, 0), 1150); // 5 per minute, minutes 0–229
    assert.equal(f1.perMinute[0], 5);
    assert.equal(f2.perMinute[4], 0);
    assert.equal(f2.perMinute[5], 5);
    assert.deepEqual(f1.durations.percentilesMs, [99, 99, 99, 100, 101, 101, 101]);
    assert.equal(f1.durations.averageMs, 100);
    assert.equal(f2.durations.averageMs, 500);
    assert.deepEqual(f1.memory.percentilesMiB, [100, 102, 114, 123, 127, 136, 143, 152]);
  });

  it('ignores minute column names and reads stats columns by name in any order', () => {
    const reordered = 'HashFunction,Count,HashOwner,HashApp,Average,Minimum,Maximum,percentile_Average_0,percentile_Average_1,percentile_Average_25,percentile_Average_50,percentile_Average_75,percentile_Average_99,percentile_Average_100';
    const trace = parseTrace(small({ durationsCsv: `${reordered}\r\nf1,10,o,a,100,99,101,99,99,99,100,101,101,101\r\n\r\nf2,10,o,a,5,1,9,1,2,3,4,5,6,9\r\n` }));
    assert.equal(trace.minutes, 3);
    assert.deepEqual([...(trace.functions[0]?.perMinute ?? [])], [1, 0, 3]);
    assert.deepEqual(trace.functions[1]?.durations.percentilesMs, [1, 2, 3, 4, 5, 6, 9]);
  });

  it('starts minutes at index 3 without a Trigger column', () => {
    const trace = parseTrace(small({ invocationsCsv: 'HashOwner,HashApp,HashFunction,1,2\no,a,f1,7,8\n' }));
    assert.deepEqual([...(trace.functions[0]?.perMinute ?? [])], [7, 8]);
    assert.equal(trace.functions[0]?.trigger, '');
  });

  it('reports functions missing from durations or memory, or with unusable stats, and keeps the others', () => {
    const trace = parseTrace(small({
      durationsCsv: `${DUR_HEADER}\no,a,f1,100,0,99,101,99,99,99,100,101,101,101\n`,
      memoryCsv: `${MEM_HEADER}\no,a,f1,10,120,100,102,114,123,127,136,143,152\n`,
    }));
    assert.equal(trace.functions.length, 0);
    assert.deepEqual(trace.issues.map((i) => [i.kind, i.hashFunction]), [
      ['invalid-durations', 'f1'], ['missing-durations', 'f2'], ['missing-memory', 'f2'],
    ]);
    const decreasing = parseTrace(small({ durationsCsv: `${DUR_HEADER}\no,a,f1,100,10,99,101,99,99,99,100,101,101,101\no,a,f2,5,10,1,9,1,2,3,4,5,9,6\n` }));
    assert.deepEqual(decreasing.issues.map((i) => i.kind), ['invalid-durations']);
    assert.match(decreasing.issues[0]?.message ?? '', /durations\.csv line 3: the percentiles decrease/);
  });

  it('names file, line and column for malformed input', () => {
    assertInvalid(() => parseTrace(small({ invocationsCsv: 'HashOwner,HashApp,HashFunction,Trigger,1,2\no,a,f1,http,1,x\n' })),
      /^invocations\.csv line 2 column 6: minute count "x"/);
    assertInvalid(() => parseTrace(small({ invocationsCsv: 'HashOwner,HashApp,HashFunction,Trigger,1,2\no,a,f1,http,1,-2\n' })),
      /line 2 column 6/);
    assertInvalid(() => parseTrace(small({ invocationsCsv: 'HashOwner,HashApp,HashFunction,Trigger,1,2\no,a,f1,http,1\n' })),
      /^invocations\.csv line 2: has 5 cells, the header has 6/);
    assertInvalid(() => parseTrace(small({ invocationsCsv: 'Owner,HashApp,HashFunction,Trigger,1\n' })), /line 1: .*HashOwner/);
    assertInvalid(() => parseTrace(small({ invocationsCsv: 'HashOwner,HashApp,HashFunction,Trigger,1\no,a,f1,http,1\no,a,f1,http,2\n' })),
      /line 3 column 3: HashFunction repeats line 2/);
    assertInvalid(() => parseTrace(small({ durationsCsv: `${DUR_HEADER}\no,a,f1,100,10,99,101,99,99,99,abc,101,101,101\n` })),
      /^durations\.csv line 2 column 11: percentile_Average_50 "abc" is not a number/);
    assertInvalid(() => parseTrace(small({ memoryCsv: 'HashOwner,HashApp,HashFunction,SampleCount\n' })),
      /^memory\.csv line 1: the header has no AverageAllocatedMb column/);
    assertInvalid(() => parseTrace(small({ durationsCsv: '' })), /^durations\.csv line 1: the file is empty/);
  });

  it('puts file, line and column in the error details', () => {
    try {
      parseTrace(small({ invocationsCsv: 'HashOwner,HashApp,HashFunction,Trigger,1\n\no,a,f1,http,1.5\n' }));
      assert.fail('expected an error');
    } catch (err) {
      assert.ok(err instanceof BatonError);
      assert.deepEqual(err.details, { file: 'invocations.csv', line: 3, column: 5, problem: 'minute count "1.5" is not a non-negative integer' });
    }
  });

  it('makes valid, deterministic function names', () => {
    assert.equal(traceFunctionName('C13ACDC7567B225971cef', 3), 'tc13acdc7567b225971-3');
    assert.equal(traceFunctionName('f1', 0), 'tf1-0');
  });
});
