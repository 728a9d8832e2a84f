import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { liveClock } from '../kit/live-clock.ts';
import { SegmentLog, type ReplayedRecord } from '../../src/dataplane/async/segment-log.ts';

/** The segment log against real files: replay, group commit, torn and corrupt tails, rolling. */

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'baton-seglog-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function newLog(dir: string, segmentMaxBytes = 1 << 20, groupCommitMs = 2): SegmentLog {
  return new SegmentLog({ dir, clock: liveClock, groupCommitMs, segmentMaxBytes });
}

async function replay(dir: string, segmentMaxBytes?: number): Promise<{ log: SegmentLog; records: ReplayedRecord[]; report: Awaited<ReturnType<SegmentLog['open']>> }> {
  const log = newLog(dir, segmentMaxBytes);
  const records: ReplayedRecord[] = [];
  const report = await log.open((r) => records.push(r));
  return { log, records, report };
}

test('records appended together are replayed in order, with their bodies, after one fsync per batch', async (t) => {
  const dir = await tempDir(t);
  const { log } = await replay(dir);
  const appends = Array.from({ length: 500 }, (_, i) => log.append({ i }, Buffer.from(`body-${i}`)).durable);
  await Promise.all(appends);
  assert.ok(log.fsyncs < 50, `500 appends in one turn cost ${log.fsyncs} fsyncs`);
  await log.close();
  const again = await replay(dir);
  t.after(() => again.log.close());
  assert.equal(again.records.length, 500);
  assert.deepEqual(again.records.map((r) => (r.header as { i: number }).i), Array.from({ length: 500 }, (_, i) => i));
  assert.equal(again.records[7]?.body.toString(), 'body-7');
  assert.deepEqual(again.report.corrupt, []);
});

test('natural group commit (no wait): records appended during a flush form the next batch; an idle append is one fsync', async (t) => {
  const dir = await tempDir(t);
  const log = newLog(dir, 1 << 20, 0);
  await log.open(() => undefined);
  t.after(() => log.close());
  const first = log.append({ i: 0 }).durable;
  // The flush of the first record starts in the next turn; the 300 appended once it is in flight wait for its fsync.
  await new Promise<void>((resolve) => setImmediate(resolve));
  const during = Array.from({ length: 300 }, (_, i) => log.append({ i: i + 1 }, Buffer.from(`body-${i}`)).durable);
  await Promise.all([first, ...during]);
  assert.equal(log.fsyncs, 2, 'one fsync for the first record, one for the 300 that arrived during it');
  const sameTurn = Array.from({ length: 200 }, (_, i) => log.append({ i: 301 + i }).durable);
  await Promise.all(sameTurn);
  assert.equal(log.fsyncs, 3, '200 records appended in one idle turn: one fsync');
  await log.append({ i: 'alone' }).durable;
  assert.equal(log.fsyncs, 4);
  await log.close();
  const records: ReplayedRecord[] = [];
  const again = newLog(dir);
  await again.open((r) => records.push(r));
  t.after(() => again.close());
  assert.deepEqual(records.map((r) => (r.header as { i: unknown }).i), [...Array.from({ length: 501 }, (_, i) => i), 'alone']);
});

test('close flushes what is pending and waits for the flush in flight, and the batch that follows it', async (t) => {
  const dir = await tempDir(t);
  const log = newLog(dir, 1 << 20, 0);
  await log.open(() => undefined);
  const durable = [log.append({ i: 0 }).durable];
  await new Promise<void>((resolve) => setImmediate(resolve));
  for (let i = 1; i <= 100; i++) durable.push(log.append({ i }).durable);
  const closed = log.close();
  assert.equal(log.close(), closed, 'a second close is the same');
  await closed;
  await Promise.all(durable);
  assert.throws(() => log.append({ i: 'late' }), /closed/);
  const records: ReplayedRecord[] = [];
  const again = newLog(dir);
  await again.open((r) => records.push(r));
  t.after(() => again.close());
  assert.deepEqual(records.map((r) => (r.header as { i: number }).i), Array.from({ length: 101 }, (_, i) => i));
});

async function lastSegmentFile(dir: string): Promise<string> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.log')).sort();
  const sizes = await Promise.all(files.map(async (f) => (await stat(path.join(dir, f))).size));
  const nonEmpty = files.filter((_, i) => (sizes[i] ?? 0) > 0);
  return path.join(dir, nonEmpty.at(-1) as string);
}

test('a torn last record (a short write) is detected, cut off and never replayed; appends continue', async (t) => {
  const dir = await tempDir(t);
  const { log } = await replay(dir);
  for (let i = 0; i < 10; i++) await log.append({ i }, Buffer.from('x'.repeat(100))).durable;
  await log.close();
  const file = await lastSegmentFile(dir);
  const size = (await stat(file)).size;
  await truncate(file, size - 37);
  const second = await replay(dir);
  assert.equal(second.records.length, 9);
  assert.equal(second.report.corrupt.length, 1);
  assert.match(second.report.corrupt[0]?.reason ?? '', /torn/);
  assert.ok((await stat(file)).size < size - 37, 'the torn tail was cut off the file');
  await second.log.append({ i: 'after' }).durable;
  await second.log.close();
  const third = await replay(dir);
  t.after(() => third.log.close());
  assert.deepEqual(third.records.map((r) => (r.header as { i: unknown }).i), [0, 1, 2, 3, 4, 5, 6, 7, 8, 'after']);
  assert.deepEqual(third.report.corrupt, []);
});

test('a corrupt record (flipped bytes) and garbage after the last record are detected by the checksum', async (t) => {
  const dir = await tempDir(t);
  const { log } = await replay(dir);
  for (let i = 0; i < 5; i++) await log.append({ i, text: 'hello' }).durable;
  await log.close();
  const file = await lastSegmentFile(dir);
  const data = await readFile(file);
  data[data.length - 3] = (data[data.length - 3] as number) ^ 0xff;
  await writeFile(file, data);
  const flipped = await replay(dir);
  assert.equal(flipped.records.length, 4);
  assert.equal(flipped.report.corrupt[0]?.reason, 'checksum mismatch');
  await flipped.log.close();

  await appendFile(await lastSegmentFile(dir), Buffer.from([0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]));
  const garbage = await replay(dir);
  t.after(() => garbage.log.close());
  assert.equal(garbage.records.length, 4);
  assert.equal(garbage.report.corrupt.length, 1);
});

test('segments roll at their size limit, and a dropped segment is deleted (never the active one)', async (t) => {
  const dir = await tempDir(t);
  const { log } = await replay(dir, 4096);
  const placed: number[] = [];
  for (let i = 0; i < 40; i++) {
    const { segment, durable } = log.append({ i }, Buffer.alloc(500, 1));
    placed.push(segment);
    await durable;
  }
  const segments = [...new Set(placed)];
  assert.ok(segments.length >= 4, `40 × ~530 bytes in 4 KiB segments: ${segments.length}`);
  await log.drop(segments[0] as number);
  await log.drop(log.activeSegment);
  assert.ok(!log.segments.includes(segments[0] as number));
  assert.ok(log.segments.includes(log.activeSegment));
  await log.close();
  const again = await replay(dir, 4096);
  t.after(() => again.log.close());
  assert.equal(again.records.length, 40 - placed.filter((s) => s === segments[0]).length);
});
