import type { Dispatcher } from 'undici';
import type { AsyncEvent, AsyncResponse } from './async-event.ts';
import type { Deliver, DeliveryResult } from './async-invocations.ts';

/** The data plane's own answers that mean "not now" rather than "the function failed": retried, not counted. */
const THROTTLE_CODES = new Set(['ERR_QUEUE_FULL', 'ERR_TOO_MANY_REQUESTS', 'ERR_NO_CAPACITY', 'ERR_COLD_START_TIMEOUT', 'ERR_SHUTTING_DOWN', 'ERR_FUNCTION_NOT_FOUND', 'ERR_ASYNC_QUEUE_FULL']);

/**
 * Delivers an attempt as an ordinary invocation to the data plane's own invocation port, over a
 * keep-alive pool on loopback: the event then takes exactly the path of a synchronous invocation
 * (cold-start queue, concurrency limits, demand reports to the autoscaler, load balancing), at
 * the cost of one loopback hop. The function gets the invocation id as `x-baton-invocation-id`
 * and `x-request-id` (a handler's `context.awsRequestId`), the same on every attempt, and the
 * attempt number as `x-baton-attempt`. `authorizationFor` gives the `Authorization` of an attempt
 * of a function that needs one (`auth: token`): the data plane's own token, which it trusts.
 *
 * `dispatcher` is created by `main.ts` (it owns sockets); the response body is kept up to
 * `responseMaxBytes` (the rest is read and dropped).
 */
export function createDeliver(dispatcher: Dispatcher, responseMaxBytes: number, authorizationFor: (fn: string) => string | undefined = () => undefined): Deliver {
  return async (event: AsyncEvent): Promise<DeliveryResult> => {
    const { request } = event;
    const isLambda = request.kind === 'lambda';
    const path = isLambda ? `/2015-03-31/functions/${encodeURIComponent(event.fn)}/invocations` : `/fn/${event.fn}${request.path}`;
    // Through the Lambda API, x-baton-invocation-id becomes the sync invocation's request id (the handler's awsRequestId).
    const headers = isLambda ? [] : [...request.headers, 'x-request-id', event.id];
    headers.push('x-baton-invocation-id', event.id, 'x-baton-attempt', String(event.attempts.length));
    // A function with `auth: token` is invoked with the data plane's own token (stripped before the function).
    const authorization = authorizationFor(event.fn);
    if (authorization !== undefined) headers.push('authorization', authorization);
    try {
      const res = await dispatcher.request({
        path, method: request.method as Dispatcher.HttpMethod, headers,
        body: request.body.length > 0 || request.method === 'POST' ? request.body : null,
        headersTimeout: 0, bodyTimeout: 0,
      });
      const response = await readResponse(res, responseMaxBytes);
      const code = res.headers['x-baton-error'];
      if (typeof code === 'string' && THROTTLE_CODES.has(code)) return { outcome: 'throttled', status: res.statusCode, code };
      const isFunctionError = isLambda
        ? res.statusCode !== 200 || res.headers['x-amz-function-error'] !== undefined
        : res.statusCode < 200 || res.statusCode >= 300;
      return { outcome: isFunctionError ? 'function-error' : 'succeeded', status: res.statusCode, ...(typeof code === 'string' ? { code } : {}), response };
    } catch (err) {
      // The data plane's own port refused or reset: it is stopping. Not the function's failure.
      return { outcome: 'throttled', status: 0, code: (err as { code?: string }).code ?? 'ERR_UNAVAILABLE' };
    }
  };
}

async function readResponse(res: Dispatcher.ResponseData, maxBytes: number): Promise<AsyncResponse> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  let isTruncated = false;
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    if (bytes >= maxBytes) {
      isTruncated = true;
      continue;
    }
    const part = bytes + chunk.length > maxBytes ? chunk.subarray(0, maxBytes - bytes) : chunk;
    if (part !== chunk) isTruncated = true;
    chunks.push(part);
    bytes += part.length;
  }
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(res.headers)) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return { status: res.statusCode, headers, body: Buffer.concat(chunks), isTruncated };
}
