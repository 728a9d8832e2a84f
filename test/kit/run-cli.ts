import { main } from '../../src/cli/main.ts';

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `baton` in-process with captured output. `env` replaces the process environment (so that
 * BATON_URL on the machine does not leak in); `onStdout` sees each write as it happens.
 */
export async function runCli(
  argv: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; signal?: AbortSignal; onStdout?: (text: string) => void } = {},
): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, {
    stdout: { write: (chunk) => { const text = Buffer.from(chunk).toString('utf8'); stdout += text; options.onStdout?.(text); return true; } },
    stderr: { write: (chunk) => { stderr += Buffer.from(chunk).toString('utf8'); return true; } },
    env: options.env ?? {},
    cwd: options.cwd ?? process.cwd(),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    now: () => Date.UTC(2025, 0, 1, 0, 10, 0),
  });
  return { code, stdout, stderr };
}
