/**
 * Header handling for the proxy. Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection and
 * are not forwarded; neither is `expect` (Node's server has already answered `100 Continue`).
 */

/** The request's headers as the proxy needs them, from one pass over `rawHeaders`. */
export interface ScannedRequest {
  /** Flat `[name, value, name, value, …]` list to send upstream, x-forwarded-* included. */
  readonly headers: string[];
  /** The Host header as the client sent it ('' if absent). */
  readonly host: string;
  /** True when the request carries a body (a non-zero content-length or any transfer-encoding). */
  readonly hasBody: boolean;
  /**
   * True when the client asked for an asynchronous invocation: `X-Baton-Invocation-Type: Event`
   * or `Prefer: respond-async` (neither is forwarded).
   */
  readonly isAsync: boolean;
}

/**
 * One pass over the client's raw headers: keeps the end-to-end ones (Host included: the sandbox
 * sees the name the client used), drops hop-by-hop ones and any named in `Connection`, and
 * appends `x-forwarded-for`, `x-forwarded-host` and `x-forwarded-proto`.
 */
export function scanRequestHeaders(rawHeaders: readonly string[], remoteAddress: string | undefined): ScannedRequest {
  const headers: string[] = [];
  let host = '';
  let forwardedFor = '';
  let hasBody = false;
  let isAsync = false;
  let connectionTokens: string[] | undefined;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    const value = rawHeaders[i + 1] as string;
    const kind = classify(name);
    if (kind === KEEP) {
      headers.push(name, value);
      continue;
    }
    switch (kind) {
      case HOST: host = value; headers.push(name, value); break;
      case CONTENT_LENGTH: hasBody ||= value !== '0'; headers.push(name, value); break;
      case TRANSFER_ENCODING: hasBody = true; break;
      case FORWARDED_FOR: forwardedFor = forwardedFor === '' ? value : `${forwardedFor}, ${value}`; break;
      case CONNECTION: (connectionTokens ??= []).push(...value.toLowerCase().split(',').map((t) => t.trim())); break;
      case INVOCATION_TYPE: isAsync ||= value.toLowerCase() === 'event'; break;
      case PREFER:
        if (/(^|[,;\s])respond-async([,;\s]|$)/i.test(value)) isAsync = true;
        else headers.push(name, value);
        break;
      default: break;
    }
  }
  const client = remoteAddress ?? '';
  headers.push('x-forwarded-for', forwardedFor === '' ? client : `${forwardedFor}, ${client}`);
  if (host !== '') headers.push('x-forwarded-host', host);
  headers.push('x-forwarded-proto', 'http');
  return { headers: connectionTokens === undefined ? headers : dropNamed(headers, connectionTokens), host, hasBody, isAsync };
}

/**
 * The same for a request that came over HTTP/2: its pseudo-headers are not forwarded, `:authority`
 * stands for Host, and whether it has a body is known from its stream (`hasBody`: the client did not
 * end the stream with its headers), not from content-length.
 */
export function scanHttp2RequestHeaders(rawHeaders: readonly string[], remoteAddress: string | undefined, hasBody: boolean): ScannedRequest {
  const fields: string[] = [];
  let authority: string | undefined;
  let hasHost = false;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    if (name.charCodeAt(0) === 0x3a /* ':' */) {
      if (name === ':authority') authority = rawHeaders[i + 1] as string;
      continue;
    }
    if (name === 'host') hasHost = true;
    fields.push(name, rawHeaders[i + 1] as string);
  }
  if (authority !== undefined && !hasHost) fields.push('host', authority);
  const scanned = scanRequestHeaders(fields, remoteAddress);
  return { ...scanned, hasBody };
}

/**
 * An upstream response's raw headers (undici's `[name, value, …]` Buffers) as the flat
 * `[name, value, …]` string list `res.writeHead` takes, without the hop-by-hop ones and those named
 * in `Connection`. Names keep their case and repeated headers (Set-Cookie) stay separate, so the
 * client sees what the sandbox sent; no header object is built.
 */
export function responseHeaders(rawHeaders: readonly Buffer[]): string[] {
  const headers: string[] = [];
  let connectionTokens: string[] | undefined;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] as Buffer).toString('latin1');
    const kind = classifyResponse(name);
    if (kind === KEEP) {
      headers.push(name, (rawHeaders[i + 1] as Buffer).toString('latin1'));
    } else if (kind === CONNECTION) {
      (connectionTokens ??= []).push(...(rawHeaders[i + 1] as Buffer).toString('latin1').toLowerCase().split(',').map((t) => t.trim()));
    }
  }
  return connectionTokens === undefined ? headers : dropNamed(headers, connectionTokens);
}

/** Response side: the hop-by-hop headers (RFC 9110 §7.6.1) plus `Connection` itself, whose tokens name more. */
function classifyResponse(name: string): number {
  switch (name.length) {
    case 2: return name.toLowerCase() === 'te' ? DROP : KEEP;
    case 7: {
      const lower = name.toLowerCase();
      return lower === 'trailer' || lower === 'upgrade' ? DROP : KEEP;
    }
    case 10: {
      const lower = name.toLowerCase();
      if (lower === 'connection') return CONNECTION;
      return lower === 'keep-alive' ? DROP : KEEP;
    }
    case 16: return name.toLowerCase() === 'proxy-connection' ? DROP : KEEP;
    case 17: return name.toLowerCase() === 'transfer-encoding' ? DROP : KEEP;
    case 18: return name.toLowerCase() === 'proxy-authenticate' ? DROP : KEEP;
    default: return KEEP;
  }
}

const KEEP = 0;
const DROP = 1;
const HOST = 2;
const CONTENT_LENGTH = 3;
const TRANSFER_ENCODING = 4;
const FORWARDED_FOR = 5;
const CONNECTION = 6;
const INVOCATION_TYPE = 7;
const PREFER = 8;

/** Lower-cases only names whose length matches a special header, so most headers cost a length check. */
function classify(name: string): number {
  switch (name.length) {
    case 2: return name.toLowerCase() === 'te' ? DROP : KEEP;
    case 4: return name.toLowerCase() === 'host' ? HOST : KEEP;
    case 6: {
      const lower = name.toLowerCase();
      if (lower === 'prefer') return PREFER;
      return lower === 'expect' ? DROP : KEEP;
    }
    case 7: {
      const lower = name.toLowerCase();
      return lower === 'trailer' || lower === 'upgrade' ? DROP : KEEP;
    }
    case 10: {
      const lower = name.toLowerCase();
      if (lower === 'connection') return CONNECTION;
      return lower === 'keep-alive' ? DROP : KEEP;
    }
    case 14: return name.toLowerCase() === 'content-length' ? CONTENT_LENGTH : KEEP;
    case 15: return name.toLowerCase() === 'x-forwarded-for' ? FORWARDED_FOR : KEEP;
    case 16: {
      const lower = name.toLowerCase();
      return lower === 'proxy-connection' || lower === 'x-forwarded-host' ? DROP : KEEP;
    }
    case 17: {
      const lower = name.toLowerCase();
      if (lower === 'transfer-encoding') return TRANSFER_ENCODING;
      return lower === 'x-forwarded-proto' ? DROP : KEEP;
    }
    case 19: return name.toLowerCase() === 'proxy-authorization' ? DROP : KEEP;
    case 23: return name.toLowerCase() === 'x-baton-invocation-type' ? INVOCATION_TYPE : KEEP;
    default: return KEEP;
  }
}

function dropNamed(headers: string[], names: readonly string[]): string[] {
  const drop = new Set(names.filter((n) => n !== 'close' && n !== 'keep-alive' && n !== 'host' && n !== 'content-length'));
  if (drop.size === 0) return headers;
  const kept: string[] = [];
  for (let i = 0; i + 1 < headers.length; i += 2) {
    const name = headers[i] as string;
    if (!drop.has(name.toLowerCase())) kept.push(name, headers[i + 1] as string);
  }
  return kept;
}
