import { TOKEN_ROLES, type TokenRole } from '../../api/tokens.ts';
import { stringFlag, stringListFlag, UsageError, type Command, type CommandContext } from '../command.ts';
import { formatTable } from '../format.ts';

const UNITS_MS: Readonly<Record<string, number>> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `30d`, `12h`, `90m`, `45s` → milliseconds. */
export function parseExpiry(text: string): number {
  const match = /^(\d{1,6})([smhd])$/.exec(text);
  if (match === null) throw new UsageError(`--expires must be a number and a unit (s, m, h, d), e.g. 30d (got '${text}')`);
  return Number(match[1]) * (UNITS_MS[match[2] as string] as number);
}

/** `baton token create|list|revoke`: API tokens (an admin token is needed). */
export const tokenCommand: Command = {
  name: 'token',
  summary: 'create, list or revoke API tokens',
  usage: `baton token create --role ROLE [--scope GLOB]… [--expires 30d] [--description TEXT]
       baton token list
       baton token revoke ID
  --role ROLE        ${TOKEN_ROLES.join(', ')}
  --scope GLOB       limit the token to functions whose name matches (e.g. 'team-a-*'); repeatable
  --expires N[smhd]  the token stops working after this long (default: until revoked)
  --description T    what the token is for (shown in 'baton token list')
The token is printed once, by 'create'; only its id is shown afterwards.`,
  options: {
    role: { type: 'string' },
    scope: { type: 'string', multiple: true },
    expires: { type: 'string' },
    description: { type: 'string' },
  },
  positionals: { min: 1, max: 2, names: 'create, list or revoke' },
  async run(ctx: CommandContext): Promise<number> {
    const [action, id] = ctx.positionals;
    switch (action) {
      case 'create': return create(ctx, id);
      case 'list': return list(ctx, id);
      case 'revoke': return revoke(ctx, id);
      default: throw new UsageError(`unknown token action '${action}' (create, list or revoke)`);
    }
  },
};

async function create(ctx: CommandContext, extra: string | undefined): Promise<number> {
  if (extra !== undefined) throw new UsageError(`unexpected argument '${extra}' for 'baton token create'`);
  const role = stringFlag(ctx.values, 'role');
  if (role === undefined || !(TOKEN_ROLES as readonly string[]).includes(role)) throw new UsageError(`--role must be one of ${TOKEN_ROLES.join(', ')}`);
  const expires = stringFlag(ctx.values, 'expires');
  const description = stringFlag(ctx.values, 'description');
  const created = await ctx.client().createToken({
    role: role as TokenRole, scopes: stringListFlag(ctx.values, 'scope'),
    ...(expires === undefined ? {} : { expiresInMs: parseExpiry(expires) }),
    ...(description === undefined ? {} : { description }),
  });
  if (ctx.isJson) {
    ctx.printJson(created);
    return 0;
  }
  ctx.print(created.token);
  ctx.io.stderr.write(`token ${created.id} (${created.role}${created.scopes.length === 0 ? '' : `, scope ${created.scopes.join(' ')}`}${created.expiresAt === undefined ? '' : `, expires ${created.expiresAt}`}): it is shown only this once\n`);
  return 0;
}

async function list(ctx: CommandContext, extra: string | undefined): Promise<number> {
  if (extra !== undefined) throw new UsageError(`unexpected argument '${extra}' for 'baton token list'`);
  const tokens = await ctx.client().listTokens();
  if (ctx.isJson) {
    ctx.printJson({ tokens });
    return 0;
  }
  const nowMs = (ctx.io.now ?? Date.now)();
  ctx.print(formatTable(['ID', 'ROLE', 'SCOPE', 'STATE', 'CREATED', 'EXPIRES', 'DESCRIPTION'], tokens.map((t) => [
    t.id, t.role, t.scopes.length === 0 ? '*' : t.scopes.join(','),
    t.revokedAt !== undefined ? 'revoked' : t.expiresAt !== undefined && Date.parse(t.expiresAt) <= nowMs ? 'expired' : 'active',
    t.createdAt, t.expiresAt ?? '-', t.description ?? '',
  ])));
  return 0;
}

async function revoke(ctx: CommandContext, id: string | undefined): Promise<number> {
  if (id === undefined) throw new UsageError("'baton token revoke' needs the token's ID (see 'baton token list')");
  const revoked = await ctx.client().revokeToken(id);
  if (ctx.isJson) ctx.printJson(revoked);
  else ctx.print(`revoked token ${revoked.id}`);
  return 0;
}
