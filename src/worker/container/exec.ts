import { execFile } from 'node:child_process';
import { BatonError } from '../../core/errors.ts';

/** Runs a host tool (ip, nft, crun) to completion; what the container runtime's parts share. */
export type Exec = (file: string, args: readonly string[], options?: { readonly input?: string; readonly timeoutMs?: number }) => Promise<string>;

/**
 * `execFile` with a clean environment, a deadline (10 s unless told) and stdin when given.
 * @throws BatonError ERR_INTERNAL naming the command and its stderr when it fails
 */
export const execTool: Exec = (file, args, options = {}) => new Promise((resolve, reject) => {
  const child = execFile(file, [...args], {
    env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' }, timeout: options.timeoutMs ?? 10_000, maxBuffer: 4 << 20,
  }, (err, stdout, stderr) => {
    if (err === null) resolve(stdout);
    else reject(new BatonError('ERR_INTERNAL', `${file} ${args.join(' ')} failed: ${stderr.trim() || err.message}`, { cause: err }));
  });
  if (options.input !== undefined) child.stdin?.end(options.input);
  else child.stdin?.end();
});
