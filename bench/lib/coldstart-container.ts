import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import type { SandboxFunction } from '../../src/api/worker.ts';
import { unpackArchive } from '../../src/core/archive.ts';
import { systemClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { buildImage } from '../../src/cli/image/image-builder.ts';
import { SandboxCgroups } from '../../src/worker/container/cgroups.ts';
import { execTool } from '../../src/worker/container/exec.ts';
import { ImageStore } from '../../src/worker/container/image-store.ts';
import { buildOciConfig } from '../../src/worker/container/oci-config.ts';
import { ROOT } from '../../test/kit/cluster.ts';

/**
 * A bare `crun run` of the same bundle the worker would write: the image unpacked by the same
 * ImageStore, the same config.json, cgroups with the same limits, one network namespace with a
 * veth made once up front (what the worker's pool provides). Times spawn → first 200.
 */
export interface BareCrun {
  run(i: number): Promise<number>;
  close(): Promise<void>;
}

export async function prepareBareCrun(image: Buffer): Promise<BareCrun> {
  const dir = await mkdtemp(join(tmpdir(), 'baton-bench-crun-'));
  const tag = `bn${Math.floor(Math.random() * 0xffff).toString(16).padStart(4, '0')}`;
  await unpackArchive(image, join(dir, 'artifact'), { maxPackedBytes: 1 << 28, maxUnpackedBytes: 1 << 30, maxEntries: 100_000 });
  const store = new ImageStore({ dir: join(dir, 'images'), limits: { maxBytes: 1 << 30, maxEntries: 100_000 }, clock: systemClock, logger: silentLogger() });
  const unpacked = await store.ensure(join(dir, 'artifact'));
  const netns = `baton-${tag}-bare`;
  const third = 1 + Math.floor(Math.random() * 250);
  const host = `10.214.${third}.1`;
  const inside = `10.214.${third}.2`;
  await execTool('ip', ['netns', 'add', netns]);
  await execTool('ip', ['-batch', '-'], { input: `link add bv${tag} type veth peer name eth0 netns ${netns}\naddr add ${host}/30 dev bv${tag}\nlink set bv${tag} up\n` });
  await execTool('ip', ['-n', netns, '-batch', '-'], { input: `addr add ${inside}/30 dev eth0\nlink set eth0 up\nlink set lo up\n` });
  const cgroups = new SandboxCgroups(tag);
  const runnerDir = join(dir, 'runner');
  await mkdir(runnerDir);
  await writeFile(join(runnerDir, 'handler-runner.cjs'), await import('node:fs/promises').then((fs) => fs.readFile(join(ROOT, 'src/worker/process/handler-runner.cjs'))));
  const fn: SandboxFunction = {
    name: 'bare', generation: 1, runtime: 'container', handler: 'index.handler', concurrency: 1, timeoutMs: 60_000, env: {},
    resources: { cpuMilli: 1000, memoryMiB: 256, maxPids: 256 },
  };
  const stateRoot = join(dir, 'crun');
  return {
    async run(i) {
      const id = `bare-${i}`;
      await cgroups.create(id, { memoryMiB: 256, cpuMilli: 1000, maxPids: 256 });
      const bundle = join(dir, 'bundles', id);
      await mkdir(bundle, { recursive: true });
      const config = buildOciConfig(unpacked.config, fn, {
        sandboxId: id, rootfs: unpacked.rootfs, uid: 64_000, gid: 64_000, port: 8080, netnsPath: `/var/run/netns/${netns}`,
        cgroupsPath: cgroups.crunPath(id), runnerDir, tmpMiB: 64,
      });
      await writeFile(join(bundle, 'config.json'), JSON.stringify(config));
      const started = performance.now();
      const child = spawn('crun', ['--root', stateRoot, 'run', '--bundle', bundle, '--no-new-keyring', id], { stdio: 'ignore', env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } });
      try {
        for (;;) {
          try {
            const res = await request(`http://${inside}:8080/`, { reset: true });
            await res.body.text();
            if (res.statusCode === 200) return performance.now() - started;
          } catch {
            await new Promise((r) => setTimeout(r, 1));
          }
          if (performance.now() - started > 10_000) throw new Error('bare crun run did not answer within 10 s');
        }
      } finally {
        await execTool('crun', ['--root', stateRoot, 'kill', id, 'KILL']).catch(() => undefined);
        await once(child, 'exit');
        await execTool('crun', ['--root', stateRoot, 'delete', '--force', id]).catch(() => undefined);
        await cgroups.remove(id);
      }
    },
    async close() {
      await execTool('ip', ['netns', 'delete', netns]).catch(() => undefined);
      await cgroups.removeAll();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The hello example as a Node handler image. */
export function helloImage(): Promise<Buffer> {
  return buildImage({ dir: join(ROOT, 'examples/hello'), base: 'node', handler: 'index.handler' });
}
