import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatInvitroCsv, INVITRO_CSV_HEADER } from '../../src/loadgen/invitro-csv.ts';
import { recordsFromRows } from '../../src/loadgen/records.ts';

describe('formatInvitroCsv', () => {
  it('writes Invitro\'s columns in µs with min<m>.inv<k> ids and failure flags', () => {
    const records = recordsFromRows([
      { function: 'tf1-0', requestedExecMs: 100, minute: 0, scheduledMs: 0, sentMs: 0.5, endMs: 120.5, status: 200, execUs: 100_250 },
      { function: 'tf1-0', requestedExecMs: 90, minute: 0, scheduledMs: 10, sentMs: 10, endMs: 30, status: 503, error: 'ERR_QUEUE_FULL' },
      { function: 'tf2-1', requestedExecMs: 5, minute: 1, scheduledMs: 60_000, sentMs: 60_000, endMs: 75_000, status: 0, error: 'TIMEOUT' },
      { function: 'tf1-0', requestedExecMs: 100, minute: 1, scheduledMs: 60_001, sentMs: 60_001, endMs: 60_101, status: 200, execUs: 100_000 },
    ]);
    const lines = formatInvitroCsv(records, { startWallMs: 1_700_000_000_000, warmupMinutes: 1 }).trimEnd().split('\n');
    assert.equal(lines[0], INVITRO_CSV_HEADER);
    assert.deepEqual(lines.slice(1), [
      '1,tf1-0,min0.inv0,1700000000000500,100000,0,120000,100250,false,false,0,false,0,0,0',
      '1,tf1-0,min0.inv1,1700000000010000,90000,0,20000,0,false,true,0,false,0,0,0',
      '2,tf2-1,min1.inv0,1700000060000000,5000,0,15000000,0,true,false,0,false,0,0,0',
      '2,tf1-0,min1.inv0,1700000060001000,100000,0,100000,100000,false,false,0,false,0,0,0',
    ]);
  });
});
