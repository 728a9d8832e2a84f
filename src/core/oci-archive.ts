import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { Header, Pax } from 'tar';

/**
 * Writes tar archives entry by entry, and OCI image archives (the OCI image layout in a gzipped
 * tar) from layers: what `baton image build` produces and what the image tests feed the worker.
 * Deterministic: mtime 0, entries in the order given, so the same input gives the same digest.
 */
export type TarEntry =
  | { readonly type: 'file'; readonly path: string; readonly data: Buffer | string; readonly mode?: number; readonly uid?: number; readonly gid?: number }
  | { readonly type: 'dir'; readonly path: string; readonly mode?: number; readonly uid?: number; readonly gid?: number }
  | { readonly type: 'symlink'; readonly path: string; readonly target: string }
  | { readonly type: 'hardlink'; readonly path: string; readonly target: string }
  | { readonly type: 'chardev' | 'blockdev' | 'fifo'; readonly path: string };

const TYPES = { file: 'File', dir: 'Directory', symlink: 'SymbolicLink', hardlink: 'Link', chardev: 'CharacterDevice', blockdev: 'BlockDevice', fifo: 'FIFO' } as const;

/** An uncompressed tar of `entries`, in order (paths are written exactly as given). */
export function tarOf(entries: readonly TarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const data = entry.type === 'file' ? Buffer.from(entry.data) : Buffer.alloc(0);
    const fields = {
      path: entry.path, type: TYPES[entry.type], size: data.length, mtime: new Date(0), uname: '', gname: '',
      mode: 'mode' in entry && entry.mode !== undefined ? entry.mode : entry.type === 'dir' ? 0o755 : entry.type === 'symlink' ? 0o777 : 0o644,
      uid: 'uid' in entry && entry.uid !== undefined ? entry.uid : 0, gid: 'gid' in entry && entry.gid !== undefined ? entry.gid : 0,
      ...(entry.type === 'symlink' || entry.type === 'hardlink' ? { linkpath: entry.target } : {}),
    };
    const block = Buffer.alloc(512);
    if (new Header(fields).encode(block)) {
      blocks.push(new Pax({ path: entry.path, ...(fields.linkpath === undefined ? {} : { linkpath: fields.linkpath }) }).encode());
    }
    blocks.push(block, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/** The `config` object of an OCI image config. */
export interface OciImageConfig {
  readonly Entrypoint?: readonly string[];
  readonly Cmd?: readonly string[];
  readonly Env?: readonly string[];
  readonly WorkingDir?: string;
  readonly User?: string;
  readonly ExposedPorts?: Readonly<Record<string, object>>;
  readonly Labels?: Readonly<Record<string, string>>;
}

/**
 * A gzipped tar holding the OCI image layout of one image: `oci-layout`, `index.json`, and the
 * manifest, config and layers (each layer an uncompressed tar, stored gzipped) as blobs.
 */
export function ociArchiveOf(layers: readonly Buffer[], config: OciImageConfig): Buffer {
  const blobs: { digest: string; data: Buffer }[] = [];
  const addBlob = (data: Buffer): { digest: string; size: number } => {
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    if (!blobs.some((b) => b.digest === digest)) blobs.push({ digest, data });
    return { digest, size: data.length };
  };
  const diffIds = layers.map((layer) => `sha256:${createHash('sha256').update(layer).digest('hex')}`);
  const layerDescriptors = layers.map((layer) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...addBlob(gzipSync(layer, { level: 6 })) }));
  const configBlob = Buffer.from(JSON.stringify({
    architecture: process.arch === 'x64' ? 'amd64' : process.arch, os: 'linux', config,
    rootfs: { type: 'layers', diff_ids: diffIds },
  }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...addBlob(configBlob) },
    layers: layerDescriptors,
  }));
  const manifestDescriptor = { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...addBlob(manifest) };
  const index = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [manifestDescriptor] };
  return gzipSync(tarOf([
    { type: 'file', path: 'oci-layout', data: JSON.stringify({ imageLayoutVersion: '1.0.0' }) },
    { type: 'file', path: 'index.json', data: JSON.stringify(index) },
    { type: 'dir', path: 'blobs/' },
    { type: 'dir', path: 'blobs/sha256/' },
    ...blobs.map((b): TarEntry => ({ type: 'file', path: `blobs/sha256/${b.digest.slice(7)}`, data: b.data })),
  ]), { level: 6 });
}

/** A plain tar in the docker-save layout (`manifest.json`, `<n>/layer.tar`, the config JSON). */
export function dockerSaveArchiveOf(layers: readonly Buffer[], config: OciImageConfig): Buffer {
  const configJson = Buffer.from(JSON.stringify({ os: 'linux', config }));
  const configName = `${createHash('sha256').update(configJson).digest('hex')}.json`;
  const layerNames = layers.map((_, i) => `${i}/layer.tar`);
  return tarOf([
    { type: 'file', path: configName, data: configJson },
    ...layers.flatMap((layer, i): TarEntry[] => [{ type: 'dir', path: `${i}/` }, { type: 'file', path: layerNames[i] as string, data: layer }]),
    { type: 'file', path: 'manifest.json', data: JSON.stringify([{ Config: configName, RepoTags: ['baton/test:latest'], Layers: layerNames }]) },
  ]);
}
