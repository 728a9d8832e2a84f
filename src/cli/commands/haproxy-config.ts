import type { Command, CommandContext } from '../command.ts';
import { stringFlag, stringListFlag, UsageError } from '../command.ts';
import { renderHaproxyConfig } from '../haproxy-config.ts';

/**
 * `baton haproxy-config`: an HAProxy configuration that spreads invocations over several data
 * planes (see `renderHaproxyConfig`). The data planes are the `--dataplane` flags, or — without
 * any — the ones the control plane knows.
 */
export const haproxyConfigCommand: Command = {
  name: 'haproxy-config',
  summary: 'print an HAProxy configuration for several data planes',
  usage: `baton haproxy-config [--dataplane HOST:PORT]… [--bind HOST:PORT] [--stats HOST:PORT] [--check-interval-ms N]
  --dataplane HOST:PORT    a data plane's invocation address (repeat it); default: every data plane the control plane knows
  --bind HOST:PORT         where HAProxy listens for invocations (default 127.0.0.1:8000)
  --stats HOST:PORT        also serve HAProxy's statistics page there
  --check-interval-ms N    health-check interval (default 500)`,
  options: {
    dataplane: { type: 'string', multiple: true },
    bind: { type: 'string' },
    stats: { type: 'string' },
    'check-interval-ms': { type: 'string' },
  },
  positionals: { min: 0, max: 0, names: '' },
  async run(ctx: CommandContext): Promise<number> {
    let dataplanes = stringListFlag(ctx.values, 'dataplane');
    if (dataplanes.length === 0) {
      dataplanes = (await ctx.client().listDataplanes()).map((d) => new URL(d.proxyUrl).host).sort();
    }
    const interval = stringFlag(ctx.values, 'check-interval-ms');
    const checkIntervalMs = interval === undefined ? undefined : Number(interval);
    if (checkIntervalMs !== undefined && !(Number.isInteger(checkIntervalMs) && checkIntervalMs >= 50 && checkIntervalMs <= 60_000)) {
      throw new UsageError(`--check-interval-ms must be an integer in [50, 60000], got '${interval}'`);
    }
    const stats = stringFlag(ctx.values, 'stats');
    ctx.io.stdout.write(renderHaproxyConfig({
      bind: stringFlag(ctx.values, 'bind') ?? '127.0.0.1:8000',
      dataplanes,
      ...(stats === undefined ? {} : { stats }),
      ...(checkIntervalMs === undefined ? {} : { checkIntervalMs }),
    }));
    return 0;
  },
};
