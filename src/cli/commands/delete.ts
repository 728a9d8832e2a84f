import type { Command, CommandContext } from '../command.ts';

/** `baton delete NAME`: removes the function; its sandboxes are drained and deleted. */
export const deleteCommand: Command = {
  name: 'delete',
  summary: 'delete a function and its sandboxes',
  usage: 'baton delete NAME',
  options: {},
  positionals: { min: 1, max: 1, names: 'NAME' },
  async run(ctx: CommandContext): Promise<number> {
    const name = ctx.positionals[0] as string;
    const result = await ctx.client().deleteFunction(name);
    if (ctx.isJson) ctx.printJson(result);
    else ctx.print(`deleted function ${result.deleted}`);
    return 0;
  },
};
