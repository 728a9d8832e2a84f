import assert from 'node:assert/strict';
import { chmod, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { Header, Pax } from 'tar';
import { digestOf, inspectArchive, packDirectory, unpackArchive, type ArchiveLimits } from '../../src/core/archive.ts';
import { BatonError, type ErrorCode } from '../../src/core/errors.ts';

const LIMITS: ArchiveLimits = { maxPackedBytes: 1 << 20, maxUnpackedBytes: 1 << 20, maxEntries: 100 };

interface RawEntry {
  path: string;
  type?: 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'FIFO' | 'CharacterDevice' | 'BlockDevice';
  data?: string | Buffer;
  linkpath?: string;
  mode?: number;
  /** Declared size when it must differ from the data's. */
  size?: number;
}

/** Builds a gzipped tar by hand from headers, so that any (malicious) entry can be expressed. */
function craft(entries: readonly RawEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const data = typeof entry.data === 'string' ? Buffer.from(entry.data) : entry.data ?? Buffer.alloc(0);
    const block = Buffer.alloc(512);
    const fields = {
      path: entry.path, type: entry.type ?? 'File', mode: entry.mode ?? 0o644, size: entry.size ?? data.length,
      uid: 0, gid: 0, mtime: new Date(0), uname: '', gname: '',
      ...(entry.linkpath === undefined ? {} : { linkpath: entry.linkpath }),
    };
    if (new Header(fields).encode(block)) blocks.push(new Pax({ path: entry.path }).encode());
    blocks.push(block, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'baton-archive-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function assertRefused(t: { after(fn: () => Promise<void>): void }, tgz: Buffer, code: ErrorCode, limits = LIMITS): Promise<void> {
  const root = await tempDir(t);
  const dest = path.join(root, 'out');
  await assert.rejects(inspectArchive(tgz, limits), (err) => err instanceof BatonError && err.code === code);
  await assert.rejects(unpackArchive(tgz, dest, limits), (err) => err instanceof BatonError && err.code === code);
  assert.deepEqual(await readdir(root), [], 'nothing may be written');
}

test('packDirectory is deterministic, skips .git and round-trips through unpackArchive', async (t) => {
  const src = await tempDir(t);
  await mkdir(path.join(src, 'lib/deep'), { recursive: true });
  await mkdir(path.join(src, '.git'));
  await writeFile(path.join(src, '.git/HEAD'), 'ref');
  await writeFile(path.join(src, 'index.js'), 'export const a = 1;\n');
  await writeFile(path.join(src, 'lib/deep/data.txt'), 'x'.repeat(1000));
  await writeFile(path.join(src, 'run.sh'), '#!/bin/sh\n');
  await chmod(path.join(src, 'run.sh'), 0o700);
  await symlink('../index.js', path.join(src, 'lib/entry.js'));
  await writeFile(path.join(src, `${'n'.repeat(120)}.txt`), 'long name');

  const first = await packDirectory(src);
  await utimes(path.join(src, 'index.js'), new Date(5_000_000), new Date(5_000_000));
  const second = await packDirectory(src);
  assert.equal(digestOf(first), digestOf(second));
  assert.match(digestOf(first), /^sha256:[0-9a-f]{64}$/);

  const summary = await inspectArchive(first, LIMITS);
  assert.equal(summary.entryCount, 7);
  const dest = path.join(await tempDir(t), 'artifact');
  await unpackArchive(first, dest, LIMITS);
  assert.equal(await readFile(path.join(dest, 'index.js'), 'utf8'), 'export const a = 1;\n');
  assert.equal(await readFile(path.join(dest, 'lib/deep/data.txt'), 'utf8'), 'x'.repeat(1000));
  assert.equal(await readlink(path.join(dest, 'lib/entry.js')), '../index.js');
  assert.equal(await readFile(path.join(dest, `${'n'.repeat(120)}.txt`), 'utf8'), 'long name');
  assert.equal((await lstat(path.join(dest, 'run.sh'))).mode & 0o111, 0o111);
  await assert.rejects(lstat(path.join(dest, '.git')));
  assert.deepEqual((await readdir(path.dirname(dest))), ['artifact'], 'no temporary directory is left');
});

test('unpackArchive strips set-uid bits and accepts links inside the tree', async (t) => {
  const tgz = craft([
    { path: 'bin/', type: 'Directory', mode: 0o755 },
    { path: 'bin/tool', data: 'x', mode: 0o4755 },
    { path: 'data/', type: 'Directory' },
    { path: 'bin/data', type: 'SymbolicLink', linkpath: '../data' },
    { path: 'self', type: 'SymbolicLink', linkpath: '.' },
  ]);
  const dest = path.join(await tempDir(t), 'a');
  await unpackArchive(tgz, dest, LIMITS);
  assert.equal((await lstat(path.join(dest, 'bin/tool'))).mode & 0o7000, 0);
});

const refusals: readonly [string, RawEntry[], ErrorCode][] = [
  ['an absolute path', [{ path: '/tmp/evil', data: 'x' }], 'ERR_INVALID_ARTIFACT'],
  ['a .. segment', [{ path: '../evil', data: 'x' }], 'ERR_INVALID_ARTIFACT'],
  ['a nested .. segment', [{ path: 'a/../../evil', data: 'x' }], 'ERR_INVALID_ARTIFACT'],
  ['a harmless-looking .. segment', [{ path: 'a/../b', data: 'x' }], 'ERR_INVALID_ARTIFACT'],
  ['a symlink with an absolute target', [{ path: 'passwd', type: 'SymbolicLink', linkpath: '/etc/passwd' }], 'ERR_INVALID_ARTIFACT'],
  ['a symlink out of the tree', [{ path: 'a/up', type: 'SymbolicLink', linkpath: '../../outside' }], 'ERR_INVALID_ARTIFACT'],
  ['a symlink chain out of the tree', [
    { path: 'b', type: 'SymbolicLink', linkpath: '.' },
    { path: 'a', type: 'SymbolicLink', linkpath: 'b/..' },
  ], 'ERR_INVALID_ARTIFACT'],
  ['a symlink loop', [
    { path: 'x', type: 'SymbolicLink', linkpath: 'y' },
    { path: 'y', type: 'SymbolicLink', linkpath: 'x' },
  ], 'ERR_INVALID_ARTIFACT'],
  ['a file written through a symlink', [
    { path: 'sub/', type: 'Directory' },
    { path: 'link', type: 'SymbolicLink', linkpath: 'sub' },
    { path: 'link/file', data: 'x' },
  ], 'ERR_INVALID_ARTIFACT'],
  ['a hard link', [{ path: 'a', data: 'x' }, { path: 'b', type: 'Link', linkpath: 'a' }], 'ERR_INVALID_ARTIFACT'],
  ['a FIFO', [{ path: 'pipe', type: 'FIFO' }], 'ERR_INVALID_ARTIFACT'],
  ['a character device', [{ path: 'null', type: 'CharacterDevice' }], 'ERR_INVALID_ARTIFACT'],
  ['a block device', [{ path: 'sda', type: 'BlockDevice' }], 'ERR_INVALID_ARTIFACT'],
  ['a duplicate file', [{ path: 'a', data: 'x' }, { path: 'a', data: 'y' }], 'ERR_INVALID_ARTIFACT'],
  ['a file replaced by a symlink', [{ path: 'a', data: 'x' }, { path: 'a', type: 'SymbolicLink', linkpath: 'b' }], 'ERR_INVALID_ARTIFACT'],
  ['too many entries', Array.from({ length: 101 }, (_, i) => ({ path: `f${i}`, data: '' })), 'ERR_ARTIFACT_TOO_LARGE'],
  ['too many unpacked bytes', [{ path: 'big', data: Buffer.alloc((1 << 20) + 1) }], 'ERR_ARTIFACT_TOO_LARGE'],
];

for (const [what, entries, code] of refusals) {
  test(`refuses ${what} with ${code}, writing nothing`, async (t) => {
    // A valid entry first, so a writer that did not validate everything up front would leave it behind.
    await assertRefused(t, craft([{ path: 'ok.txt', data: 'fine' }, ...entries]), code);
  });
}

test('refuses data that is not a gzipped tar', async (t) => {
  await assertRefused(t, Buffer.from('plain text, not gzip'), 'ERR_INVALID_ARTIFACT');
  await assertRefused(t, gzipSync(Buffer.from('gzip but not a tar archive '.repeat(40))), 'ERR_INVALID_ARTIFACT');
  await assertRefused(t, gzipSync(craft([{ path: 'a', data: 'x' }])), 'ERR_INVALID_ARTIFACT');
  const truncated = gzipSync(gunzipPrefix(craft([{ path: 'a', data: 'x'.repeat(4000) }]), 1024));
  await assertRefused(t, truncated, 'ERR_INVALID_ARTIFACT');
});

test('refuses an artifact over the packed limit', async (t) => {
  const tgz = craft([{ path: 'a', data: 'x' }]);
  await assertRefused(t, tgz, 'ERR_ARTIFACT_TOO_LARGE', { ...LIMITS, maxPackedBytes: tgz.length - 1 });
});

test('stops a gzip bomb whose headers lie about sizes', async (t) => {
  // A header that declares 1 byte followed by megabytes of zeros: the zeros end the archive, and
  // what follows its end is refused once it is more than a record's padding.
  const header = Buffer.alloc(512);
  new Header({ path: 'a', type: 'File', size: 1, mode: 0o644, mtime: new Date(0) }).encode(header);
  const bomb = gzipSync(Buffer.concat([header, Buffer.alloc(8 << 20)]));
  await assertRefused(t, bomb, 'ERR_INVALID_ARTIFACT');
  // Non-zero bytes past a declared size are read as headers and refused as such; the raw stream is bounded too.
  const noise = gzipSync(Buffer.concat([header, Buffer.alloc(512), Buffer.alloc(8 << 20, 0x41)]));
  await assertRefused(t, noise, 'ERR_INVALID_ARTIFACT');
});

test('unpackArchive refuses to replace an existing directory', async (t) => {
  const dest = path.join(await tempDir(t), 'a');
  await mkdir(dest);
  await assert.rejects(unpackArchive(craft([{ path: 'a', data: 'x' }]), dest, LIMITS));
});

function gunzipPrefix(tgz: Buffer, bytes: number): Buffer {
  return Buffer.from(gunzipSync(tgz).subarray(0, bytes));
}
