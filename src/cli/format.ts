/** Plain-text formatting for the CLI's tables and values. */

/** Left-aligned columns separated by two spaces; numbers right-aligned. */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const isNumeric = headers.map((_, i) => rows.length > 0 && rows.every((r) => /^-?[\d.]+$|^-$/.test(r[i] ?? '')));
  const line = (cells: readonly string[], isHeader: boolean) => cells
    .map((c, i) => (isNumeric[i] === true && !isHeader ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
    .join('  ')
    .trimEnd();
  return [line(headers, true), ...rows.map((r) => line(r, false))].join('\n');
}

/** `5s`, `3m`, `2h`, `4d` since an ISO timestamp; `-` when unknown. */
export function formatAge(iso: string | undefined, nowMs: number): string {
  if (iso === undefined) return '-';
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return '-';
  return formatDuration(Math.max(0, nowMs - then));
}

export function formatDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

/** Milliseconds with at most one decimal; `-` when absent. */
export function formatMs(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return '-';
  return Number.isInteger(ms) ? String(ms) : ms.toFixed(1);
}

/** A log timestamp (ISO string or epoch ms) as ISO text. */
export function formatTs(ts: string | number): string {
  return typeof ts === 'number' ? new Date(ts).toISOString() : ts;
}
