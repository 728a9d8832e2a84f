import type { z } from 'zod';
import { BatonError, type ErrorCode } from '../core/errors.ts';

/** One broken rule, as reported in `error.details.issues`. */
export interface FieldIssue {
  readonly field: string;
  readonly rule: string;
}

/**
 * Parses `value` with `schema`; on failure throws a BatonError with `code` whose message names the
 * first field and rule and whose details list them all. Nothing is changed on failure.
 */
export function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown, code: ErrorCode, what: string): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues: FieldIssue[] = result.error.issues.map((issue) => ({
    field: issue.path.length === 0 ? '(root)' : issue.path.map(String).join('.'),
    rule: issue.code === 'unrecognized_keys' ? `unknown key(s): ${issue.keys.join(', ')}` : issue.message,
  }));
  const first = issues[0] ?? { field: '(root)', rule: 'invalid' };
  throw new BatonError(code, `invalid ${what}: ${first.field}: ${first.rule}`, { details: { issues } });
}
