import { BatonError } from '../core/errors.ts';

/**
 * Runs a daemon command (`up`, `controlplane`, `dataplane`, `worker`) with its own arguments and
 * resolves with the process exit code when it stops. Placeholder until the daemons are wired.
 */
export async function runDaemonCommand(command: string, argv: string[]): Promise<number> {
  void argv;
  throw new BatonError('ERR_INTERNAL', `'baton ${command}' is not available in this build`);
}
