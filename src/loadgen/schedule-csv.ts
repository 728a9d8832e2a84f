/**
 * A plan as a CSV file, so that a schedule can be inspected, edited, or replayed later without its
 * trace (`baton loadgen plan … -o schedule.csv`, then `baton loadgen run --schedule schedule.csv`):
 *
 *   function,invocationID,minute,offsetUs,runtimeMs,memoryMiB
 *
 * One row per invocation in send order. `minute` is the 0-based trace minute, `offsetUs` the send
 * time within that minute in µs (integer; so the send time is minute × 60 s + offsetUs), and
 * `invocationID` is Invitro's `min<m>.inv<k>` (k counts the function's invocations within minute m).
 */
import { FUNCTION_NAME_PATTERN } from '../api/function-spec.ts';
import { BatonError } from '../core/errors.ts';
import { createPlan } from './schedule.ts';
import type { Plan, PlanEntry } from './schedule.ts';

export const SCHEDULE_CSV_HEADER = 'function,invocationID,minute,offsetUs,runtimeMs,memoryMiB';

const MINUTE_MS = 60_000;

/** Invitro's invocation ids of a plan, `min<m>.inv<k>`, in plan order. */
export function invocationIds(functionIndex: ArrayLike<number>, minute: ArrayLike<number>, length: number): string[] {
  const counters = new Map<string, number>();
  const ids: string[] = [];
  for (let i = 0; i < length; i++) {
    const m = minute[i] ?? 0;
    const key = `${functionIndex[i] ?? 0}:${m}`;
    const k = counters.get(key) ?? 0;
    counters.set(key, k + 1);
    ids.push(`min${m}.inv${k}`);
  }
  return ids;
}

export function formatScheduleCsv(plan: Plan): string {
  const ids = invocationIds(plan.functionIndex, plan.minute, plan.length);
  const lines = [SCHEDULE_CSV_HEADER];
  for (let i = 0; i < plan.length; i++) {
    const minute = plan.minute[i] ?? 0;
    const offsetUs = Math.max(0, Math.round(((plan.atMs[i] ?? 0) - minute * MINUTE_MS) * 1000));
    lines.push(`${plan.functions[plan.functionIndex[i] ?? 0] ?? ''},${ids[i] ?? ''},${minute},${offsetUs},${plan.execMs[i] ?? 0},${plan.memoryMiB[i] ?? 0}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Reads a schedule CSV (columns by name, any order; extra columns ignored) into a Plan. A malformed
 * cell throws ERR_INVALID_REQUEST naming the line and column.
 */
export function parseScheduleCsv(text: string, file = 'schedule.csv'): Plan {
  const lines = text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  const header = (lines[0] ?? '').split(',').map((c) => c.trim());
  const bad = (line: number, column: number | undefined, problem: string): BatonError => new BatonError('ERR_INVALID_REQUEST',
    `${file} line ${line}${column === undefined ? '' : ` column ${column}`}: ${problem}`, { details: { file, line, column, problem } });
  const index = (name: string): number => {
    const at = header.indexOf(name);
    if (at < 0) throw bad(1, undefined, `the header has no ${name} column (expected ${SCHEDULE_CSV_HEADER})`);
    return at;
  };
  const [fn, minute, offset, runtime, memory] = ['function', 'minute', 'offsetUs', 'runtimeMs', 'memoryMiB'].map(index) as [number, number, number, number, number];
  const entries: (PlanEntry & { minute: number })[] = [];
  lines.slice(1).forEach((raw, at) => {
    if (raw.trim() === '') return;
    const line = at + 2;
    const cells = raw.split(',').map((c) => c.trim());
    if (cells.length !== header.length) throw bad(line, undefined, `has ${cells.length} cells, the header has ${header.length}`);
    const name = cells[fn] ?? '';
    if (!FUNCTION_NAME_PATTERN.test(name)) throw bad(line, fn + 1, `function "${name}" is not a valid function name`);
    const integer = (column: number, what: string, max: number): number => {
      const cell = cells[column] ?? '';
      if (!/^\d+$/.test(cell) || Number(cell) > max) throw bad(line, column + 1, `${what} "${cell}" is not an integer in [0, ${max}]`);
      return Number(cell);
    };
    const m = integer(minute, 'minute', 1_000_000);
    const offsetUs = integer(offset, 'offsetUs', MINUTE_MS * 1000 - 1);
    entries.push({
      function: name, minute: m, atMs: m * MINUTE_MS + offsetUs / 1000,
      execMs: integer(runtime, 'runtimeMs', 3_600_000), memoryMiB: integer(memory, 'memoryMiB', 1_048_576),
    });
  });
  return createPlan(entries);
}
