import { stringify as toYaml } from 'yaml';
import type { SandboxInfo } from '../client.ts';
import type { Command, CommandContext } from '../command.ts';
import { formatAge, formatMs, formatTable } from '../format.ts';

const RECENT_COLD_STARTS = 10;

/** `baton describe NAME`: spec, status, sandboxes and the latest cold-start breakdowns. */
export const describeCommand: Command = {
  name: 'describe',
  summary: 'show a function: spec, sandboxes, recent cold starts',
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
    ctx.print();
    ctx.print('spec:');
    ctx.print(indent(toYaml(detail.spec).trimEnd()));
    ctx.print();
    printSandboxes(ctx, sandboxes, now);
    ctx.print();
    printColdStarts(ctx, sandboxes);
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

function printColdStarts(ctx: CommandContext, sandboxes: readonly SandboxInfo[]): void {
  const recent = sandboxes
    .filter((s) => s.breakdown !== undefined)
    .sort((a, b) => (b.readyAt ?? b.createdAt).localeCompare(a.readyAt ?? a.createdAt))
    .slice(0, RECENT_COLD_STARTS);
  if (recent.length === 0) {
    ctx.print('recent cold starts: none');
    return;
  }
  ctx.print('recent cold starts (ms):');
  ctx.print(indent(formatTable(['SANDBOX', 'READY AT', 'SCHEDULE', 'FETCH', 'START', 'READY', 'TOTAL', 'END-TO-END'], recent.map((s) => {
    const b = s.breakdown;
    return [s.sandboxId, s.readyAt ?? '-', formatMs(b?.scheduleMs), formatMs(b?.fetchMs), formatMs(b?.startMs),
      formatMs(b?.readyMs), formatMs(b?.totalMs), formatMs(b?.endToEndMs)];
  }))));
}

function indent(text: string): string {
  return text.split('\n').map((l) => `  ${l}`).join('\n');
}
