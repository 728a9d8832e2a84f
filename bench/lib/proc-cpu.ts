import { readFileSync } from 'node:fs';

/** Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ; 100 on Linux). */
const TICKS_PER_SECOND = 100;

/**
 * CPU time (user + system) a process has used so far, in milliseconds, from `/proc/<pid>/stat`
 * fields 14 and 15; 0 when the process is gone. Resolution 10 ms, so read it around runs of
 * seconds, not single requests.
 */
export function processCpuMs(pid: number): number {
  const { userMs, systemMs } = processCpuTimes(pid);
  return userMs + systemMs;
}

/** User and system CPU time of a process so far, in milliseconds ({0, 0} when it is gone). */
export function processCpuTimes(pid: number): { userMs: number; systemMs: number } {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return { userMs: 0, systemMs: 0 };
  }
  // The command name (field 2) may contain spaces: split after the last ')'; fields[0] is field 3.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { userMs: (Number(fields[11]) * 1000) / TICKS_PER_SECOND, systemMs: (Number(fields[12]) * 1000) / TICKS_PER_SECOND };
}
