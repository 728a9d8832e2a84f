/** Where an invocation goes: the function and the path (with query) to send to its sandbox. */
export interface Route<F> {
  readonly fn: F;
  readonly path: string;
}

const PREFIX = '/fn/';

/**
 * Resolves an invocation's function, once per request:
 * 1. the Host header without its port names a function (`echo`, `echo:8080`), or
 * 2. its first label does (`echo.example.com`); the path is forwarded as is;
 * 3. else the path starts with `/fn/NAME/` or is `/fn/NAME` (optionally with a query): the
 *    prefix is stripped (`/fn/echo/a?b=1` → `/a?b=1`, `/fn/echo?b=1` → `/?b=1`).
 * Returns undefined when nothing names a known function.
 */
export function resolveRoute<F>(host: string, url: string, lookup: (name: string) => F | undefined): Route<F> | undefined {
  if (host !== '' && host.charCodeAt(0) !== 0x5b /* '[' IPv6 literal */) {
    const colon = host.indexOf(':');
    const name = (colon === -1 ? host : host.slice(0, colon)).toLowerCase();
    const byHost = lookup(name);
    if (byHost !== undefined) return { fn: byHost, path: url };
    const dot = name.indexOf('.');
    if (dot > 0) {
      const byLabel = lookup(name.slice(0, dot));
      if (byLabel !== undefined) return { fn: byLabel, path: url };
    }
  }
  if (!url.startsWith(PREFIX)) return undefined;
  let end = PREFIX.length;
  while (end < url.length) {
    const c = url.charCodeAt(end);
    if (c === 0x2f /* / */ || c === 0x3f /* ? */) break;
    end++;
  }
  if (end === PREFIX.length) return undefined;
  const fn = lookup(url.slice(PREFIX.length, end));
  if (fn === undefined) return undefined;
  const rest = url.slice(end);
  return { fn, path: rest.length === 0 ? '/' : rest.charCodeAt(0) === 0x3f ? `/${rest}` : rest };
}
