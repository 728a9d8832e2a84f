import { intFlag, UsageError, type Command, type CommandContext } from '../command.ts';
import { formatTable } from '../format.ts';

/** `baton quota set|list|delete`: per-scope quotas of sandboxes and memory (an admin token sets and deletes them). */
export const quotaCommand: Command = {
  name: 'quota',
  summary: 'set, list or delete per-scope quotas of sandboxes and memory',
  usage: `baton quota set SCOPE [--sandboxes N] [--memory MIB]
       baton quota list
       baton quota delete SCOPE
  SCOPE            a function-name glob (e.g. 'team-a-*'); every function it matches is bound by the quota
  --sandboxes N    the most sandboxes (starting, ready or draining) of all those functions together
  --memory MIB     the most memory (the sum of their resources.memoryMiB) of those sandboxes
Setting a quota again replaces both limits; one left out is no longer limited.`,
  options: {
    sandboxes: { type: 'string' },
    memory: { type: 'string' },
  },
  positionals: { min: 1, max: 2, names: 'set, list or delete' },
  async run(ctx: CommandContext): Promise<number> {
    const [action, scope] = ctx.positionals;
    switch (action) {
      case 'set': return set(ctx, scope);
      case 'list': return list(ctx, scope);
      case 'delete': return remove(ctx, scope);
      default: throw new UsageError(`unknown quota action '${action}' (set, list or delete)`);
    }
  },
};

async function set(ctx: CommandContext, scope: string | undefined): Promise<number> {
  if (scope === undefined) throw new UsageError("'baton quota set' needs a SCOPE, e.g. 'team-a-*'");
  const maxSandboxes = intFlag(ctx.values, 'sandboxes', 0);
  const maxMemoryMiB = intFlag(ctx.values, 'memory', 0);
  if (maxSandboxes === undefined && maxMemoryMiB === undefined) throw new UsageError("'baton quota set' needs --sandboxes, --memory or both");
  const quota = await ctx.client().setQuota(scope, {
    ...(maxSandboxes === undefined ? {} : { maxSandboxes }),
    ...(maxMemoryMiB === undefined ? {} : { maxMemoryMiB }),
  });
  if (ctx.isJson) ctx.printJson(quota);
  else ctx.print(`quota ${quota.scope}: ${quota.maxSandboxes ?? '-'} sandboxes, ${quota.maxMemoryMiB ?? '-'} MiB (using ${quota.sandboxes} and ${quota.memoryMiB} MiB now)`);
  return 0;
}

async function list(ctx: CommandContext, extra: string | undefined): Promise<number> {
  if (extra !== undefined) throw new UsageError(`unexpected argument '${extra}' for 'baton quota list'`);
  const quotas = await ctx.client().listQuotas();
  if (ctx.isJson) {
    ctx.printJson({ quotas });
    return 0;
  }
  ctx.print(formatTable(['SCOPE', 'SANDBOXES', 'MAX SANDBOXES', 'MEMORY MIB', 'MAX MEMORY MIB'], quotas.map((q) => [
    q.scope, String(q.sandboxes), q.maxSandboxes === undefined ? '-' : String(q.maxSandboxes), String(q.memoryMiB), q.maxMemoryMiB === undefined ? '-' : String(q.maxMemoryMiB),
  ])));
  return 0;
}

async function remove(ctx: CommandContext, scope: string | undefined): Promise<number> {
  if (scope === undefined) throw new UsageError("'baton quota delete' needs a SCOPE");
  const result = await ctx.client().deleteQuota(scope);
  if (ctx.isJson) ctx.printJson(result);
  else ctx.print(`quota ${result.deleted} deleted`);
  return 0;
}
