import { wallTimeMs } from '../../core/clock.ts';
import type { SandboxLogLine } from '../../api/worker.ts';

/** Longest kept line, characters; longer lines are cut (the rest is dropped). */
const MAX_LINE_CHARS = 16 * 1024;

/**
 * The last `capacity` output lines of one sandbox, oldest overwritten first, with a count of the
 * lines that fell out. Bounded in lines and in characters per line.
 */
export class LogBuffer {
  readonly #capacity: number;
  readonly #lines: SandboxLogLine[] = [];
  #next = 0;
  #dropped = 0;

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  get dropped(): number {
    return this.#dropped;
  }

  push(stream: SandboxLogLine['stream'], line: string): void {
    const entry = { ts: new Date(wallTimeMs()).toISOString(), stream, line: line.length > MAX_LINE_CHARS ? line.slice(0, MAX_LINE_CHARS) : line };
    if (this.#lines.length < this.#capacity) {
      this.#lines.push(entry);
      return;
    }
    this.#lines[this.#next] = entry;
    this.#next = (this.#next + 1) % this.#capacity;
    this.#dropped += 1;
  }

  /** The last `n` lines, oldest first. */
  tail(n: number): SandboxLogLine[] {
    const ordered = this.#lines.length < this.#capacity
      ? this.#lines
      : [...this.#lines.slice(this.#next), ...this.#lines.slice(0, this.#next)];
    return n >= ordered.length ? [...ordered] : ordered.slice(ordered.length - Math.max(0, n));
  }
}

/**
 * Splits a byte stream into lines for `onLine`, holding at most MAX_LINE_CHARS of an unfinished
 * line (a process that never writes a newline cannot grow the worker's memory).
 */
export function lineSplitter(onLine: (line: string) => void): { write(chunk: Buffer): void; end(): void } {
  let pending = '';
  return {
    write(chunk) {
      const text = pending + chunk.toString('utf8');
      const parts = text.split('\n');
      pending = parts.pop() ?? '';
      for (const part of parts) onLine(part.endsWith('\r') ? part.slice(0, -1) : part);
      if (pending.length > MAX_LINE_CHARS) {
        onLine(pending.slice(0, MAX_LINE_CHARS));
        pending = '';
      }
    },
    end() {
      if (pending.length > 0) onLine(pending);
      pending = '';
    },
  };
}
