import type { z } from 'zod';
import { BatonError, type ErrorCode } from '../core/errors.ts';
import { compileInPlaceCheck } from './in-place-check.ts';

/** One broken rule, as reported in `error.details.issues`. */
export interface FieldIssue {
  readonly field: string;
  readonly rule: string;
}

/**
 * Parses `value` with `schema`; on failure throws a BatonError with `code` whose message names the
 * first field and rule and whose details list them all. Nothing is changed on failure.
 *
 * A value that passes the schema's in-place check (strict schemas with no default or transform:
 * the internal messages) is returned as it is, with nothing copied; any other goes through zod.
 */
export function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown, code: ErrorCode, what: string): z.output<S> {
  if (compileInPlaceCheck(schema)?.(value) === true) return value as z.output<S>;
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues: FieldIssue[] = result.error.issues.map((issue) => ({
    field: issue.path.length === 0 ? '(root)' : issue.path.map(String).join('.'),
    rule: issue.code === 'unrecognized_keys' ? `unknown key(s): ${issue.keys.join(', ')}` : issue.message,
  }));
  const first = issues[0] ?? { field: '(root)', rule: 'invalid' };
  throw new BatonError(code, `invalid ${what}: ${first.field}: ${first.rule}`, { details: { issues } });
}
