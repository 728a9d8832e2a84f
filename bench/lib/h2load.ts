import { runTool } from './run-tool.ts';

/** One h2load run (nghttp2's load generator); bounded by `durationS` + `warmupS` (killed 15 s after). */
export interface H2loadOptions {
  readonly url: string;
  /** `h1`: HTTP/1.1 (`--h1`), one request per connection at a time; `h2c`: HTTP/2 with prior knowledge. */
  readonly protocol: 'h1' | 'h2c';
  readonly connections: number;
  /** Concurrent streams per connection (h2c only). */
  readonly streams: number;
  readonly durationS: number;
  readonly warmupS: number;
  readonly headers: readonly string[];
}

/** What h2load reports: it has no percentiles, only min/max/mean of the time per request. */
export interface H2loadResult {
  readonly requestsPerSecond: number;
  readonly requests: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly meanMs: number;
  readonly maxMs: number;
}

export async function runH2load(options: H2loadOptions, signal: AbortSignal): Promise<H2loadResult> {
  const args = [
    '-t1', `-c${options.connections}`, `-m${options.protocol === 'h1' ? 1 : options.streams}`, `-D${options.durationS}`,
    ...(options.warmupS > 0 ? [`--warm-up-time=${options.warmupS}`] : []),
    ...(options.protocol === 'h1' ? ['--h1'] : []),
    ...options.headers.flatMap((h) => ['-H', h]),
    options.url,
  ];
  return parseH2loadOutput(await runTool('h2load', args, (options.durationS + options.warmupS + 15) * 1000, signal));
}

/**
 * Parses h2load's summary (nghttp2 1.4x–1.5x):
 *   finished in 3.00s, 20885.00 req/s, 632.31KB/s
 *   requests: 41770 total, 41770 started, 41770 done, 41770 succeeded, 0 failed, 0 errored, 0 timeout
 *   time for request:      141us     93.79ms       473us      2.38ms    98.90%
 */
export function parseH2loadOutput(text: string): H2loadResult {
  const rps = /^finished in [\d.]+s, ([\d.]+) req\/s/m.exec(text);
  const requests = /^requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/m.exec(text);
  const time = /^time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)/m.exec(text);
  if (rps === null || requests === null || time === null) throw new Error(`h2load's output was not understood:\n${text}`);
  const ms = (value: string, unit: string): number => (unit === 'us' ? Number(value) / 1000 : unit === 's' ? Number(value) * 1000 : Number(value));
  return {
    requestsPerSecond: Number(rps[1]),
    requests: Number(requests[1]),
    succeeded: Number(requests[2]),
    failed: Number(requests[3]) + Number(requests[4]) + Number(requests[5]),
    meanMs: ms(time[5] as string, time[6] as string),
    maxMs: ms(time[3] as string, time[4] as string),
  };
}
