import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { gzipSync } from 'node:zlib';
import { Header } from 'tar';
import { inspectArchive, unpackArchive, type ArchiveLimits } from '../../src/core/archive.ts';
import { BatonError } from '../../src/core/errors.ts';
import { controlPlaneConfigSchema } from '../../src/controlplane/config.ts';
import { startControlPlane } from '../../src/controlplane/main.ts';
import { systemClock } from '../../src/core/clock.ts';
import { dockerSaveArchiveOf } from '../../src/core/oci-archive.ts';
import { createLogger, silentLogger } from '../../src/observability/logger.ts';
import { ImageStore } from '../../src/worker/container/image-store.ts';

// Gzip bombs of ≥ 1 GiB of zeros, made without ever holding the zeros: a gzip file may be several
// members one after the other, and gunzip inflates them all, so one member of 1 MiB of zeros
// (≈ 1 KiB) repeated 1024 times is a 1 MiB file that inflates to 1 GiB.
const MiB = 1024 * 1024;
const zerosMember = gzipSync(Buffer.alloc(MiB), { level: 9 });

function bomb(gibibytes: number, prefix: Buffer = Buffer.alloc(0)): Buffer {
  const members = Array.from({ length: gibibytes * 1024 }, () => zerosMember);
  return Buffer.concat([...(prefix.length === 0 ? [] : [gzipSync(prefix)]), ...members]);
}

/** A well-formed tar (one small file, the end-of-archive blocks) to put in front of the zeros. */
function smallTar(): Buffer {
  const block = Buffer.alloc(512);
  new Header({ path: 'index.js', type: 'File', mode: 0o644, size: 2, uid: 0, gid: 0, mtime: new Date(0) }).encode(block);
  const data = Buffer.alloc(512);
  data.write('//');
  return Buffer.concat([block, data, Buffer.alloc(1024)]);
}

/** A tar header declaring one file of `size` bytes, whose data is then the bomb's zeros. */
function bigFileHeader(size: number): Buffer {
  const block = Buffer.alloc(512);
  new Header({ path: 'big.bin', type: 'File', mode: 0o644, size, uid: 0, gid: 0, mtime: new Date(0) }).encode(block);
  return block;
}

const LIMITS: ArchiveLimits = { maxPackedBytes: 64 * MiB, maxUnpackedBytes: 512 * MiB, maxEntries: 100_000 };

async function refusal(promise: Promise<unknown>): Promise<BatonError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof BatonError, `a BatonError, not ${String(err)}`);
    return err;
  }
  assert.fail('the bomb was accepted');
}

/** Runs `fn` while sampling this process's RSS; returns the most it grew by. */
async function rssGrowth(fn: () => Promise<void>): Promise<number> {
  const base = process.memoryUsage.rss();
  let peak = base;
  const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage.rss()); }, 5);
  try {
    await fn();
  } finally {
    clearInterval(sampler);
  }
  return Math.max(peak, process.memoryUsage.rss()) - base;
}

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'baton-bomb-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('a gzip of 1 GiB of zeros (an empty tar and the rest) is refused as soon as more than the tar\'s padding follows its end, with bounded memory, on inspection and on unpacking', async (t) => {
  const dir = await tempDir(t);
  for (const [label, archive] of [['zeros only', bomb(1)], ['a small tar, then zeros', bomb(1, smallTar())]] as const) {
    let inspected: BatonError | undefined;
    let unpacked: BatonError | undefined;
    const growth = await rssGrowth(async () => {
      inspected = await refusal(inspectArchive(archive, LIMITS));
      unpacked = await refusal(unpackArchive(archive, path.join(dir, label.replaceAll(' ', '-')), LIMITS));
    });
    assert.equal(inspected?.code, 'ERR_INVALID_ARTIFACT', `${label}: ${inspected?.message}`);
    assert.match(inspected?.message ?? '', /follow the end of the tar/);
    assert.equal(unpacked?.code, 'ERR_INVALID_ARTIFACT', `${label}: ${unpacked?.message}`);
    assert.ok(growth < 128 * MiB, `${label}: memory grew by ${Math.round(growth / MiB)} MiB`);
  }
  assert.deepEqual(await readdir(dir), [], 'nothing was left on disk');
});

test('a file entry that inflates past the unpacked limit is refused at its header, and one that lies about its size stops at the decompressed limit', async () => {
  const limits = { ...LIMITS, maxUnpackedBytes: 64 * MiB };
  const declared = await refusal(inspectArchive(bomb(1, bigFileHeader(1024 * MiB)), limits));
  assert.equal(declared.code, 'ERR_ARTIFACT_TOO_LARGE');
  // Declares 60 MiB (under the limit), then 1 GiB of zeros follows: the zeros past the declared
  // size are read as headers (null blocks: the end of the archive), then as trailing data.
  let lying: BatonError | undefined;
  const growth = await rssGrowth(async () => { lying = await refusal(inspectArchive(bomb(1, bigFileHeader(60 * MiB)), limits)); });
  assert.ok(lying?.code === 'ERR_INVALID_ARTIFACT' || lying?.code === 'ERR_ARTIFACT_TOO_LARGE', String(lying?.code));
  assert.ok(growth < 128 * MiB, `memory grew by ${Math.round(growth / MiB)} MiB`);
});

test('an image layer that is a gzip of 1 GiB of zeros, or of a lying tar, is refused with bounded memory (the worker\'s image unpacking)', async (t) => {
  const dir = await tempDir(t);
  const store = new ImageStore({ dir: path.join(dir, 'images'), limits: { maxEntries: 1000, maxBytes: 64 * MiB }, clock: systemClock, logger: createLogger({ name: 'test', level: 'silent' }) });
  await store.load();
  const layers = [['zeros only', bomb(1)], ['a small tar, then zeros', bomb(1, smallTar())], ['a file larger than declared', bomb(1, bigFileHeader(60 * MiB))]] as const;
  for (const [i, [label, layer]] of layers.entries()) {
    const archive = dockerSaveArchiveOf([layer], {});
    const unpacked = path.join(dir, `artifact-${i}`);
    await unpackArchive(archive, unpacked, LIMITS);
    let refused: BatonError | undefined;
    const growth = await rssGrowth(async () => { refused = await refusal(store.ensure(unpacked)); });
    assert.ok(refused?.code === 'ERR_INVALID_ARTIFACT' || refused?.code === 'ERR_ARTIFACT_TOO_LARGE', `${label}: ${String(refused?.code)} ${refused?.message}`);
    assert.ok(growth < 128 * MiB, `${label}: memory grew by ${Math.round(growth / MiB)} MiB`);
  }
  assert.deepEqual((await readdir(path.join(dir, 'images'))).filter((name) => !name.startsWith('.')), [], 'no image was kept');
});

test('PUT /v1/artifacts with a gzip bomb is answered with a code, stores nothing, and the control plane serves on', async (t) => {
  const dataDir = await tempDir(t);
  const cp = await startControlPlane(controlPlaneConfigSchema.parse({ authMode: 'none', port: 0, dataDir, logLevel: 'silent' }), { logger: silentLogger() });
  t.after(() => cp.close());
  const archive = bomb(2);
  let answer: { status: number; body: { error?: { code?: string } } } | undefined;
  const growth = await rssGrowth(async () => {
    const res = await fetch(`${cp.url}/v1/artifacts`, { method: 'PUT', body: archive, headers: { 'content-type': 'application/gzip' } });
    answer = { status: res.status, body: await res.json() as { error?: { code?: string } } };
  });
  assert.equal(answer?.status, 400, JSON.stringify(answer?.body));
  assert.equal(answer?.body.error?.code, 'ERR_INVALID_ARTIFACT');
  assert.ok(growth < 192 * MiB, `memory grew by ${Math.round(growth / MiB)} MiB`);
  const list = await fetch(`${cp.url}/v1/functions`);
  assert.equal(list.status, 200);
  const good = await fetch(`${cp.url}/v1/artifacts`, { method: 'PUT', body: gzipSync(smallTar()) });
  assert.equal(good.status, 201, await good.text());
});
