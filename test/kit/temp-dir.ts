import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const made: string[] = [];
let isGuarded = false;

/** A fresh temp directory, removed when the test process exits (e.g. a data plane's `dataDir`). */
export function tempDirSync(prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  made.push(dir);
  if (!isGuarded) {
    isGuarded = true;
    process.once('exit', () => {
      for (const d of made) rmSync(d, { recursive: true, force: true });
    });
  }
  return dir;
}
