import { spawn } from 'node:child_process';

/**
 * Runs a load tool (wrk, h2load) to its end and returns its stdout; rejects when it exits non-zero
 * (with what it printed), when `signal` aborts, or after `timeoutMs`.
 */
export async function runTool(command: string, args: readonly string[], timeoutMs: number, signal: AbortSignal): Promise<string> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s; });
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (c) => resolve(c));
  });
  if (code !== 0) throw new Error(`${command} exited with ${code}: ${stderr.trim() || stdout.trim()}`);
  return stdout;
}
