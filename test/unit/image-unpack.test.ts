import assert from 'node:assert/strict';
import { lstat, mkdir, mkdtemp, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { digestOf, unpackArchive } from '../../src/core/archive.ts';
import { BatonError } from '../../src/core/errors.ts';
import { dockerSaveArchiveOf, ociArchiveOf, tarOf, type TarEntry } from '../../src/core/oci-archive.ts';
import { systemClock } from '../../src/core/clock.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { ImageStore } from '../../src/worker/container/image-store.ts';

const ARCHIVE_LIMITS = { maxPackedBytes: 8 << 20, maxUnpackedBytes: 8 << 20, maxEntries: 1000 };
const LOGGER = createLogger({ name: 'test', level: 'silent' });

interface Fixture {
  readonly root: string;
  readonly store: ImageStore;
  /** Unpacks the archive as the artifact cache does, then the image from it. */
  unpack(archive: Buffer): ReturnType<ImageStore['ensure']>;
}

async function fixture(t: TestContext, limits = { maxEntries: 1000, maxBytes: 8 << 20 }): Promise<Fixture> {
  const root = await mkdtemp(path.join(tmpdir(), 'baton-image-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const store = new ImageStore({ dir: path.join(root, 'images'), limits, clock: systemClock, logger: LOGGER });
  await store.load();
  return {
    root, store,
    async unpack(archive) {
      const dir = path.join(root, 'artifacts', digestOf(archive).slice(7));
      await unpackArchive(archive, dir, ARCHIVE_LIMITS).catch((err: unknown) => {
        if (!(err instanceof BatonError && err.code === 'ERR_INTERNAL')) throw err;
      });
      return store.ensure(dir);
    },
  };
}

const base: TarEntry[] = [
  { type: 'dir', path: 'etc/' },
  { type: 'file', path: 'etc/os-release', data: 'ID=baton\n' },
  { type: 'dir', path: 'app/' },
  { type: 'file', path: 'app/a.txt', data: 'a' },
  { type: 'file', path: 'app/b.txt', data: 'b' },
  { type: 'dir', path: 'data/' },
  { type: 'file', path: 'data/old.txt', data: 'old' },
];

test('an OCI image archive unpacks into a base with the image config and mount points', async (t) => {
  const f = await fixture(t);
  const archive = ociArchiveOf([tarOf(base)], {
    Entrypoint: ['/bin/app'], Cmd: ['--serve'], Env: ['A=1'], WorkingDir: '/app', User: '1000:1000', ExposedPorts: { '8080/tcp': {} },
  });
  const image = await f.unpack(archive);
  assert.match(image.digest, /^sha256:[0-9a-f]{64}$/);
  assert.equal(await readFile(path.join(image.rootfs, 'app/a.txt'), 'utf8'), 'a');
  assert.deepEqual(image.config, {
    entrypoint: ['/bin/app'], cmd: ['--serve'], env: ['A=1'], workingDir: '/app', user: '1000:1000', exposedPorts: [8080],
  });
  for (const dir of ['proc', 'dev', 'sys', 'tmp']) assert.ok((await stat(path.join(image.rootfs, dir))).isDirectory());
  assert.match(await readFile(path.join(image.rootfs, 'etc/resolv.conf'), 'utf8'), /nameserver 127\.0\.0\.1/);
  assert.ok(image.unpackMs >= 0);
  const again = await f.unpack(archive);
  assert.equal(again.unpackMs, 0, 'a second use unpacks nothing');
});

test('later layers apply whiteouts, opaque directories, replacements and hard links', async (t) => {
  const f = await fixture(t);
  const upper = tarOf([
    { type: 'file', path: 'app/.wh.a.txt', data: '' },
    { type: 'dir', path: 'data/' },
    { type: 'file', path: 'data/.wh..wh..opq', data: '' },
    { type: 'file', path: 'data/new.txt', data: 'new' },
    { type: 'file', path: './etc/os-release', data: 'ID=upper\n', mode: 0o4755 },
    { type: 'hardlink', path: 'app/b-link.txt', target: 'app/b.txt' },
    { type: 'symlink', path: 'bin', target: '/usr/bin' },
  ]);
  const image = await f.unpack(ociArchiveOf([tarOf(base), upper], {}));
  await assert.rejects(lstat(path.join(image.rootfs, 'app/a.txt')), { code: 'ENOENT' });
  await assert.rejects(lstat(path.join(image.rootfs, 'data/old.txt')), { code: 'ENOENT' });
  assert.equal(await readFile(path.join(image.rootfs, 'data/new.txt'), 'utf8'), 'new');
  assert.equal(await readFile(path.join(image.rootfs, 'etc/os-release'), 'utf8'), 'ID=upper\n');
  assert.equal((await stat(path.join(image.rootfs, 'etc/os-release'))).mode & 0o7777, 0o755, 'set-uid dropped');
  assert.equal((await stat(path.join(image.rootfs, 'app/b-link.txt'))).ino, (await stat(path.join(image.rootfs, 'app/b.txt'))).ino);
  assert.equal(await readlink(path.join(image.rootfs, 'bin')), '/usr/bin', 'absolute symlink targets stay (they resolve inside the container)');
  assert.deepEqual(image.config.entrypoint, []);
  assert.equal(image.config.workingDir, '/');
});

test('a docker-save archive (plain tar) unpacks the same way', async (t) => {
  const f = await fixture(t);
  const image = await f.unpack(dockerSaveArchiveOf([tarOf(base), tarOf([{ type: 'file', path: 'app/.wh.b.txt', data: '' }])], { Cmd: ['sh'] }));
  assert.equal(await readFile(path.join(image.rootfs, 'app/a.txt'), 'utf8'), 'a');
  await assert.rejects(lstat(path.join(image.rootfs, 'app/b.txt')), { code: 'ENOENT' });
  assert.deepEqual(image.config.cmd, ['sh']);
});

/** Each hostile layer, on top of `base`, must be refused and leave the host untouched. */
const hostile: { name: string; layer: (outside: string) => TarEntry[]; message: RegExp }[] = [
  { name: '../ in a path', layer: () => [{ type: 'file', path: 'app/../../escape.txt', data: 'x' }], message: /'\.\.'/ },
  { name: 'an absolute path', layer: (outside) => [{ type: 'file', path: `${outside}/abs.txt`, data: 'x' }], message: /absolute/ },
  {
    name: 'a file written through a symlink out of the tree',
    layer: (outside) => [{ type: 'symlink', path: 'evil', target: outside }, { type: 'file', path: 'evil/through.txt', data: 'x' }],
    message: /through the symlink "evil"/,
  },
  {
    name: 'a relative symlink climbing out, then written through',
    layer: () => [{ type: 'symlink', path: 'app/up', target: '../../../../..' }, { type: 'dir', path: 'app/up/tmp/' }],
    message: /through the symlink "app\/up"/,
  },
  { name: 'a hard link out of the tree', layer: () => [{ type: 'hardlink', path: 'app/passwd', target: '../../../etc/passwd' }], message: /'\.\.'/ },
  { name: 'an absolute hard link', layer: () => [{ type: 'hardlink', path: 'app/passwd', target: '/etc/passwd' }], message: /absolute/ },
  {
    name: 'a hard link through a symlink',
    layer: () => [{ type: 'symlink', path: 'hostetc', target: '/etc' }, { type: 'hardlink', path: 'app/passwd', target: 'hostetc/passwd' }],
    message: /goes through a symlink/,
  },
  { name: 'a whiteout of a path outside', layer: () => [{ type: 'file', path: '../.wh.victim', data: '' }], message: /'\.\.'/ },
  {
    name: 'a whiteout through a symlink',
    layer: (outside) => [{ type: 'symlink', path: 'out', target: outside }, { type: 'file', path: 'out/.wh.victim', data: '' }],
    message: /through the symlink "out"/,
  },
  { name: 'a character device', layer: () => [{ type: 'chardev', path: 'dev-null' }], message: /device node/ },
  { name: 'a block device', layer: () => [{ type: 'blockdev', path: 'sda' }], message: /device node/ },
  { name: 'a FIFO', layer: () => [{ type: 'fifo', path: 'pipe' }], message: /FIFO/ },
];

for (const { name, layer, message } of hostile) {
  test(`image unpacking refuses ${name}`, async (t) => {
    const f = await fixture(t);
    const outside = path.join(f.root, 'outside');
    await mkdir(outside);
    await writeFile(path.join(outside, 'victim'), 'keep me');
    const archive = ociArchiveOf([tarOf(base), tarOf(layer(outside))], {});
    await assert.rejects(f.unpack(archive), (err: unknown) => {
      assert.ok(err instanceof BatonError, String(err));
      assert.equal(err.code, 'ERR_INVALID_ARTIFACT');
      assert.match(err.message, message);
      return true;
    });
    assert.equal(await readFile(path.join(outside, 'victim'), 'utf8'), 'keep me');
    for (const stray of ['through.txt', 'abs.txt', 'escape.txt']) await assert.rejects(lstat(path.join(outside, stray)), { code: 'ENOENT' });
    await assert.rejects(lstat(path.join(f.root, 'escape.txt')), { code: 'ENOENT' });
    const images = await import('node:fs/promises').then((fs) => fs.readdir(path.join(f.root, 'images')));
    assert.deepEqual(images, [], 'nothing of a refused image stays');
  });
}

test('an image over its entry or byte budget is refused', async (t) => {
  const f = await fixture(t, { maxEntries: 5, maxBytes: 8 << 20 });
  await assert.rejects(f.unpack(ociArchiveOf([tarOf(base)], {})), { code: 'ERR_ARTIFACT_TOO_LARGE' });
  const g = await fixture(t, { maxEntries: 100, maxBytes: 2 });
  await assert.rejects(g.unpack(ociArchiveOf([tarOf(base)], {})), { code: 'ERR_ARTIFACT_TOO_LARGE' });
});

test('an archive that is no image, or whose blob does not match its digest, is refused', async (t) => {
  const f = await fixture(t);
  await assert.rejects(f.unpack(tarOf([{ type: 'file', path: 'hello.txt', data: 'hi' }])), { code: 'ERR_INVALID_ARTIFACT', message: /neither an OCI image layout/ });
  const good = ociArchiveOf([tarOf(base)], {});
  const dir = path.join(f.root, 'tampered');
  await unpackArchive(good, dir, ARCHIVE_LIMITS);
  const blobs = path.join(dir, 'blobs', 'sha256');
  const { readdir } = await import('node:fs/promises');
  for (const name of await readdir(blobs)) {
    const data = await readFile(path.join(blobs, name));
    if (data[0] === 0x1f) await writeFile(path.join(blobs, name), Buffer.concat([data, Buffer.from('x')]));
  }
  await assert.rejects(f.store.ensure(dir), { code: 'ERR_INVALID_ARTIFACT', message: /does not hash to its digest/ });
});
