import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * The CLI's client configuration, `$XDG_CONFIG_HOME/baton/config.json` (default
 * `~/.config/baton/config.json`): the control plane, the data plane and the token of the cluster
 * `baton up` last started here. Written with mode 0600 in a 0700 directory: it holds an admin token.
 */
export interface ClientConfig {
  readonly url?: string;
  readonly dataplaneUrl?: string;
  readonly token?: string;
  /** The cluster CA (a PEM file) an `https` control plane and data plane are checked against (`baton up --tls`). */
  readonly ca?: string | undefined;
}

/** Where the config lives for this environment; undefined when neither XDG_CONFIG_HOME nor HOME is set. */
export function clientConfigPath(env: NodeJS.ProcessEnv): string | undefined {
  const xdg = env['XDG_CONFIG_HOME'];
  if (xdg !== undefined && xdg !== '') return join(xdg, 'baton', 'config.json');
  const home = env['HOME'];
  return home === undefined || home === '' ? undefined : join(home, '.config', 'baton', 'config.json');
}

/** The config, or an empty one when there is none (or it is not valid JSON of strings). */
export function readClientConfig(env: NodeJS.ProcessEnv): ClientConfig {
  const file = clientConfigPath(env);
  if (file === undefined) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return {};
  }
  const config: Record<string, string> = {};
  for (const key of ['url', 'dataplaneUrl', 'token', 'ca'] as const) {
    const value = (parsed as Record<string, unknown> | null)?.[key];
    if (typeof value === 'string' && value !== '') config[key] = value;
  }
  return config;
}

/** Writes `config` (merged over what is there) atomically; resolves with the file's path. */
export async function writeClientConfig(env: NodeJS.ProcessEnv, config: ClientConfig): Promise<string | undefined> {
  const file = clientConfigPath(env);
  if (file === undefined) return undefined;
  const merged = { ...(await readFile(file, 'utf8').then((t) => JSON.parse(t) as object, () => ({}))), ...config };
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  const handle = await open(tmp, 'w', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(merged, null, 2)}\n`);
  } finally {
    await handle.close();
  }
  await rename(tmp, file);
  return file;
}
