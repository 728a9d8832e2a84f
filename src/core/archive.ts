import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { create } from 'tar';

/**
 * Packs `dir` into a deterministic .tar.gz: entries in sorted order, no mtimes, portable headers
 * (no uid/gid/uname), `.git` folders skipped. The same tree always gives the same bytes, so the
 * same digest.
 */
export async function packDirectory(dir: string): Promise<Buffer> {
  const entries = await listEntries(dir, '');
  const pack = create({ gzip: true, cwd: dir, portable: true, noMtime: true, noDirRecurse: true }, entries);
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Every path under `dir` relative to it, folders before their contents, siblings sorted. */
async function listEntries(root: string, prefix: string): Promise<string[]> {
  const dirents = await readdir(join(root, prefix), { withFileTypes: true });
  const names = dirents.filter((d) => d.name !== '.git').sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out: string[] = [];
  for (const d of names) {
    const rel = prefix === '' ? d.name : `${prefix}/${d.name}`;
    out.push(rel);
    if (d.isDirectory()) out.push(...(await listEntries(root, rel)));
  }
  return out;
}
