import { resolve } from 'node:path';
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
  usage: `baton haproxy-config [--dataplane HOST:PORT]… [--bind HOST:PORT] [--stats HOST:PORT] [--check-interval-ms N] [--tls-pem FILE --tls-ca-file FILE [--tls-verify-host NAME]]
  --dataplane HOST:PORT    a data plane's invocation address (repeat it); default: every data plane the control plane knows
  --bind HOST:PORT         where HAProxy listens for invocations (default 127.0.0.1:8000)
  --stats HOST:PORT        also serve HAProxy's statistics page there
  --check-interval-ms N    health-check interval (default 500)
  --tls-pem FILE           serve HTTPS with this PEM (certificate and key in one file) and call the data planes over HTTPS
  --tls-ca-file FILE       the CA the data planes' certificates are checked against (with --tls-pem)
  --tls-verify-host NAME   the name their certificates must carry (default localhost)`,
  options: {
    dataplane: { type: 'string', multiple: true },
    bind: { type: 'string' },
    stats: { type: 'string' },
    'check-interval-ms': { type: 'string' },
    'tls-pem': { type: 'string' },
    'tls-ca-file': { type: 'string' },
    'tls-verify-host': { type: 'string' },
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
    const pem = stringFlag(ctx.values, 'tls-pem');
    const caFile = stringFlag(ctx.values, 'tls-ca-file');
    if ((pem === undefined) !== (caFile === undefined)) throw new UsageError('--tls-pem and --tls-ca-file go together');
    ctx.io.stdout.write(renderHaproxyConfig({
      bind: stringFlag(ctx.values, 'bind') ?? '127.0.0.1:8000',
      dataplanes,
      ...(stats === undefined ? {} : { stats }),
      ...(checkIntervalMs === undefined ? {} : { checkIntervalMs }),
      ...(pem === undefined || caFile === undefined ? {} : { tls: { certFile: resolve(ctx.io.cwd, pem), caFile: resolve(ctx.io.cwd, caFile), verifyHost: stringFlag(ctx.values, 'tls-verify-host') ?? 'localhost' } }),
    }));
    return 0;
  },
};
