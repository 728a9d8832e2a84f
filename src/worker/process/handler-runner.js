// @ts-check
/**
 * Baton's function runner for `handler` functions: plain JavaScript so that it starts under bare
 * `node` (no TypeScript loader), in the artifact directory as cwd.
 *
 * Environment (set by the worker):
 *   PORT             port to listen on (127.0.0.1, or BATON_HOST)
 *   BATON_HANDLER    `file.export`, e.g. `index.handler` or `lib/main.handle`
 *   BATON_FUNCTION, BATON_SANDBOX_ID, BATON_GENERATION, BATON_TIMEOUT_MS, BATON_MEMORY_MIB
 *
 * Each HTTP request becomes an AWS Lambda function-URL event (payload format 2.0) and a context
 * object; the handler's result is mapped back to the HTTP response:
 *   - an object with a numeric `statusCode` → that status, `headers`, `cookies` (Set-Cookie) and
 *     `body` (a string; base64-decoded when `isBase64Encoded`; any other body is sent as JSON);
 *   - `undefined` → 200 with an empty body;
 *   - any other value → 200 `application/json` with `JSON.stringify(value)`;
 *   - a thrown error → 500 `{"errorMessage","errorType"}`, logged to stderr; the process stays up.
 * Invocations may run concurrently. Once listening, the runner writes `ready\n` to fd 3 (the
 * worker's readiness pipe), so the worker never polls.
 */
import { randomUUID } from 'node:crypto';
import { closeSync, existsSync, writeSync } from 'node:fs';
import { createServer } from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const READY_FD = 3;
const EXTENSIONS = ['.js', '.mjs', '.cjs'];

/**
 * @typedef {(event: Record<string, unknown>, context: Record<string, unknown>, callback?: (err: unknown, result?: unknown) => void) => unknown} Handler
 */

/** @returns {Promise<Handler>} */
async function loadHandler() {
  const spec = process.env['BATON_HANDLER'] ?? '';
  const dot = spec.lastIndexOf('.');
  if (dot <= 0 || dot === spec.length - 1) throw new Error(`BATON_HANDLER must be FILE.EXPORT, got ${JSON.stringify(spec)}`);
  const file = spec.slice(0, dot);
  const exportName = spec.slice(dot + 1);
  const root = process.cwd();
  const candidates = EXTENSIONS.map((ext) => path.resolve(root, file + ext));
  const found = candidates.find((candidate) => candidate.startsWith(root + path.sep) && existsSync(candidate));
  if (found === undefined) throw new Error(`handler module ${file}{${EXTENSIONS.join(',')}} not found in ${root}`);
  /** @type {Record<string, unknown>} */
  const mod = await import(pathToFileURL(found).href);
  const fromDefault = /** @type {Record<string, unknown> | undefined} */ (mod['default']);
  const fn = mod[exportName] ?? (typeof fromDefault === 'object' || typeof fromDefault === 'function' ? fromDefault?.[exportName] : undefined);
  if (typeof fn !== 'function') throw new Error(`${path.basename(found)} does not export a function named ${exportName}`);
  return /** @type {Handler} */ (fn);
}

const TEXT_TYPES = /^(text\/|application\/(json|.*\+json|xml|.*\+xml|javascript|x-www-form-urlencoded|graphql))/i;

/**
 * @param {import('node:http').IncomingMessage} req
 * @param {Buffer} body
 * @param {string} requestId
 */
function buildEvent(req, body, requestId) {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const rawPath = q < 0 ? url : url.slice(0, q);
  const rawQueryString = q < 0 ? '' : url.slice(q + 1);
  /** @type {Record<string, string>} */
  const headers = {};
  for (const [name, values] of Object.entries(req.headersDistinct)) {
    if (name !== 'cookie' && values !== undefined) headers[name] = values.join(',');
  }
  const cookieHeader = req.headersDistinct['cookie'];
  const cookies = cookieHeader === undefined ? undefined : cookieHeader.join('; ').split(/;\s*/).filter((c) => c.length > 0);
  /** @type {Record<string, string>} */
  const queryStringParameters = {};
  for (const [key, value] of new URLSearchParams(rawQueryString)) {
    queryStringParameters[key] = key in queryStringParameters ? `${queryStringParameters[key]},${value}` : value;
  }
  const contentType = req.headers['content-type'];
  const isBase64Encoded = body.length > 0 && contentType !== undefined && !TEXT_TYPES.test(contentType);
  const now = new Date();
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString,
    ...(cookies === undefined ? {} : { cookies }),
    headers,
    ...(Object.keys(queryStringParameters).length === 0 ? {} : { queryStringParameters }),
    requestContext: {
      accountId: 'anonymous',
      apiId: process.env['BATON_FUNCTION'] ?? '',
      domainName: req.headers.host ?? '',
      domainPrefix: (req.headers.host ?? '').split('.')[0] ?? '',
      http: {
        method: req.method ?? 'GET',
        path: rawPath,
        protocol: `HTTP/${req.httpVersion}`,
        sourceIp: req.socket.remoteAddress ?? '',
        userAgent: req.headers['user-agent'] ?? '',
      },
      requestId,
      routeKey: '$default',
      stage: '$default',
      time: now.toISOString(),
      timeEpoch: now.getTime(),
    },
    ...(body.length === 0 ? {} : { body: isBase64Encoded ? body.toString('base64') : body.toString('utf8') }),
    isBase64Encoded,
  };
}

/** @param {string} requestId */
function buildContext(requestId) {
  const timeoutMs = Number(process.env['BATON_TIMEOUT_MS'] ?? 60_000);
  const deadline = Date.now() + (Number.isFinite(timeoutMs) ? timeoutMs : 60_000);
  return {
    functionName: process.env['BATON_FUNCTION'] ?? '',
    functionVersion: process.env['BATON_GENERATION'] ?? '',
    memoryLimitInMB: process.env['BATON_MEMORY_MIB'] ?? '',
    awsRequestId: requestId,
    callbackWaitsForEmptyEventLoop: false,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
}

/**
 * Calls the handler, supporting both async handlers and the legacy callback style.
 * @param {Handler} handler
 * @param {Record<string, unknown>} event
 * @param {Record<string, unknown>} context
 * @returns {Promise<unknown>}
 */
function invoke(handler, event, context) {
  if (handler.length < 3) return Promise.resolve().then(() => handler(event, context));
  return new Promise((resolve, reject) => {
    const done = (/** @type {unknown} */ err, /** @type {unknown} */ result) => (err ? reject(err) : resolve(result));
    Promise.resolve().then(() => handler(event, context, done)).then((value) => {
      if (value !== undefined) resolve(value);
    }, reject);
  });
}

/**
 * @param {import('node:http').ServerResponse} res
 * @param {unknown} result
 */
function sendResult(res, result) {
  if (result === undefined) {
    res.writeHead(200, { 'content-length': 0 }).end();
    return;
  }
  if (typeof result === 'object' && result !== null && typeof (/** @type {{statusCode?: unknown}} */ (result)).statusCode === 'number') {
    const r = /** @type {{statusCode: number, headers?: Record<string, unknown>, cookies?: unknown, body?: unknown, isBase64Encoded?: boolean}} */ (result);
    /** @type {Record<string, string | string[]>} */
    const headers = {};
    for (const [name, value] of Object.entries(r.headers ?? {})) headers[name.toLowerCase()] = String(value);
    if (Array.isArray(r.cookies) && r.cookies.length > 0) headers['set-cookie'] = r.cookies.map(String);
    let body;
    if (r.body === undefined || r.body === null) body = Buffer.alloc(0);
    else if (typeof r.body === 'string') body = Buffer.from(r.body, r.isBase64Encoded === true ? 'base64' : 'utf8');
    else {
      body = Buffer.from(JSON.stringify(r.body));
      headers['content-type'] ??= 'application/json';
    }
    if (body.length > 0) headers['content-type'] ??= 'application/json';
    headers['content-length'] = String(body.length);
    res.writeHead(r.statusCode, headers).end(body);
    return;
  }
  const body = Buffer.from(JSON.stringify(result) ?? 'null');
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length }).end(body);
}

/**
 * @param {import('node:http').ServerResponse} res
 * @param {unknown} err
 */
function sendError(res, err) {
  const error = err instanceof Error ? err : new Error(String(err));
  console.error(error.stack ?? `${error.name}: ${error.message}`);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = Buffer.from(JSON.stringify({ errorMessage: error.message, errorType: error.name }));
  res.writeHead(500, { 'content-type': 'application/json', 'content-length': body.length }).end(body);
}

/** @param {Handler} handler */
function serve(handler) {
  const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    /** @type {Buffer[]} */
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const requestId = String(req.headers['x-request-id'] ?? randomUUID());
      let event;
      try {
        event = buildEvent(req, Buffer.concat(chunks), requestId);
      } catch (err) {
        sendError(res, err);
        return;
      }
      invoke(handler, event, buildContext(requestId)).then((result) => sendResult(res, result), (err) => sendError(res, err))
        .catch((err) => sendError(res, err));
    });
  });
  server.headersTimeout = 70_000;
  const port = Number(process.env['PORT']);
  server.listen(port, process.env['BATON_HOST'] ?? '127.0.0.1', () => signalReady());
  process.on('SIGTERM', () => {
    server.close(() => process.exit(0));
    server.closeIdleConnections();
  });
}

function signalReady() {
  try {
    writeSync(READY_FD, 'ready\n');
    closeSync(READY_FD);
  } catch {
    // Started by hand, without the worker's readiness pipe.
  }
}

try {
  serve(await loadHandler());
} catch (err) {
  // The stack for the user, then the reason on the last line, which the worker quotes in its failure.
  if (err instanceof Error && err.stack !== undefined) console.error(err.stack);
  console.error(`baton handler runner: cannot start: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
