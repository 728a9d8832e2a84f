import { setTimeout as sleep } from 'node:timers/promises';
import { BatonError } from '../../core/errors.ts';
import type { LogLine } from '../client.ts';
import { intFlag, type Command, type CommandContext } from '../command.ts';
import { formatTs } from '../format.ts';

const DEFAULT_TAIL = 100;
/** Lines asked for on each follow poll: more new lines than this within one interval are missed. */
const FOLLOW_TAIL = 1000;
const DEFAULT_INTERVAL_MS = 1000;

/**
 * `baton logs NAME`: the last lines of the function's sandboxes. With --follow, polls and prints
 * lines newer than the last one printed until Ctrl-C. With --json: `{lines}`, or one JSON line per
 * log line when following.
 */
export const logsCommand: Command = {
  name: 'logs',
  summary: "print a function's sandbox logs",
  usage: `baton logs NAME [--tail N] [--follow]

flags:
  --tail N           lines to show first (default: ${DEFAULT_TAIL})
  -F, --follow       keep printing new lines until Ctrl-C
  --interval-ms N    how often --follow polls (default: ${DEFAULT_INTERVAL_MS})`,
  options: {
    tail: { type: 'string' },
    follow: { type: 'boolean', short: 'F' },
    'interval-ms': { type: 'string' },
  },
  positionals: { min: 1, max: 1, names: 'NAME' },
  run: runLogs,
};

async function runLogs(ctx: CommandContext): Promise<number> {
  const name = ctx.positionals[0] as string;
  const tail = intFlag(ctx.values, 'tail', 0) ?? DEFAULT_TAIL;
  const intervalMs = intFlag(ctx.values, 'interval-ms', 10) ?? DEFAULT_INTERVAL_MS;
  const isFollowing = ctx.values['follow'] === true;
  const client = ctx.client();
  const { signal } = ctx.io;
  const first = await client.getLogs(name, { tail }, signal === undefined ? {} : { signal });
  if (!isFollowing) {
    if (ctx.isJson) ctx.printJson({ lines: first });
    else for (const line of first) ctx.print(formatLine(line));
    return 0;
  }
  const cursor = new LogCursor();
  const emit = (lines: readonly LogLine[]) => {
    for (const line of cursor.advance(lines)) ctx.print(ctx.isJson ? JSON.stringify(line) : formatLine(line));
  };
  emit(first);
  let hasWarned = false;
  const isStopped = () => signal?.aborted === true;
  while (!isStopped()) {
    const isAborted = await sleep(intervalMs, false, signal === undefined ? {} : { signal }).catch(() => true);
    if (isAborted) break;
    try {
      emit(await client.getLogs(name, { tail: FOLLOW_TAIL }, signal === undefined ? {} : { signal }));
    } catch (err) {
      if (isStopped()) break;
      if (!(err instanceof BatonError) || !err.isRetryable) throw err;
      if (!hasWarned) ctx.io.stderr.write(`warning ${err.code}: ${err.message} (still following)\n`);
      hasWarned = true;
    }
  }
  return 0;
}

export function formatLine(line: LogLine): string {
  const tag = line.stream === 'stderr' ? `${line.sandboxId} stderr` : line.sandboxId;
  return `${formatTs(line.ts)} [${tag}] ${line.line}`;
}

/**
 * Remembers the newest timestamp printed and which lines carried it, so that each poll prints only
 * lines after it (lines sharing that timestamp are told apart by content).
 */
export class LogCursor {
  #last: number | undefined;
  #seenAtLast = new Set<string>();

  /** The lines of `batch` not printed yet, oldest first. */
  advance(batch: readonly LogLine[]): LogLine[] {
    const fresh = batch
      .map((line) => ({ line, at: toMs(line.ts), key: keyOf(line) }))
      .filter(({ at, key }) => this.#last === undefined || at > this.#last || (at === this.#last && !this.#seenAtLast.has(key)))
      .sort((a, b) => a.at - b.at);
    for (const { at, key } of fresh) {
      if (this.#last === undefined || at > this.#last) {
        this.#last = at;
        this.#seenAtLast = new Set();
      }
      this.#seenAtLast.add(key);
    }
    return fresh.map(({ line }) => line);
  }
}

function toMs(ts: string | number): number {
  const ms = typeof ts === 'number' ? ts : Date.parse(ts);
  return Number.isNaN(ms) ? 0 : ms;
}

function keyOf(line: LogLine): string {
  return `${line.ts}\u0000${line.sandboxId}\u0000${line.stream}\u0000${line.line}`;
}
