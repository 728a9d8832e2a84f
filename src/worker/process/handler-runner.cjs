// @ts-check
/**
 * Baton's function runner for `handler` functions: plain JavaScript (CommonJS) so that it starts
 * under bare `node` (no TypeScript loader), in the artifact directory as cwd.
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
 *
 * Requests the data plane sends for the Lambda Invoke API (and for asynchronous invocations made
 * through it) carry `x-baton-event-format: lambda`: the body is the raw JSON payload and becomes
 * the event itself (an empty body is `{}`), and the answer is Lambda's: 200 with the result as JSON
 * (`null` for undefined), or, when the handler fails, 200 with `x-amz-function-error: Unhandled`
 * and `{"errorMessage","errorType","stackTrace"}`. With `x-baton-log-type: tail` the answer carries
 * `x-amz-log-result`: base64 of the last 4 KB of what this invocation wrote to stdout and stderr
 * (told apart by AsyncLocalStorage, so concurrent invocations do not mix), between Lambda's
 * START / END / REPORT lines.
 *
 * The request id (`context.awsRequestId`) is the `x-request-id` header when the data plane sends
 * one (an asynchronous invocation's id, so that retries of one event share it), else a new UUID.
 */
'use strict';
const { AsyncLocalStorage } = require('node:async_hooks');
const { randomUUID } = require('node:crypto');
const { closeSync, existsSync, writeSync } = require('node:fs');
const { createServer } = require('node:http');
const path = require('node:path');
const { pathToFileURL } = require('node:url');

const READY_FD = 3;
const EXTENSIONS = ['.js', '.mjs', '.cjs'];
const LOG_TAIL_BYTES = 4096;

/**
 * The output of the invocation whose async context is current, when its caller asked for the log
 * tail. Kept bounded: only the last LOG_TAIL_BYTES (and the earlier bytes are dropped as they come).
 * @type {AsyncLocalStorage<{ chunks: Buffer[], bytes: number }>}
 */
const logCapture = new AsyncLocalStorage();

/** Tees stdout and stderr into the current invocation's capture, if any. */
function captureOutput() {
  for (const stream of [process.stdout, process.stderr]) {
    const write = stream.write.bind(stream);
    /** @type {any} */ (stream).write = (/** @type {any} */ chunk, /** @type {any[]} */ ...rest) => {
      const capture = logCapture.getStore();
      if (capture !== undefined) appendCapture(capture, typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk));
      return write(chunk, ...rest);
    };
  }
}

/** @param {{ chunks: Buffer[], bytes: number }} capture @param {Buffer} chunk */
function appendCapture(capture, chunk) {
  capture.chunks.push(chunk);
  capture.bytes += chunk.length;
  while (capture.bytes - (capture.chunks[0]?.length ?? 0) >= LOG_TAIL_BYTES && capture.chunks.length > 1) {
    capture.bytes -= /** @type {Buffer} */ (capture.chunks.shift()).length;
  }
}

/** @param {{ chunks: Buffer[], bytes: number }} capture */
function captureTail(capture) {
  const all = Buffer.concat(capture.chunks);
  return all.subarray(Math.max(0, all.length - LOG_TAIL_BYTES)).toString('base64');
}

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
  const mod = await loadModule(found);
  const fromDefault = /** @type {Record<string, unknown> | undefined} */ (mod['default']);
  const fn = mod[exportName] ?? (typeof fromDefault === 'object' || typeof fromDefault === 'function' ? fromDefault?.[exportName] : undefined);
  if (typeof fn !== 'function') throw new Error(`${path.basename(found)} does not export a function named ${exportName}`);
  return /** @type {Handler} */ (fn);
}

/**
 * `require()` first: Node 20.19+ loads ES modules that way too, without starting the ES module
 * loader, which `import()` does (~3.5 ms of CPU on every cold start, even for a CommonJS file).
 * A module with top-level await (ERR_REQUIRE_ASYNC_MODULE, refused before any of it runs) and any
 * ES module on an older Node (ERR_REQUIRE_ESM) go through `import()`.
 * @param {string} file
 * @returns {Promise<Record<string, unknown>>}
 */
async function loadModule(file) {
  try {
    return require(file);
  } catch (err) {
    const code = /** @type {{ code?: unknown }} */ (err).code;
    if (code !== 'ERR_REQUIRE_ASYNC_MODULE' && code !== 'ERR_REQUIRE_ESM') throw err;
    return import(pathToFileURL(file).href);
  }
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

/**
 * Lambda's context object. `invokedFunctionArn` has the documented local form
 * `arn:aws:lambda:local:000000000000:function:NAME`; `callbackWaitsForEmptyEventLoop` may be set
 * (it changes nothing: a sandbox serves many invocations and its event loop never empties).
 * @param {string} requestId
 */
function buildContext(requestId) {
  const timeoutMs = Number(process.env['BATON_TIMEOUT_MS'] ?? 60_000);
  const deadline = Date.now() + (Number.isFinite(timeoutMs) ? timeoutMs : 60_000);
  const functionName = process.env['BATON_FUNCTION'] ?? '';
  return {
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:local:000000000000:function:${functionName}`,
    memoryLimitInMB: process.env['BATON_MEMORY_MIB'] ?? '',
    awsRequestId: requestId,
    logGroupName: `/baton/${functionName}`,
    logStreamName: process.env['BATON_SANDBOX_ID'] ?? '',
    callbackWaitsForEmptyEventLoop: true,
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

/**
 * The Lambda Invoke API's answer: the result as JSON, or the error in Lambda's shape.
 * @param {import('node:http').ServerResponse} res
 * @param {Record<string, string>} extra
 * @param {unknown} result
 * @param {unknown} failure
 * @param {boolean} isFailed
 */
function sendLambda(res, extra, result, failure, isFailed) {
  /** @type {Record<string, string | number>} */
  const headers = { 'content-type': 'application/json', ...extra };
  let body;
  if (isFailed) {
    const error = failure instanceof Error ? failure : undefined;
    headers['x-amz-function-error'] = 'Unhandled';
    body = Buffer.from(JSON.stringify({
      errorMessage: error?.message ?? String(failure),
      errorType: error?.name ?? typeof failure,
      stackTrace: (error?.stack ?? '').split('\n').slice(1).map((line) => line.trim()),
    }));
  } else {
    body = Buffer.from(JSON.stringify(result) ?? 'null');
  }
  headers['content-length'] = body.length;
  res.writeHead(200, headers).end(body);
}

/**
 * @param {Handler} handler
 * @param {import('node:http').IncomingMessage} req
 * @param {import('node:http').ServerResponse} res
 * @param {Buffer} body
 * @param {string} requestId
 */
function serveLambda(handler, req, res, body, requestId) {
  const isTail = String(req.headers['x-baton-log-type'] ?? '').toLowerCase() === 'tail';
  const capture = isTail ? { chunks: [], bytes: 0 } : undefined;
  const startedAt = performance.now();
  const run = () => {
    console.log(`START RequestId: ${requestId} Version: $LATEST`);
    let event;
    try {
      event = body.length === 0 ? {} : JSON.parse(body.toString('utf8'));
    } catch (err) {
      return Promise.reject(err);
    }
    return invoke(handler, event, buildContext(requestId));
  };
  const finish = (/** @type {unknown} */ result, /** @type {unknown} */ failure, /** @type {boolean} */ isFailed) => {
    /** @type {Record<string, string>} */
    const extra = {};
    const report = () => {
      if (isFailed) console.error(failure instanceof Error ? (failure.stack ?? `${failure.name}: ${failure.message}`) : String(failure));
      console.log(`END RequestId: ${requestId}`);
      console.log(`REPORT RequestId: ${requestId}\tDuration: ${(performance.now() - startedAt).toFixed(2)} ms\tMemory Size: ${process.env['BATON_MEMORY_MIB'] ?? ''} MB`);
    };
    if (capture === undefined) report();
    else logCapture.run(capture, report);
    if (capture !== undefined) extra['x-amz-log-result'] = captureTail(capture);
    sendLambda(res, extra, result, failure, isFailed);
  };
  const promise = capture === undefined ? run() : logCapture.run(capture, run);
  promise.then((result) => finish(result, undefined, false), (err) => finish(undefined, err, true))
    .catch((err) => sendError(res, err));
}

/** @param {Handler} handler */
function serve(handler) {
  const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    /** @type {Buffer[]} */
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const requestId = String(req.headers['x-request-id'] ?? randomUUID());
      if (req.headers['x-baton-event-format'] === 'lambda') {
        serveLambda(handler, req, res, Buffer.concat(chunks), requestId);
        return;
      }
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

// CommonJS, with the handler loaded by require() (import() as the fallback, see loadModule): Node
// starts a CommonJS entry ~20 ms sooner than an ES module one, on every cold start.
captureOutput();
loadHandler().then(serve).catch((err) => {
  // The stack for the user, then the reason on the last line, which the worker quotes in its failure.
  if (err instanceof Error && err.stack !== undefined) console.error(err.stack);
  console.error(`baton handler runner: cannot start: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
