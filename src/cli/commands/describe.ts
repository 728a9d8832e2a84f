import { stringify as toYaml } from 'yaml';
import type { QuotaUsage } from '../../api/quotas.ts';
import type { ColdStartRecord, SandboxFailureRecord, SandboxInfo } from '../client.ts';
import type { Command, CommandContext } from '../command.ts';
import { formatAge, formatMs, formatTable } from '../format.ts';

const RECENT_COLD_STARTS = 10;

/** `baton describe NAME`: spec, status, sandboxes and the latest cold-start breakdowns. */
export const describeCommand: Command = {
  name: 'describe',
  summary: 'show a function: spec, sandboxes, recent cold starts and failures',
  usage: 'baton describe NAME',
  options: {},
  positionals: { min: 1, max: 1, names: 'NAME' },
  async run(ctx: CommandContext): Promise<number> {
    const name = ctx.positionals[0] as string;
    const client = ctx.client();
    const [detail, sandboxes] = await Promise.all([client.getFunction(name), client.listSandboxes(name)]);
    if (ctx.isJson) {
      ctx.printJson({ function: detail, sandboxes });
      return 0;
    }
    const now = (ctx.io.now ?? Date.now)();
    const { status } = detail;
    ctx.print(`name:        ${detail.spec.name}`);
    ctx.print(`generation:  ${detail.generation}`);
    ctx.print(`created:     ${detail.createdAt} (${formatAge(detail.createdAt, now)} ago)`);
    ctx.print(`updated:     ${detail.updatedAt} (${formatAge(detail.updatedAt, now)} ago)`);
    ctx.print(`sandboxes:   ${status.ready} ready of ${status.desired} desired, ${status.starting} starting, ${status.draining} draining`);
    if (status.heldByQuota !== undefined) ctx.print(`held back:   by the quota of '${status.heldByQuota}' (it has no room for more sandboxes)`);
    for (const q of detail.quotas ?? []) ctx.print(`quota:       ${formatQuota(q)}`);
    ctx.print();
    ctx.print('spec:');
    ctx.print(indent(toYaml(detail.spec).trimEnd()));
    ctx.print();
    printSandboxes(ctx, sandboxes, now);
    ctx.print();
    printColdStarts(ctx, detail.recentColdStarts ?? []);
    if ((detail.recentFailures ?? []).length > 0) {
      ctx.print();
      printFailures(ctx, detail.recentFailures ?? []);
    }
    return 0;
  },
};

function printSandboxes(ctx: CommandContext, sandboxes: readonly SandboxInfo[], now: number): void {
  if (sandboxes.length === 0) {
    ctx.print('sandboxes: none');
    return;
  }
  ctx.print('sandboxes:');
  ctx.print(indent(formatTable(['SANDBOX', 'WORKER', 'GEN', 'STATE', 'ADDRESS', 'AGE'], sandboxes.map((s) => [
    s.sandboxId, s.workerId, String(s.generation), s.state, s.address ?? '-', formatAge(s.createdAt, now),
  ]))));
}

function printColdStarts(ctx: CommandContext, coldStarts: readonly ColdStartRecord[]): void {
  const recent = coldStarts.slice(-RECENT_COLD_STARTS).reverse();
  if (recent.length === 0) {
    ctx.print('recent cold starts: none');
    return;
  }
  ctx.print('recent cold starts (ms; newest first):');
  ctx.print(indent(formatTable(['SANDBOX', 'WORKER', 'READY AT', 'FETCH', 'START', 'READY', 'WORKER TOTAL', 'CONTROL PLANE'], recent.map((c) => {
    const b = c.breakdown;
    return [c.sandboxId, c.workerId, c.at, formatMs(b.fetchMs), formatMs(b.startMs), formatMs(b.readyMs), formatMs(b.totalMs), formatMs(b.controlPlaneMs)];
  }))));
}

function printFailures(ctx: CommandContext, failures: readonly SandboxFailureRecord[]): void {
  ctx.print('recent sandbox failures (newest first):');
  ctx.print(indent(formatTable(['SANDBOX', 'WORKER', 'AT', 'REASON', 'DETAIL'], [...failures].reverse().map((f) => [
    f.sandboxId, f.workerId, f.at, f.reason,
    f.code !== undefined ? `${f.code}: ${f.message ?? ''}`.slice(0, 120) : f.signal != null ? `signal ${f.signal}` : `exit code ${f.exitCode ?? '-'}`,
  ]))));
}

/** `team-a-*: 2/2 sandboxes, 256/4096 MiB` (a limit not set shows as its usage alone). */
export function formatQuota(q: QuotaUsage): string {
  const sandboxes = q.maxSandboxes === undefined ? `${q.sandboxes}` : `${q.sandboxes}/${q.maxSandboxes}`;
  const memory = q.maxMemoryMiB === undefined ? `${q.memoryMiB}` : `${q.memoryMiB}/${q.maxMemoryMiB}`;
  return `${q.scope}: ${sandboxes} sandboxes, ${memory} MiB`;
}

function indent(text: string): string {
  return text.split('\n').map((l) => `  ${l}`).join('\n');
}
