import { CERT_ROLES, certsInit } from '../../core/certs.ts';
import { intFlag, stringFlag, UsageError, type Command, type CommandContext } from '../command.ts';

/** `baton certs init DIR`: a cluster CA and one certificate per plane role, made by `openssl`. */
export const certsCommand: Command = {
  name: 'certs',
  summary: 'make a cluster CA and the planes\' TLS certificates',
  usage: `baton certs init DIR [--hosts 127.0.0.1,localhost] [--days 365] [--force]
  --hosts LIST  names and addresses the daemons are reached at, comma-separated (default 127.0.0.1,::1,localhost)
  --days N      how long the CA and the certificates are valid (default 365)
  --force       replace an existing CA (every certificate made from the old one stops being trusted)
Writes ca.crt, ca.key and controlplane, dataplane, worker .crt/.key (keys mode 0600) into DIR, with openssl.`,
  options: {
    hosts: { type: 'string' },
    days: { type: 'string' },
    force: { type: 'boolean' },
  },
  positionals: { min: 2, max: 2, names: 'init and a directory' },
  async run(ctx: CommandContext): Promise<number> {
    const [action, dir] = ctx.positionals;
    if (action !== 'init') throw new UsageError(`unknown certs action '${action}' (init)`);
    const hosts = (stringFlag(ctx.values, 'hosts') ?? '127.0.0.1,::1,localhost').split(',').map((h) => h.trim()).filter((h) => h !== '');
    const files = await certsInit(dir as string, { hosts, days: intFlag(ctx.values, 'days', 1) ?? 365, isForced: ctx.values['force'] === true });
    if (ctx.isJson) {
      ctx.printJson(files);
      return 0;
    }
    ctx.print(`CA:           ${files.caCert} (key ${files.caKey}, keep it off the daemons' machines)`);
    for (const role of CERT_ROLES) ctx.print(`${role.padEnd(13)} ${files.roles[role].cert} (key ${files.roles[role].key})`);
    ctx.print(`hosts:        ${hosts.join(', ')}`);
    return 0;
  },
};
