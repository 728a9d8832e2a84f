import { runTool } from './run-tool.ts';

/** One wrk run's parameters; every run is bounded by `durationS` (and killed at `durationS + 15` s). */
export interface WrkOptions {
  readonly url: string;
  readonly connections: number;
  readonly durationS: number;
  /** wrk's per-request timeout; a slower answer counts as a timeout error. */
  readonly timeoutS: number;
  /** Headers sent with every request (e.g. `authorization`). */
  readonly headers?: Readonly<Record<string, string>>;
}

/** What the table reports, parsed from `wrk --latency`. Latencies in milliseconds. */
export interface WrkResult {
  readonly requestsPerSecond: number;
  readonly requests: number;
  readonly p50Ms: number;
  readonly p75Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly non2xx: number;
  readonly socketErrors: number;
}

/** Runs wrk with one thread and returns its parsed summary; rejects when wrk fails or its output is not understood. */
export async function runWrk(options: WrkOptions, signal: AbortSignal): Promise<WrkResult> {
  const headers = Object.entries(options.headers ?? {}).flatMap(([name, value]) => ['-H', `${name}: ${value}`]);
  const args = ['-t1', `-c${options.connections}`, `-d${options.durationS}s`, `--timeout`, `${options.timeoutS}s`, '--latency', ...headers, options.url];
  return parseWrkOutput(await runTool('wrk', args, (options.durationS + 15) * 1000, signal));
}

/**
 * Parses wrk 4's text summary:
 *   Latency Distribution / 50%  528.00us / … / 99%    1.23ms
 *   123456 requests in 10.00s, 12.34MB read
 *   Non-2xx or 3xx responses: 5            (only when some)
 *   Socket errors: connect 0, read 0, write 0, timeout 0   (only when some)
 *   Requests/sec:  12345.67
 */
export function parseWrkOutput(text: string): WrkResult {
  const percentile = (p: number): number => {
    const m = new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(text);
    if (m === null) throw new Error(`wrk output has no ${p}% latency:\n${text}`);
    return toMs(Number(m[1]), m[2] as string);
  };
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(text);
  const total = /^\s*(\d+) requests in/m.exec(text);
  if (rps === null || total === null) throw new Error(`wrk output not understood:\n${text}`);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(text);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const socketErrors = socket === null ? 0 : socket.slice(1, 5).reduce((sum, n) => sum + Number(n), 0);
  return {
    requestsPerSecond: Number(rps[1]),
    requests: Number(total[1]),
    p50Ms: percentile(50),
    p75Ms: percentile(75),
    p90Ms: percentile(90),
    p99Ms: percentile(99),
    non2xx: non2xx === null ? 0 : Number(non2xx[1]),
    socketErrors,
  };
}

function toMs(value: number, unit: string): number {
  switch (unit) {
    case 'us': return value / 1000;
    case 'ms': return value;
    case 's': return value * 1000;
    default: return value * 60_000;
  }
}
