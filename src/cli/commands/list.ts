import type { Command, CommandContext } from '../command.ts';
import { formatTable } from '../format.ts';
import { listWithStatus } from './function-status.ts';

/** `baton list`: one row per function. */
export const listCommand: Command = {
  name: 'list',
  summary: 'list functions with their sandbox counts',
  usage: 'baton list',
  options: {},
  positionals: { min: 0, max: 0, names: '' },
  async run(ctx: CommandContext): Promise<number> {
    const functions = await listWithStatus(ctx.client(), ctx.io.signal);
    if (ctx.isJson) {
      ctx.printJson({ functions: functions.map(({ record, status }) => ({ ...record, status: status ?? null })) });
      return 0;
    }
    if (functions.length === 0) {
      ctx.print("no functions (deploy one with 'baton deploy')");
      return 0;
    }
    ctx.print(formatTable(['NAME', 'RUNTIME', 'GEN', 'CONCURRENCY', 'READY/DESIRED'], functions.map(({ record, status }) => [
      record.spec.name,
      record.spec.runtime,
      String(record.generation),
      String(record.spec.concurrency),
      status === undefined ? '-' : `${status.ready}/${status.desired}`,
    ])));
    return 0;
  },
};
