import { BatonError } from '../core/errors.ts';

/**
 * Checks a policy name from configuration against the allowed names. An unknown name is a
 * configuration error, never a silent default.
 *
 * @throws BatonError ERR_INVALID_CONFIG naming the bad value and the allowed names.
 */
export function parsePolicyName<T extends string>(kind: string, allowed: readonly T[], name: string): T {
  if ((allowed as readonly string[]).includes(name)) return name as T;
  throw new BatonError(
    'ERR_INVALID_CONFIG',
    `unknown ${kind} policy ${JSON.stringify(name)}; expected one of: ${allowed.join(', ')}`,
    { details: { kind, value: name, allowed } },
  );
}
