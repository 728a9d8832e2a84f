import type { WorkerInfo } from '../client.ts';
import type { Command, CommandContext } from '../command.ts';
import { formatDuration, formatTable } from '../format.ts';
import { listWithStatus } from './function-status.ts';

/** `baton status`: workers, data planes and sandbox counts of the whole cluster. */
export const statusCommand: Command = {
  name: 'status',
  summary: 'show workers, data planes and sandbox counts',
  usage: 'baton status',
  options: {},
  positionals: { min: 0, max: 0, names: '' },
  async run(ctx: CommandContext): Promise<number> {
    const client = ctx.client();
    const [workers, dataplanes, functions] = await Promise.all([
      client.listWorkers(), client.listDataplanes(), listWithStatus(client, ctx.io.signal),
    ]);
    const totals = { functions: functions.length, desired: 0, ready: 0, starting: 0, draining: 0 };
    for (const { status } of functions) {
      if (status === undefined) continue;
      totals.desired += status.desired;
      totals.ready += status.ready;
      totals.starting += status.starting;
      totals.draining += status.draining;
    }
    if (ctx.isJson) {
      ctx.printJson({ workers, dataplanes, sandboxes: totals });
      return 0;
    }
    ctx.print(`workers (${workers.length}):`);
    if (workers.length > 0) {
      ctx.print(indent(formatTable(['WORKER', 'URL', 'STATE', 'CPU (MILLI)', 'MEMORY (MiB)', 'SANDBOXES', 'HEARTBEAT'], workers.map((w) => [
        w.workerId, w.url, w.state, usage(w, 'cpuMilli'), usage(w, 'memoryMiB'), count(w.sandboxes), `${ago(w.lastHeartbeatAgoMs)} ago`,
      ]))));
    }
    ctx.print();
    ctx.print(`data planes (${dataplanes.length}):`);
    if (dataplanes.length > 0) {
      ctx.print(indent(formatTable(['DATAPLANE', 'URL', 'PROXY', 'STATE', 'ROUTING VERSION'], dataplanes.map((d) => [
        d.dataplaneId, d.url, d.proxyUrl, d.state, String(d.routingVersion),
      ]))));
    }
    ctx.print();
    ctx.print(`functions: ${totals.functions}`);
    ctx.print(`sandboxes: ${totals.ready} ready, ${totals.starting} starting, ${totals.draining} draining (${totals.desired} desired)`);
    return 0;
  },
};

/** `allocated/capacity` of one resource, when the worker reports both as `{cpuMilli, memoryMiB}`. */
function usage(worker: WorkerInfo, resource: 'cpuMilli' | 'memoryMiB'): string {
  const cap = (worker.capacity as Record<string, unknown> | null | undefined)?.[resource];
  const used = (worker.allocated as Record<string, unknown> | null | undefined)?.[resource];
  if (typeof cap !== 'number') return '-';
  return `${typeof used === 'number' ? used : '?'}/${cap}`;
}

function count(sandboxes: unknown): string {
  if (typeof sandboxes === 'number') return String(sandboxes);
  if (Array.isArray(sandboxes)) return String(sandboxes.length);
  return '-';
}

function ago(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)}ms` : formatDuration(ms);
}

function indent(text: string): string {
  return text.split('\n').map((l) => `  ${l}`).join('\n');
}
