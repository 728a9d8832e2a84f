import { intFlag, type Command, type CommandContext } from '../command.ts';
import { printList } from './invocations.ts';

/** `baton dlq NAME [--redrive]`: the function's dead-letter queue (on the data plane), and redriving it. */
export const dlqCommand: Command = {
  name: 'dlq',
  summary: 'list a function\'s dead-lettered asynchronous invocations, or queue them again',
  usage: `baton dlq NAME [--redrive] [--limit N]

flags:
  --redrive             queue every dead letter of NAME again (attempts start over)
  --limit N             list at most N (default: 50)
  --dataplane-url URL   data plane (default: $BATON_DATAPLANE_URL, else http://127.0.0.1:8080)`,
  options: {
    redrive: { type: 'boolean' },
    limit: { type: 'string' },
    'dataplane-url': { type: 'string' },
  },
  positionals: { min: 1, max: 1, names: 'NAME' },
  async run(ctx: CommandContext): Promise<number> {
    const name = ctx.positionals[0] as string;
    const options = ctx.io.signal === undefined ? {} : { signal: ctx.io.signal };
    if (ctx.values['redrive'] === true) {
      const redriven = await ctx.client().redrive(name, undefined, options);
      if (ctx.isJson) ctx.printJson({ redriven });
      else ctx.print(`redriven ${redriven.length} invocation${redriven.length === 1 ? '' : 's'} of ${name}`);
      return 0;
    }
    const list = await ctx.client().listInvocations({ function: name, state: 'dead-lettered', limit: intFlag(ctx.values, 'limit', 1) ?? 50 }, options);
    if (ctx.isJson) ctx.printJson({ invocations: list });
    else printList(ctx, list);
    return 0;
  },
};
