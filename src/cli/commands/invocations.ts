import { wallTimeMs } from '../../core/clock.ts';
import type { InvocationView } from '../client.ts';
import { intFlag, stringFlag, UsageError, type Command, type CommandContext } from '../command.ts';
import { formatAge, formatTable } from '../format.ts';

const STATES = ['queued', 'running', 'succeeded', 'failed', 'dead-lettered'];

/** `baton invocations NAME [--state S]` and `baton invocations --id ID`: asynchronous invocations, from the data plane. */
export const invocationsCommand: Command = {
  name: 'invocations',
  summary: 'list a function\'s asynchronous invocations, or show one',
  usage: `baton invocations NAME [--state STATE] [--limit N]
       baton invocations --id ID

flags:
  --state STATE         queued, running, succeeded, failed or dead-lettered
  --limit N             at most N, newest first (default: 50)
  --id ID               one invocation: state, attempts and response
  --dataplane-url URL   data plane (default: $BATON_DATAPLANE_URL, else http://127.0.0.1:8080)`,
  options: {
    state: { type: 'string' },
    limit: { type: 'string' },
    id: { type: 'string' },
    'dataplane-url': { type: 'string' },
  },
  positionals: { min: 0, max: 1, names: 'NAME' },
  async run(ctx: CommandContext): Promise<number> {
    const id = stringFlag(ctx.values, 'id');
    const signal = ctx.io.signal;
    if (id !== undefined) {
      const view = await ctx.client().getInvocation(id, signal === undefined ? {} : { signal });
      if (ctx.isJson) ctx.printJson(view);
      else printOne(ctx, view);
      return 0;
    }
    const name = ctx.positionals[0];
    if (name === undefined) throw new UsageError('give a function NAME or --id ID');
    const state = stringFlag(ctx.values, 'state');
    if (state !== undefined && !STATES.includes(state)) throw new UsageError(`--state must be one of ${STATES.join(', ')} (got '${state}')`);
    const list = await ctx.client().listInvocations({ function: name, ...(state === undefined ? {} : { state }), limit: intFlag(ctx.values, 'limit', 1) ?? 50 }, signal === undefined ? {} : { signal });
    if (ctx.isJson) {
      ctx.printJson({ invocations: list });
      return 0;
    }
    printList(ctx, list);
    return 0;
  },
};

export function printList(ctx: CommandContext, list: readonly InvocationView[]): void {
  if (list.length === 0) {
    ctx.print('no invocations');
    return;
  }
  const now = ctx.io.now?.() ?? wallTimeMs();
  ctx.print(formatTable(['ID', 'STATE', 'ATTEMPTS', 'AGE', 'STATUS', 'REASON'], list.map((v) => [
    v.id, v.state, String(v.attempts.length), formatAge(v.acceptedAt, now), v.response === undefined ? '-' : String(v.response.status), v.deadLetterReason ?? '-',
  ])));
}

function printOne(ctx: CommandContext, v: InvocationView): void {
  ctx.print(`id:        ${v.id}\nfunction:  ${v.function}\nstate:     ${v.state}${v.deadLetterReason === undefined ? '' : ` (${v.deadLetterReason})`}\naccepted:  ${v.acceptedAt}${v.finishedAt === undefined ? '' : `\nfinished:  ${v.finishedAt}`}`);
  for (const [i, a] of v.attempts.entries()) ctx.print(`attempt ${i + 1}: ${a.startedAt} ${a.outcome ?? 'running'}${a.status === undefined ? '' : ` ${a.status}`}${a.code === undefined ? '' : ` ${a.code}`}`);
  if (v.response !== undefined) ctx.print(`response:  ${v.response.status}${v.response.isTruncated === true ? ' (truncated)' : ''}\n${v.response.body ?? ''}`);
}
