import type { IncomingMessage, ServerResponse } from 'node:http';
import { INVOCATIONS_PREFIX, type AsyncApi } from './async/async-api.ts';
import type { ScannedRequest } from './forward-headers.ts';
import { LAMBDA_INVOKE_PREFIX, type LambdaApi } from './lambda/lambda-api.ts';
import type { FunctionState } from './proxy.ts';
import type { Route } from './route.ts';

/**
 * The proxy's `intercept`: the invocation port's other APIs. A request whose Host names no
 * function may be the Lambda Invoke API (`/2015-03-31/functions/…`) or the async results API
 * (`/v1/invocations…`); an invocation of a function asking for asynchronous execution goes to the
 * async queue. Everything else (nearly every request: two compares) goes down the ordinary path.
 */
export function createIntercept(lambda: LambdaApi, asyncApi: AsyncApi) {
  return (req: IncomingMessage, res: ServerResponse, route: Route<FunctionState> | undefined, scanned: ScannedRequest): boolean => {
    if (route !== undefined) {
      if (!scanned.isAsync) return false;
      asyncApi.accept(req, res, route, scanned);
      return true;
    }
    const url = req.url ?? '/';
    if (url.startsWith(LAMBDA_INVOKE_PREFIX)) return lambda.handle(req, res, url);
    if (url.startsWith(INVOCATIONS_PREFIX)) return asyncApi.handle(req, res, url);
    return false;
  };
}
