import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, pipeline, type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { Clock } from '../../core/clock.ts';
import { BatonError } from '../../core/errors.ts';
import type { Logger } from '../../observability/logger.ts';
import { applyLayer, normalizeLayerPath, type LayerBudget, type LayerLimits } from './layer-extract.ts';

/** The parts of an OCI image config the container runtime honours. */
export interface ImageConfig {
  readonly entrypoint: readonly string[];
  readonly cmd: readonly string[];
  readonly env: readonly string[];
  readonly workingDir: string;
  readonly user: string;
  /** Ports from `ExposedPorts` (`8080/tcp` → 8080), in order. */
  readonly exposedPorts: readonly number[];
}

export interface UnpackedImage {
  /** `sha256:…` of the image (its manifest, or its config for a docker-save archive). */
  readonly digest: string;
  /** The read-only base every sandbox of the image shares. */
  readonly rootfs: string;
  readonly config: ImageConfig;
  /** Time spent unpacking for this request (0 when the image was already there), ms. */
  readonly unpackMs: number;
}

interface Layout {
  readonly digest: string;
  readonly configPath: string;
  readonly layerPaths: readonly string[];
}

const DIGEST = /^sha256:([0-9a-f]{64})$/;
const INDEX_TYPES = new Set(['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json']);
/** Mount points crun needs in the root; made in the base, since the root is read-only and shared. */
const MOUNT_POINTS = ['proc', 'dev', 'sys', 'tmp', 'baton'];
/** Nothing inside a sandbox may wait on a resolver: there is none, and lookups fail at once. */
const RESOLV_CONF = 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n';
const HOSTS = '127.0.0.1 localhost\n::1 localhost\n';

/**
 * Images unpacked once per image digest under `<dir>/<hex>/` (`rootfs/` + `image.json`), from an
 * unpacked image archive: the OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) or
 * the docker-save layout (`manifest.json`, layer tars). Layers are applied in order by
 * `applyLayer` (whiteouts honoured, escapes and device nodes refused) into a temporary directory
 * renamed into place, so a base appears whole or not at all. Blobs must hash to their digests.
 */
export class ImageStore {
  readonly #dir: string;
  readonly #limits: LayerLimits;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #ready = new Map<string, Promise<UnpackedImage>>();

  constructor(options: { dir: string; limits: LayerLimits; clock: Clock; logger: Logger }) {
    this.#dir = options.dir;
    this.#limits = options.limits;
    this.#clock = options.clock;
    this.#logger = options.logger;
  }

  /** Removes half-done unpacks a previous run left. */
  async load(): Promise<void> {
    await mkdir(this.#dir, { recursive: true });
    for (const name of await readdir(this.#dir)) {
      if (name.startsWith('.tmp-')) await rm(path.join(this.#dir, name), { recursive: true, force: true });
    }
  }

  /**
   * The image in the unpacked archive `archiveDir`, unpacking its layers first when this worker
   * has not yet. Concurrent calls for one archive share the work.
   * @throws BatonError ERR_INVALID_ARTIFACT (not an image, a hostile layer), ERR_ARTIFACT_TOO_LARGE
   */
  async ensure(archiveDir: string): Promise<UnpackedImage> {
    const startedAt = this.#clock.now();
    let pending = this.#ready.get(archiveDir);
    let isFirst = false;
    if (pending === undefined) {
      isFirst = true;
      pending = this.#load(archiveDir);
      this.#ready.set(archiveDir, pending);
      pending.catch(() => this.#ready.delete(archiveDir));
    }
    const image = await pending;
    return isFirst ? { ...image, unpackMs: this.#clock.now() - startedAt } : { ...image, unpackMs: 0 };
  }

  async #load(archiveDir: string): Promise<UnpackedImage> {
    const layout = await readLayout(archiveDir);
    const hex = (DIGEST.exec(layout.digest) as RegExpExecArray)[1] as string;
    const dest = path.join(this.#dir, hex);
    const config = parseImageConfig(await readFile(layout.configPath, 'utf8'));
    if (!(await exists(path.join(dest, 'image.json')))) await this.#unpack(layout, dest, config);
    return { digest: layout.digest, rootfs: path.join(dest, 'rootfs'), config, unpackMs: 0 };
  }

  async #unpack(layout: Layout, dest: string, config: ImageConfig): Promise<void> {
    await mkdir(this.#dir, { recursive: true });
    const tmp = path.join(this.#dir, `.tmp-${path.basename(dest)}-${randomBytes(6).toString('hex')}`);
    const rootfs = path.join(tmp, 'rootfs');
    await mkdir(rootfs, { recursive: true, mode: 0o755 });
    try {
      const budget: LayerBudget = { entries: 0, bytes: 0 };
      for (const layerPath of layout.layerPaths) await applyLayer(await openLayer(layerPath), rootfs, this.#limits, budget);
      await prepareRoot(rootfs);
      await writeFile(path.join(tmp, 'image.json'), JSON.stringify({ digest: layout.digest, config }));
      await rm(dest, { recursive: true, force: true });
      await rename(tmp, dest);
      this.#logger.info({ image: layout.digest, layers: layout.layerPaths.length, entries: budget.entries, bytes: budget.bytes }, 'image unpacked');
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
  }
}

/** Finds the manifest of an OCI layout or a docker-save archive and checks the blobs it names. */
export async function readLayout(archiveDir: string): Promise<Layout> {
  if (await exists(path.join(archiveDir, 'index.json'))) return readOciLayout(archiveDir);
  if (await exists(path.join(archiveDir, 'manifest.json'))) return readDockerLayout(archiveDir);
  throw invalid('the artifact is neither an OCI image layout (index.json) nor a docker-save archive (manifest.json)');
}

async function readOciLayout(dir: string): Promise<Layout> {
  let descriptor = firstManifest(await readJson(path.join(dir, 'index.json')), 'index.json');
  for (let depth = 0; INDEX_TYPES.has(descriptor.mediaType); depth++) {
    if (depth > 4) throw invalid('image indexes nest too deep');
    descriptor = firstManifest(await readJson(await verifiedBlob(dir, descriptor.digest)), descriptor.digest);
  }
  const manifest = await readJson(await verifiedBlob(dir, descriptor.digest)) as { config?: { digest?: unknown }; layers?: unknown };
  if (typeof manifest.config?.digest !== 'string' || !Array.isArray(manifest.layers)) throw invalid(`manifest ${descriptor.digest} has no config or layers`);
  const layerPaths: string[] = [];
  for (const layer of manifest.layers as { digest?: unknown }[]) layerPaths.push(await verifiedBlob(dir, String(layer.digest)));
  return { digest: descriptor.digest, configPath: await verifiedBlob(dir, manifest.config.digest), layerPaths };
}

function firstManifest(index: unknown, where: string): { digest: string; mediaType: string } {
  const manifests = (index as { manifests?: unknown }).manifests;
  if (!Array.isArray(manifests) || manifests.length === 0) throw invalid(`${where} lists no manifest`);
  const all = manifests as { digest?: unknown; mediaType?: unknown; platform?: { os?: unknown; architecture?: unknown } }[];
  const picked = all.find((m) => m.platform === undefined || (m.platform.os === 'linux' && m.platform.architecture === hostArchitecture())) ?? all[0];
  if (typeof picked?.digest !== 'string') throw invalid(`${where} has a manifest without a digest`);
  return { digest: picked.digest, mediaType: typeof picked.mediaType === 'string' ? picked.mediaType : '' };
}

async function readDockerLayout(dir: string): Promise<Layout> {
  const manifest = await readJson(path.join(dir, 'manifest.json'));
  const first = (Array.isArray(manifest) ? manifest[0] : undefined) as { Config?: unknown; Layers?: unknown } | undefined;
  if (typeof first?.Config !== 'string' || !Array.isArray(first.Layers)) throw invalid('manifest.json has no Config or Layers');
  const configPath = inside(dir, first.Config);
  const digest = `sha256:${createHash('sha256').update(await readFile(configPath)).digest('hex')}`;
  return { digest, configPath, layerPaths: (first.Layers as unknown[]).map((layer) => inside(dir, String(layer))) };
}

/** `blobs/sha256/<hex>`, after checking that the file hashes to its name. */
async function verifiedBlob(dir: string, digest: string): Promise<string> {
  const match = DIGEST.exec(digest);
  if (match === null) throw invalid(`${JSON.stringify(digest)} is not a sha256 digest`);
  const blob = path.join(dir, 'blobs', 'sha256', match[1] as string);
  if (!(await exists(blob))) throw invalid(`blob ${digest} is missing from the archive`);
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(blob)) hash.update(chunk as Buffer);
  if (hash.digest('hex') !== match[1]) throw invalid(`blob ${digest} does not hash to its digest`);
  return blob;
}

/** A path named by the archive, which must stay inside it. */
function inside(dir: string, rel: string): string {
  const normalized = normalizeLayerPath(rel);
  if (normalized === '') throw invalid(`${JSON.stringify(rel)} names no file`);
  return path.join(dir, normalized);
}

/** The layer's tar stream: gzip is undone, a plain tar passes, anything else is refused. */
async function openLayer(file: string): Promise<Readable> {
  const head = Buffer.alloc(4);
  const handle = await open(file, 'r');
  try {
    await handle.read(head, 0, 4, 0);
  } finally {
    await handle.close();
  }
  const raw = createReadStream(file);
  // pipeline: when the layer is refused midway (the gunzip destroyed), the file is closed too.
  if (head[0] === 0x1f && head[1] === 0x8b) return pipeline(raw, createGunzip(), () => undefined);
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) {
    raw.destroy();
    throw invalid(`layer ${path.basename(file)} is zstd-compressed; re-export the image with gzip layers`);
  }
  return raw.pipe(new PassThrough());
}

/** Mount points, and a resolv.conf and hosts that cannot hang a lookup. */
async function prepareRoot(rootfs: string): Promise<void> {
  for (const name of MOUNT_POINTS) {
    await rm(path.join(rootfs, name), { recursive: true, force: true }).catch(() => undefined);
    await mkdir(path.join(rootfs, name), { mode: 0o755 });
  }
  await mkdir(path.join(rootfs, 'etc'), { recursive: true, mode: 0o755 });
  for (const [name, text] of [['resolv.conf', RESOLV_CONF], ['hosts', HOSTS]] as const) {
    const file = path.join(rootfs, 'etc', name);
    await rm(file, { force: true, recursive: true });
    await writeFile(file, text, { mode: 0o644 });
  }
}

/** The fields of an image config's `config` object that Baton honours. */
export function parseImageConfig(text: string): ImageConfig {
  let parsed: { config?: Record<string, unknown> | null };
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    throw invalid('the image config is not JSON');
  }
  const c = parsed.config ?? {};
  const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
  const ports = Object.keys((c['ExposedPorts'] ?? {}) as Record<string, unknown>)
    .map((key) => /^(\d+)(\/tcp)?$/.exec(key)).filter((m) => m !== null).map((m) => Number(m[1])).filter((p) => p > 0 && p < 65_536);
  return {
    entrypoint: strings(c['Entrypoint']), cmd: strings(c['Cmd']), env: strings(c['Env']),
    workingDir: typeof c['WorkingDir'] === 'string' && c['WorkingDir'] !== '' ? c['WorkingDir'] : '/',
    user: typeof c['User'] === 'string' ? c['User'] : '', exposedPorts: ports,
  };
}

async function readJson(file: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as unknown;
  } catch (err) {
    throw invalid(`${path.basename(file)} is not readable JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(() => true, () => false);
}

function hostArchitecture(): string {
  return process.arch === 'x64' ? 'amd64' : process.arch;
}

function invalid(message: string): BatonError {
  return new BatonError('ERR_INVALID_ARTIFACT', `invalid image: ${message}`);
}
