import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { controlPlaneConfigSchema } from '../../src/controlplane/config.ts';
import { dataplaneConfigKeysSchema } from '../../src/dataplane/config.ts';
import { workerConfigSchema } from '../../src/worker/config.ts';

test('docs/config.md documents exactly the keys of each daemon', async () => {
  const doc = await readFile(new URL('../../docs/config.md', import.meta.url), 'utf8');
  const sections = doc.split(/^## /m);
  const keysIn = (heading: string) => {
    const section = sections.find((s) => s.startsWith(heading));
    assert.ok(section !== undefined, heading);
    return [...section.matchAll(/^\| `([A-Za-z]+)` \|/gm)].map((m) => m[1]).sort();
  };
  assert.deepEqual(keysIn('Control plane'), Object.keys(controlPlaneConfigSchema.shape).sort());
  assert.deepEqual(keysIn('Data plane'), Object.keys(dataplaneConfigKeysSchema.shape).sort());
  assert.deepEqual(keysIn('Worker'), Object.keys(workerConfigSchema.shape).sort());
});
