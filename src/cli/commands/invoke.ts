import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { BatonError, isErrorCode } from '../../core/errors.ts';
import type { InvokeResponse } from '../client.ts';
import { stringFlag, stringListFlag, UsageError, type Command, type CommandContext } from '../command.ts';

/**
 * `baton invoke NAME`: one invocation through the data plane. Prints the body as received (or,
 * with --json, `{status, headers, body}`); a non-2xx answer exits with 1.
 */
export const invokeCommand: Command = {
  name: 'invoke',
  summary: 'send one invocation to a function and print its answer',
  usage: `baton invoke NAME [--data JSON | --data @FILE] [--path /x] [--method M] [--header K:V]…

flags:
  --data JSON|@FILE     request body, inline or read from FILE (default method becomes POST)
  --path /x             path and query after the function prefix (default: /)
  --method M            HTTP method (default: GET, or POST with --data)
  --header K:V          request header; repeatable
  --async               asynchronous: print the invocation id once the data plane has made it durable
                        (see 'baton invocations --id ID')
  --dataplane-url URL   data plane (default: $BATON_DATAPLANE_URL, else http://127.0.0.1:8080)

With --json, prints {status, headers, body}; body is text, or base64 with "bodyEncoding":"base64".`,
  options: {
    data: { type: 'string' },
    path: { type: 'string' },
    method: { type: 'string' },
    header: { type: 'string', multiple: true },
    async: { type: 'boolean' },
    'dataplane-url': { type: 'string' },
  },
  positionals: { min: 1, max: 1, names: 'NAME' },
  run: runInvoke,
};

async function runInvoke(ctx: CommandContext): Promise<number> {
  const name = ctx.positionals[0] as string;
  const path = stringFlag(ctx.values, 'path') ?? '/';
  if (!path.startsWith('/')) throw new UsageError(`--path must start with '/' (got '${path}')`);
  const headers = parseHeaders(stringListFlag(ctx.values, 'header'));
  const data = await readData(stringFlag(ctx.values, 'data'), ctx.io.cwd);
  if (data !== undefined && !Object.keys(headers).some((k) => k.toLowerCase() === 'content-type')) {
    headers['content-type'] = guessContentType(data);
  }
  const method = stringFlag(ctx.values, 'method');
  const isAsync = ctx.values['async'] === true;
  if (isAsync) headers['x-baton-invocation-type'] = 'Event';
  const res = await ctx.client().invoke(name, {
    path, headers, data,
    ...(method === undefined ? {} : { method }),
    ...(ctx.io.signal === undefined ? {} : { signal: ctx.io.signal }),
  });
  const isOk = res.status >= 200 && res.status < 300;
  if (isAsync && res.status === 202 && !ctx.isJson) {
    ctx.print(String(res.headers['x-baton-invocation-id'] ?? ''));
    return 0;
  }
  if (ctx.isJson) {
    ctx.printJson(toJson(res));
    return isOk ? 0 : 1;
  }
  const error = isOk ? undefined : batonErrorIn(res);
  if (error !== undefined) {
    ctx.io.stderr.write(`error ${error.code}: ${error.message}\n`);
    return 1;
  }
  ctx.io.stdout.write(res.body);
  if (ctx.io.stdout.isTTY === true && res.body.length > 0 && res.body[res.body.length - 1] !== 0x0a) ctx.io.stdout.write('\n');
  if (!isOk) ctx.io.stderr.write(`error: ${name} answered HTTP ${res.status}\n`);
  return isOk ? 0 : 1;
}

/** `['Accept: text/plain']` → `{ Accept: 'text/plain' }` (split at the first colon). */
export function parseHeaders(pairs: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const pair of pairs) {
    const colon = pair.indexOf(':');
    const key = colon < 0 ? '' : pair.slice(0, colon).trim();
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(key)) throw new UsageError(`--header '${pair}' must be NAME:VALUE`);
    headers[key] = pair.slice(colon + 1).trim();
  }
  return headers;
}

async function readData(raw: string | undefined, cwd: string): Promise<Buffer | string | undefined> {
  if (raw === undefined || !raw.startsWith('@')) return raw;
  const file = resolve(cwd, raw.slice(1));
  try {
    return await readFile(file);
  } catch (err) {
    throw new BatonError('ERR_INVALID_REQUEST', `cannot read --data file ${file}: ${(err as Error).message}`, { cause: err });
  }
}

function guessContentType(data: Buffer | string): string {
  const text = typeof data === 'string' ? data : decodeUtf8(data);
  if (text === undefined) return 'application/octet-stream';
  try {
    JSON.parse(text);
    return 'application/json';
  } catch {
    return 'text/plain; charset=utf-8';
  }
}

function toJson(res: InvokeResponse): Record<string, unknown> {
  const text = decodeUtf8(res.body);
  return text === undefined
    ? { status: res.status, headers: res.headers, body: res.body.toString('base64'), bodyEncoding: 'base64' }
    : { status: res.status, headers: res.headers, body: text };
}

/** The data plane's own errors come as `{error:{code,message}}` JSON. */
function batonErrorIn(res: InvokeResponse): BatonError | undefined {
  if (!String(res.headers['content-type'] ?? '').includes('application/json')) return undefined;
  const text = decodeUtf8(res.body);
  if (text === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  return isErrorCode((parsed as { error?: { code?: unknown } } | null)?.error?.code) ? BatonError.fromBody(parsed, `HTTP ${res.status}`) : undefined;
}

function decodeUtf8(buf: Buffer): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    return undefined;
  }
}
