/**
 * A synthetic trace in the Azure Functions 2019 format (Invitro's three files), shaped like the
 * Azure data as "Serverless in the Wild" (Shahrad et al., ATC'20) describes it. Pure and seeded:
 * the same options give the same three files. The distributions and why are in README.md
 * ("Synthetic traces").
 */
import { BatonError } from '../core/errors.ts';
import { createRandom } from '../core/random.ts';
import type { Random } from '../core/random.ts';
import { DURATION_COLUMNS, MEMORY_COLUMNS } from './trace.ts';
import type { TraceFiles } from './trace.ts';

export interface SynthOptions {
  readonly functions: number;
  readonly minutes: number;
  readonly seed: number;
}

/** The parameters, exported so that the README and the tests name the same numbers. */
export const SYNTH_PARAMETERS = {
  /** ln of the mean invocations per minute of a function ~ N(mu, sigma): rates over ~8 orders of magnitude. */
  rateLogMean: Math.log(0.3),
  rateLogSigma: 2.5,
  /** No function is invoked more than this per minute (keeps a few-minute replay on one machine bounded). */
  maxPerMinute: 1_000,
  /** Share of timer-triggered functions: a fixed period, the same count every period. */
  timerShare: 0.15,
  /** Timer periods in minutes, drawn uniformly. */
  timerPeriodsMin: [1, 5, 10, 15, 30, 60],
  /** ln of a function's average execution time in seconds ~ N(mu, sigma) (the paper's log-normal fit). */
  durationLogMean: -0.38,
  durationLogSigma: 2.36,
  /** Spread of one function's execution times around its average (log-normal sigma). */
  durationWithinSigma: 0.6,
  /** Average allocated memory (MB) ~ Burr XII(c, k, lambda) (the paper's fit), clamped to [1, 10 240]. */
  memoryBurrC: 11.652,
  memoryBurrK: 0.221,
  memoryBurrLambda: 107.083,
  /** Spread of one function's allocated memory around its average (log-normal sigma). */
  memoryWithinSigma: 0.15,
} as const;

const TRIGGERS = ['http', 'queue', 'event', 'storage', 'orchestration', 'others'] as const;
/** Standard-normal quantiles of the duration percentile columns (0 and 100 capped at ±3.09). */
const DURATION_Z = [-3.09, -2.326, -0.674, 0, 0.674, 2.326, 3.09] as const;
/** … and of the memory columns pct1, 5, 25, 50, 75, 95, 99, 100. */
const MEMORY_Z = [-2.326, -1.645, -0.674, 0, 0.674, 1.645, 2.326, 3.09] as const;

function normal(random: Random): number {
  // Box–Muller; 1 − u keeps the logarithm finite.
  const u = 1 - random.next();
  const v = random.next();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

function poisson(lambda: number, random: Random): number {
  if (lambda <= 0) return 0;
  if (lambda > 50) return Math.max(0, Math.round(lambda + Math.sqrt(lambda) * normal(random))); // normal approximation
  const limit = Math.exp(-lambda);
  let k = 0;
  let product = random.next();
  while (product > limit) {
    k++;
    product *= random.next();
  }
  return k;
}

function hex(random: Random, length: number): string {
  let text = '';
  for (let i = 0; i < length; i++) text += (random.int(16)).toString(16);
  return text;
}

const round3 = (v: number): number => Math.round(v * 1000) / 1000;

/** The three files of a synthetic trace. Throws ERR_INVALID_REQUEST for sizes out of range. */
export function synthesizeTrace(options: SynthOptions): TraceFiles {
  const { functions, minutes, seed } = options;
  if (!Number.isInteger(functions) || functions < 1 || functions > 100_000) {
    throw new BatonError('ERR_INVALID_REQUEST', `functions must be an integer in [1, 100000], got ${functions}`, { details: { functions } });
  }
  if (!Number.isInteger(minutes) || minutes < 1 || minutes > 1_440) {
    throw new BatonError('ERR_INVALID_REQUEST', `minutes must be an integer in [1, 1440], got ${minutes}`, { details: { minutes } });
  }
  const p = SYNTH_PARAMETERS;
  const random = createRandom(seed);
  const minuteNames = Array.from({ length: minutes }, (_, m) => String(m + 1));
  const invocations = [['HashOwner', 'HashApp', 'HashFunction', 'Trigger', ...minuteNames].join(',')];
  const durations = [['HashOwner', 'HashApp', 'HashFunction', ...DURATION_COLUMNS].join(',')];
  const memory = [['HashOwner', 'HashApp', 'HashFunction', ...MEMORY_COLUMNS].join(',')];
  for (let f = 0; f < functions; f++) {
    const owner = hex(random, 64);
    const app = hex(random, 64);
    const hash = hex(random, 64);
    const isTimer = random.next() < p.timerShare;
    const counts: number[] = Array.from({ length: minutes }, () => 0);
    let trigger: string;
    if (isTimer) {
      trigger = 'timer';
      const period = p.timerPeriodsMin[random.int(p.timerPeriodsMin.length)] ?? 60;
      const phase = random.int(period);
      const perFiring = 1 + random.int(3);
      for (let m = phase; m < minutes; m += period) counts[m] = perFiring;
    } else {
      trigger = TRIGGERS[random.int(TRIGGERS.length)] ?? 'http';
      const rate = Math.min(p.maxPerMinute, Math.exp(p.rateLogMean + p.rateLogSigma * normal(random)));
      for (let m = 0; m < minutes; m++) counts[m] = Math.min(p.maxPerMinute, poisson(rate, random));
    }
    if (!counts.some((c) => c > 0)) counts[random.int(minutes)] = 1; // the dataset holds only functions that ran
    invocations.push([owner, app, hash, trigger, ...counts].join(','));

    const averageMs = Math.min(60_000, Math.max(1, 1000 * Math.exp(p.durationLogMean + p.durationLogSigma * normal(random))));
    const durationPct = DURATION_Z.map((z) => round3(Math.min(60_000, Math.max(1, averageMs * Math.exp(p.durationWithinSigma * z)))));
    const count = counts.reduce((a, b) => a + b, 0);
    durations.push([owner, app, hash, round3(averageMs), count, durationPct[0], durationPct[6], ...durationPct].join(','));

    const u = random.next();
    const burr = p.memoryBurrLambda * ((1 - u) ** (-1 / p.memoryBurrK) - 1) ** (1 / p.memoryBurrC);
    const averageMiB = Math.min(10_240, Math.max(1, burr));
    const memoryPct = MEMORY_Z.map((z) => round3(Math.min(10_240, Math.max(1, averageMiB * Math.exp(p.memoryWithinSigma * z)))));
    memory.push([owner, app, hash, Math.max(1, count), round3(averageMiB), ...memoryPct].join(','));
  }
  const text = (lines: string[]): string => `${lines.join('\n')}\n`;
  return { invocationsCsv: text(invocations), durationsCsv: text(durations), memoryCsv: text(memory) };
}
