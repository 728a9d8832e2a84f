import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { BatonError } from '../../core/errors.ts';
import { parseResultsCsv } from '../../loadgen/invitro-csv.ts';
import { analyzeRecords, formatReportTable, renderReportPlots } from '../../loadgen/report.ts';
import type { Grouping } from '../../loadgen/report.ts';
import { sampleFunctions } from '../../loadgen/sample.ts';
import { planTrace } from '../../loadgen/schedule.ts';
import type { IatDistribution, Plan } from '../../loadgen/schedule.ts';
import { formatScheduleCsv } from '../../loadgen/schedule-csv.ts';
import { synthesizeTrace } from '../../loadgen/synth.ts';
import { readTrace } from '../../loadgen/trace.ts';
import type { TraceFunction } from '../../loadgen/trace.ts';
import { intFlag, stringFlag, UsageError, type CliIo, type Command, type CommandContext, type FlagValues, type OptionSpecs } from '../command.ts';

/**
 * `baton loadgen synth|plan|run|analyze`: the load generator as a tool (src/loadgen/README.md).
 * Each subcommand is a Command of its own, named `loadgen <sub>`; main.ts dispatches to them.
 */

/** Flags that select and shape the replayed part of a trace (`plan` and `run`). */
export const TRACE_PLAN_OPTIONS: OptionSpecs = {
  functions: { type: 'string' },
  minutes: { type: 'string' },
  seed: { type: 'string' },
  iat: { type: 'string' },
  shift: { type: 'boolean' },
  'warmup-minutes': { type: 'string' },
};

export const TRACE_PLAN_USAGE = `  --functions K         replay K functions, sampled reproducibly keeping the mix of rates (default: all)
  --minutes M           trace minutes to replay after the warm-up (default: all the trace has)
  --warmup-minutes W    minutes replayed first as Invitro's warm-up phase (phase 1; default 0)
  --seed S              seed of the sample, the inter-arrival times and the specs (default 42)
  --iat DIST            exponential | uniform | equidistant (default exponential)
  --shift               rotate each minute's arrivals by a random offset (Invitro's *_shift)`;

const IATS: readonly IatDistribution[] = ['exponential', 'uniform', 'equidistant'];

export interface TracePlan {
  readonly plan: Plan;
  readonly functions: readonly TraceFunction[];
  readonly warmupMinutes: number;
}

/** Reads TRACE_DIR and plans it as the flags say; unusable rows are listed on stderr. */
export async function planFromTraceFlags(io: CliIo, dir: string, values: FlagValues): Promise<TracePlan> {
  const iat = stringFlag(values, 'iat') ?? 'exponential';
  if (!IATS.includes(iat as IatDistribution)) throw new UsageError(`--iat must be one of ${IATS.join(', ')} (got '${iat}')`);
  const seed = intFlag(values, 'seed', 0) ?? 42;
  const sample = intFlag(values, 'functions', 1);
  const warmupMinutes = intFlag(values, 'warmup-minutes', 0) ?? 0;
  const minutesFlag = intFlag(values, 'minutes', 1);
  const trace = await readTrace(resolve(io.cwd, dir)).catch((err: unknown) => {
    if ((err as { code?: unknown }).code === 'ENOENT') throw new BatonError('ERR_INVALID_REQUEST', `${dir}: ${(err as Error).message} (a trace folder holds invocations.csv, durations.csv and memory.csv)`);
    throw err;
  });
  for (const issue of trace.issues) io.stderr.write(`skipped function ${issue.hashFunction}: ${issue.kind}: ${issue.message}\n`);
  if (trace.functions.length === 0) throw new BatonError('ERR_INVALID_REQUEST', `${dir}: no function of the trace can be replayed`);
  const functions = sample === undefined ? trace.functions : sampleFunctions(trace.functions, sample, seed);
  const minutes = (minutesFlag ?? Math.max(1, trace.minutes - warmupMinutes)) + warmupMinutes;
  if (minutes > trace.minutes) throw new BatonError('ERR_INVALID_REQUEST', `the trace has ${trace.minutes} minutes, ${minutes} were asked for (--minutes + --warmup-minutes)`, { details: { traceMinutes: trace.minutes, minutes } });
  const plan = planTrace(functions, { minutes, iatDistribution: iat as IatDistribution, seed, shift: values['shift'] === true });
  return { plan, functions, warmupMinutes };
}

async function writeOutput(io: CliIo, file: string, text: string): Promise<string> {
  const path = resolve(io.cwd, file);
  await writeFile(path, text);
  return path;
}

function requireOutput(values: FlagValues, what: string): string {
  const output = stringFlag(values, 'output');
  if (output === undefined) throw new UsageError(`-o ${what} is required`);
  return output;
}

export const loadgenSynthCommand: Command = {
  name: 'loadgen synth',
  summary: 'write a synthetic trace in the Azure Functions 2019 format',
  usage: `baton loadgen synth --functions N --minutes M [--seed S] -o DIR

Writes DIR/invocations.csv, durations.csv and memory.csv; rates, durations and memory follow the
heavy-tailed shapes of the Azure data (src/loadgen/README.md says which and why).`,
  options: { functions: { type: 'string' }, minutes: { type: 'string' }, seed: { type: 'string' }, output: { type: 'string', short: 'o' } },
  positionals: { min: 0, max: 0, names: '' },
  async run(ctx: CommandContext): Promise<number> {
    const functions = intFlag(ctx.values, 'functions', 1);
    const minutes = intFlag(ctx.values, 'minutes', 1);
    if (functions === undefined || minutes === undefined) throw new UsageError('--functions and --minutes are required');
    const out = resolve(ctx.io.cwd, requireOutput(ctx.values, 'DIR'));
    const files = synthesizeTrace({ functions, minutes, seed: intFlag(ctx.values, 'seed', 0) ?? 42 });
    await mkdir(out, { recursive: true });
    await Promise.all([
      writeFile(join(out, 'invocations.csv'), files.invocationsCsv),
      writeFile(join(out, 'durations.csv'), files.durationsCsv),
      writeFile(join(out, 'memory.csv'), files.memoryCsv),
    ]);
    const invocations = files.invocationsCsv.split('\n').slice(1).reduce((sum, line) => sum + line.split(',').slice(4).reduce((a, c) => a + Number(c || 0), 0), 0);
    if (ctx.isJson) ctx.printJson({ directory: out, functions, minutes, invocations });
    else ctx.print(`wrote ${functions} functions × ${minutes} minutes (${invocations} invocations) to ${out}`);
    return 0;
  },
};

export const loadgenPlanCommand: Command = {
  name: 'loadgen plan',
  summary: 'write the schedule of a trace replay without sending anything',
  usage: `baton loadgen plan TRACE_DIR [flags] -o schedule.csv

One row per invocation: function,invocationID,minute,offsetUs,runtimeMs,memoryMiB (minute 0-based
from the first trace minute, offsetUs within it).

flags:
${TRACE_PLAN_USAGE}
  -o FILE               the schedule CSV`,
  options: { ...TRACE_PLAN_OPTIONS, output: { type: 'string', short: 'o' } },
  positionals: { min: 1, max: 1, names: 'TRACE_DIR' },
  async run(ctx: CommandContext): Promise<number> {
    const output = requireOutput(ctx.values, 'schedule.csv');
    const { plan, functions } = await planFromTraceFlags(ctx.io, ctx.positionals[0] as string, ctx.values);
    const path = await writeOutput(ctx.io, output, formatScheduleCsv(plan));
    if (ctx.isJson) ctx.printJson({ schedule: path, functions: functions.length, invocations: plan.length });
    else ctx.print(`planned ${plan.length} invocations of ${functions.length} functions into ${path}`);
    return 0;
  },
};

export const loadgenAnalyzeCommand: Command = {
  name: 'loadgen analyze',
  summary: "compute Dirigent's metrics of one or more results files, with plots",
  usage: `baton loadgen analyze RESULTS.csv [MORE.csv …] [--json] [--plots DIR] [--warmup-minutes 10] [--labels a,b] [--group name|dirigent]

Reads per-invocation CSVs written by 'baton loadgen run' or by Invitro. Scheduling latency =
responseTime − actualDuration; per-function mean and its p50/p99 across functions; per-function
slowdown = geometric mean of responseTime / requestedDuration (values < 1 dropped, minutes below
--warmup-minutes dropped); response-time p50/p99 (the cold-start sweep's metric); failures by code.

flags:
  --plots DIR           write SVG plots (CDFs, latency over time); several files share the axes
  --warmup-minutes W    trace minutes left out of the slowdown (default 10)
  --labels a,b          a name per results file (default: the file names)
  --group name|dirigent group by the function name as is (default) or strip Invitro's -<n> suffix`,
  options: { plots: { type: 'string' }, 'warmup-minutes': { type: 'string' }, labels: { type: 'string' }, group: { type: 'string' } },
  positionals: { min: 1, max: 8, names: 'RESULTS.csv' },
  async run(ctx: CommandContext): Promise<number> {
    const files = ctx.positionals;
    const labels = stringFlag(ctx.values, 'labels')?.split(',') ?? files.map((f) => basename(f).replace(/\.csv$/, ''));
    if (labels.length !== files.length) throw new UsageError(`--labels names ${labels.length} files, ${files.length} were given`);
    const group = stringFlag(ctx.values, 'group') ?? 'name';
    if (group !== 'name' && group !== 'dirigent') throw new UsageError(`--group must be name or dirigent (got '${group}')`);
    const options = { warmupMinutes: intFlag(ctx.values, 'warmup-minutes', 0) ?? 10, groupBy: group as Grouping };
    const runs = await Promise.all(files.map(async (file, i) => {
      const { records } = parseResultsCsv(await readFile(resolve(ctx.io.cwd, file), 'utf8'), file);
      return { label: labels[i] ?? file, file, records };
    }));
    const reports = runs.map(({ label, file, records }) => ({ label, file, report: analyzeRecords(records, options) }));
    const plotsDir = stringFlag(ctx.values, 'plots');
    let plots: string[] = [];
    if (plotsDir !== undefined) {
      const dir = resolve(ctx.io.cwd, plotsDir);
      await mkdir(dir, { recursive: true });
      const svgs = renderReportPlots(runs, options);
      plots = await Promise.all(Object.entries(svgs).map(async ([name, svg]) => {
        await writeFile(join(dir, name), svg);
        return join(dir, name);
      }));
    }
    if (ctx.isJson) {
      const withPlots = (value: object): object => (plots.length > 0 ? { ...value, plots } : value);
      ctx.printJson(reports.length === 1 ? withPlots({ file: reports[0]?.file, ...reports[0]?.report }) : withPlots({ runs: reports.map(({ label, file, report }) => ({ label, file, ...report })) }));
      return 0;
    }
    ctx.print(formatReportTable(reports));
    for (const plot of plots) ctx.print(`plot ${plot}`);
    return 0;
  },
};
