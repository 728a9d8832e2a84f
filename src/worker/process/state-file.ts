import { readFile, rename, writeFile } from 'node:fs/promises';

/** One sandbox process as recorded on disk: enough to find and verify it after a restart. */
export interface RecordedProcess {
  readonly sandboxId: string;
  readonly pid: number;
  /** `/proc/<pid>/stat` start time; a pid with another start time is a different process. */
  readonly startTime: string;
}

/**
 * `sandboxes.json`: the processes this worker runs, so that the next run of the same worker can
 * stop the ones a crash left behind. Writes are atomic (temp file + rename) and coalesced: many
 * changes in one turn make one write, and the creation path never waits for it.
 */
export class SandboxStateFile {
  readonly #path: string;
  readonly #entries = new Map<string, RecordedProcess>();
  #writing: Promise<void> | undefined;
  #isDirty = false;

  constructor(path: string) {
    this.#path = path;
  }

  /** What the file holds now (from a previous run); empty when missing or unreadable. */
  async read(): Promise<RecordedProcess[]> {
    try {
      const parsed = JSON.parse(await readFile(this.#path, 'utf8')) as { sandboxes?: unknown };
      return Array.isArray(parsed.sandboxes) ? parsed.sandboxes.filter(isRecordedProcess) : [];
    } catch {
      return [];
    }
  }

  set(entry: RecordedProcess): void {
    this.#entries.set(entry.sandboxId, entry);
    this.#schedule();
  }

  delete(sandboxId: string): void {
    if (this.#entries.delete(sandboxId)) this.#schedule();
  }

  /** Writes the current entries (even when nothing changed) and waits for every pending write. */
  async flush(): Promise<void> {
    this.#isDirty = true;
    this.#schedule();
    while (this.#writing !== undefined) await this.#writing;
  }

  #schedule(): void {
    this.#isDirty = true;
    if (this.#writing !== undefined) return;
    this.#writing = this.#writeLoop().finally(() => { this.#writing = undefined; });
  }

  async #writeLoop(): Promise<void> {
    while (this.#isDirty) {
      this.#isDirty = false;
      const data = JSON.stringify({ sandboxes: [...this.#entries.values()] });
      const tmp = `${this.#path}.tmp`;
      try {
        await writeFile(tmp, data, { mode: 0o600 });
        await rename(tmp, this.#path);
      } catch {
        // Best effort: the file only helps clean up after a crash. The next change retries.
      }
    }
  }
}

function isRecordedProcess(value: unknown): value is RecordedProcess {
  const v = value as Partial<RecordedProcess> | null;
  return typeof v === 'object' && v !== null && typeof v.sandboxId === 'string'
    && Number.isInteger(v.pid) && (v.pid ?? 0) > 1 && typeof v.startTime === 'string';
}
