/**
 * bench:trace — Dirigent's Azure-trace experiment (SOSP'24 §5, "Azure-500") on one machine.
 *
 * A synthetic 500-function trace shaped like the Azure Functions 2019 data (`baton loadgen synth`,
 * src/loadgen/README.md) is replayed open-loop with `baton loadgen run --deploy --runtime emulated`
 * against the real control plane, data plane and one process emulating W workers whose sandboxes
 * take 180 ms to create. Then `baton loadgen analyze` computes Dirigent's metrics: per-function
 * mean scheduling latency (p50, p99 across functions) and per-function slowdown, next to
 * Dirigent's published figures for its 17-node run (median per-function scheduling latency
 * ≈ 250 ms) and the ratio.
 *
 * Shortened in time: the paper replays 30 minutes and drops the first 10 from the slowdown; this
 * replays --minutes (default 5) and drops --warmup-minutes (default 1), so that it finishes in a
 * few minutes on 2 cores. Everything else is the tool a user runs.
 *
 *   npm run bench:trace -- [--functions 500] [--minutes 5] [--warmup-minutes 1] [--workers 20] [--seed 42] [--out bench/results/trace]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { main as baton } from '../src/cli/main.ts';
import type { CliIo } from '../src/cli/command.ts';
import { startCluster } from '../test/kit/cluster.ts';

const { values } = parseArgs({
  options: {
    functions: { type: 'string', default: '500' },
    minutes: { type: 'string', default: '5' },
    'warmup-minutes': { type: 'string', default: '1' },
    workers: { type: 'string', default: '20' },
    'create-latency-ms': { type: 'string', default: '180' },
    seed: { type: 'string', default: '42' },
    out: { type: 'string', default: 'bench/results/trace' },
  },
});

/** Dirigent's published median per-function scheduling latency on its 17-node Azure-500 run (ms), and the targets. */
const DIRIGENT = { medianPerFunctionMs: 250 } as const;
const TARGET = { medianMs: 125 } as const;

/** The tool runs in this process, writing where a user would see it. */
const IO: CliIo = { stdout: process.stdout, stderr: process.stderr, env: {}, cwd: process.cwd() };

async function run(argv: string[]): Promise<void> {
  process.stdout.write(`$ baton ${argv.join(' ')}\n`);
  const code = await baton(argv, IO);
  if (code !== 0) throw new Error(`baton ${argv.join(' ')} exited ${code}`);
}

async function mainBench(): Promise<void> {
  const out = path.resolve(values.out);
  await mkdir(out, { recursive: true });
  const traceDir = path.join(out, 'trace');
  await run(['loadgen', 'synth', '--functions', values.functions, '--minutes', values.minutes, '--seed', values.seed, '-o', traceDir]);

  const cluster = await startCluster({
    // Production settings: 1 s heartbeats, demand reports and autoscaler buckets, 2 s decisions (Knative's).
    // A scale-down waits as long as the longest invocation may run (the trace's go up to 60 s) before removing a sandbox.
    controlplane: ['--heartbeat-interval-ms', '1000', '--autoscaler-bucket-ms', '1000', '--autoscaler-tick-ms', '2000', '--drain-timeout-ms', '120000'],
    worker: ['--heartbeat-interval-ms', '1000', '--emulate', values.workers, '--runtime', 'emulated', '--emulated-create-latency', `${values['create-latency-ms']}ms`, '--cpu-milli', '100000', '--memory-mib', '100000'],
    dataplane: ['--heartbeat-interval-ms', '1000', '--demand-report-interval-ms', '1000', '--queue-timeout-ms', '15000'],
  });
  const results = path.join(out, 'results.csv');
  try {
    await run(['loadgen', 'run', traceDir, '--deploy', '--runtime', 'emulated', '--url', cluster.cpUrl, '--target', cluster.dpUrl,
      // Deadlines above the trace's longest execution (60 s) plus a cold start: a timeout is then a failure of the system, not of the setup.
      '--seed', values.seed, '--format', 'baton', '--timeout-ms', '120000', '--max-seconds', String(Number(values.minutes) * 60 + 60), '-o', results]);
  } finally {
    await cluster.stop();
  }
  const plots = path.join(out, 'plots');
  await run(['loadgen', 'analyze', results, '--warmup-minutes', values['warmup-minutes'], '--labels', 'baton', '--plots', plots]);
  let json = '';
  const code = await baton(['loadgen', 'analyze', results, '--json', '--warmup-minutes', values['warmup-minutes']], {
    stdout: { write: (c) => { json += String(c); return true; } }, stderr: process.stderr, env: {}, cwd: process.cwd(),
  });
  if (code !== 0) throw new Error('analyze --json failed');
  const report = JSON.parse(json) as { invocations: number; functions: number; failures: { total: number; byCode: Record<string, number> }; schedulingLatencyMs: { perFunctionMean: { p50: number; p99: number } }; slowdown: { perFunctionGeomean: { p50: number; p99: number } } };
  const { p50, p99 } = report.schedulingLatencyMs.perFunctionMean;
  const summary = {
    command: `npm run bench:trace -- --functions ${values.functions} --minutes ${values.minutes} --warmup-minutes ${values['warmup-minutes']} --workers ${values.workers} --seed ${values.seed}`,
    createLatencyMs: Number(values['create-latency-ms']),
    invocations: report.invocations, functions: report.functions, failures: report.failures,
    perFunctionMeanSchedulingLatencyMs: { p50, p99 },
    perFunctionSlowdown: report.slowdown.perFunctionGeomean,
    dirigent: DIRIGENT,
    ratioMedianVsDirigent: p50 / DIRIGENT.medianPerFunctionMs,
    medianTargetMs: TARGET.medianMs, medianTargetMet: p50 <= TARGET.medianMs,
  };
  await writeFile(path.join(out, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  process.stdout.write(`\n${JSON.stringify(summary, null, 2)}\n`);
}

await mainBench();
process.exit(0);
