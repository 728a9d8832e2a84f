import { z } from 'zod';
import { SCOPE_PATTERN } from './tokens.ts';

/**
 * Per-scope quotas (as a Kubernetes ResourceQuota per namespace): a function-name glob and limits
 * on the sandboxes of every function it matches — how many (starting, ready or draining) and how
 * much memory (the sum of their `resources.memoryMiB`). A function matched by several quotas is
 * bound by all. Set by admins (`PUT /v1/quotas/{scope}`), kept in the store, enforced by the
 * control plane from counters in memory.
 */

const LIMIT_MAX = 1_000_000_000;

/** What `PUT /v1/quotas/{scope}` takes: at least one limit. */
export const quotaRequestSchema = z.strictObject({
  maxSandboxes: z.number().int().min(0).max(LIMIT_MAX).optional(),
  maxMemoryMiB: z.number().int().min(0).max(LIMIT_MAX).optional(),
}).refine((q) => q.maxSandboxes !== undefined || q.maxMemoryMiB !== undefined, { message: 'needs maxSandboxes, maxMemoryMiB or both' });
export type QuotaRequest = z.infer<typeof quotaRequestSchema>;

/** A quota as the store keeps it. */
export interface QuotaRecord {
  readonly scope: string;
  readonly maxSandboxes?: number;
  readonly maxMemoryMiB?: number;
  readonly updatedAt: string;
}

/** A quota as the API shows it: its limits and what the sandboxes in its scope use now. */
export interface QuotaUsage {
  readonly scope: string;
  readonly maxSandboxes?: number;
  readonly sandboxes: number;
  readonly maxMemoryMiB?: number;
  readonly memoryMiB: number;
}

export function isQuotaScope(scope: string): boolean {
  return SCOPE_PATTERN.test(scope);
}

/** The store key of a scope: `*` (not a key character) as `_` (not a scope character), so distinct scopes keep distinct keys. */
export function quotaStoreKey(scope: string): string {
  return `q_${scope.replaceAll('*', '_')}`;
}
