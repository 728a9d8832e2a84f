import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';

/**
 * API tokens: who may call the management API and invoke functions whose spec says
 * `auth: "token"`. A token is `baton_<id>_<secret>`: `id` 12 lowercase hex characters (public: it
 * names the token in lists, revocations and the audit log), `secret` 32 random bytes in base64url
 * (43 characters). Only the SHA-256 of the whole token is kept — a hash without salt or stretching
 * is right for 256 bits of randomness, which no dictionary holds. Both planes find a token by its
 * id and compare the hashes in constant time.
 */

export const TOKEN_ROLES = ['admin', 'deployer', 'invoker', 'viewer'] as const;
export type TokenRole = (typeof TOKEN_ROLES)[number];

/** Roles whose tokens may invoke a function with `auth: "token"` (a viewer reads, it does not invoke). */
export const INVOKING_ROLES: readonly TokenRole[] = ['admin', 'deployer', 'invoker'];

const TOKEN_PATTERN = /^baton_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;
/** Characters of a token: `baton_` (6), the id (12), `_` (1), the secret (43). */
export const TOKEN_LENGTH = 62;
export const TOKEN_ID_PATTERN = /^[0-9a-f]{12}$/;
/** A scope: a function-name glob, `*` matching any run of characters (`team-a-*`). */
export const SCOPE_PATTERN = /^[a-z*][a-z0-9*-]{0,62}$/;
const HASH_PATTERN = /^[0-9a-f]{64}$/;

/** A token as the store keeps it: never the token itself. */
export const tokenRecordSchema = z.strictObject({
  id: z.string().regex(TOKEN_ID_PATTERN),
  /** Hex SHA-256 of the whole token. */
  hash: z.string().regex(HASH_PATTERN),
  role: z.enum(TOKEN_ROLES),
  /** Function-name globs the token is limited to; empty: every function. */
  scopes: z.array(z.string().regex(SCOPE_PATTERN)).max(32),
  /** Free text naming its purpose or holder. */
  description: z.string().max(200).optional(),
  createdAt: z.string(),
  /** The id of the token that created it (absent for the bootstrap admin token). */
  createdBy: z.string().optional(),
  expiresAt: z.string().optional(),
  revokedAt: z.string().optional(),
});
export type TokenRecord = z.infer<typeof tokenRecordSchema>;

/** What `POST /v1/tokens` takes. */
export const createTokenRequestSchema = z.strictObject({
  role: z.enum(TOKEN_ROLES),
  scopes: z.array(z.string().regex(SCOPE_PATTERN, 'must be a function-name glob: lowercase letters, digits, - and *')).max(32).default([]),
  description: z.string().max(200).optional(),
  /** Lifetime from now; absent: until revoked. */
  expiresInMs: z.number().int().min(1_000).max(10 * 365 * 86_400_000).optional(),
});
export type CreateTokenRequest = z.input<typeof createTokenRequestSchema>;

/** A token as the data planes hold it (pushed with the routing view): every unrevoked one, with its role. */
export const routingTokenSchema = z.strictObject({
  id: z.string().regex(TOKEN_ID_PATTERN),
  hash: z.string().regex(HASH_PATTERN),
  role: z.enum(TOKEN_ROLES),
  scopes: z.array(z.string()).max(32),
  /** Wall-clock epoch milliseconds after which the token is refused. */
  expiresAtMs: z.number().int().optional(),
});
export type RoutingToken = z.infer<typeof routingTokenSchema>;

/** A fresh token and its id. */
export function generateToken(): { token: string; id: string } {
  const id = randomBytes(6).toString('hex');
  return { id, token: `baton_${id}_${randomBytes(32).toString('base64url')}` };
}

/** The id of a well-formed token, or undefined. */
export function tokenId(token: string): string | undefined {
  return TOKEN_PATTERN.exec(token)?.[1];
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** Whether `token` hashes to `hash` (hex), compared in constant time. */
export function tokenMatches(token: string, hash: string): boolean {
  const expected = Buffer.from(hash, 'hex');
  const actual = createHash('sha256').update(token).digest();
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/** The token of an `Authorization: Bearer <token>` header, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined || header.length > 200) return undefined;
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  return match?.[1];
}

/**
 * A matcher for a token's scopes: true for every name when `scopes` is empty, else when one glob
 * matches the whole name. Compiled once per token.
 */
export function compileScopes(scopes: readonly string[]): (name: string) => boolean {
  if (scopes.length === 0) return () => true;
  const pattern = new RegExp(`^(?:${scopes.map((s) => s.split('*').map(escapeRegExp).join('.*')).join('|')})$`);
  return (name) => pattern.test(name);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
