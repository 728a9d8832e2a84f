import type { AuditEntry } from '../../api/audit.ts';
import { intFlag, type Command, type CommandContext } from '../command.ts';

const FOLLOW_INTERVAL_MS = 1_000;

/** `baton audit [--follow] [--tail N]`: the control plane's audit log of management changes (an admin token is needed). */
export const auditCommand: Command = {
  name: 'audit',
  summary: 'show the audit log of management changes',
  usage: `baton audit [--tail N] [--follow]
  --tail N    the last N entries (default 100)
  --follow    keep printing new entries until Ctrl-C`,
  options: {
    tail: { type: 'string' },
    follow: { type: 'boolean', short: 'f' },
  },
  positionals: { min: 0, max: 0, names: '' },
  async run(ctx: CommandContext): Promise<number> {
    const client = ctx.client();
    const signal = ctx.io.signal;
    let entries = await client.readAudit({ limit: intFlag(ctx.values, 'tail', 1) ?? 100 }, { ...(signal === undefined ? {} : { signal }) });
    let after = print(ctx, entries, 0);
    const isStopped = (): boolean => signal?.aborted === true;
    while (ctx.values['follow'] === true && !isStopped()) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, FOLLOW_INTERVAL_MS);
        signal?.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
      });
      if (isStopped()) break;
      entries = await client.readAudit({ after, limit: 1_000 });
      after = print(ctx, entries, after);
    }
    return 0;
  },
};

/** Prints the entries (JSON lines with --json); answers the highest `seq` seen. */
function print(ctx: CommandContext, entries: readonly AuditEntry[], after: number): number {
  let last = after;
  for (const e of entries) {
    last = Math.max(last, e.seq);
    if (ctx.isJson) ctx.print(JSON.stringify(e));
    else ctx.print(`${e.at}  ${String(e.status).padEnd(3)}  ${(e.tokenId ?? '-').padEnd(12)}  ${e.action.padEnd(16)}  ${e.target ?? '-'}${e.code === undefined ? '' : `  ${e.code}`}`);
  }
  return last;
}
