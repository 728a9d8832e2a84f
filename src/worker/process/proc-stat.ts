import { readFile } from 'node:fs/promises';

/**
 * The start time of a process from `/proc/<pid>/stat` (field 22, clock ticks since boot), used to
 * tell a process we started from a later one that reuses its pid. Undefined if it does not exist.
 */
export async function processStartTime(pid: number): Promise<string | undefined> {
  let stat: string;
  try {
    stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state), so field 22 is fields[19].
  return fields[19];
}
