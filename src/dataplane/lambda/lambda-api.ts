import type { IncomingMessage, ServerResponse } from 'node:http';
import { ID_PATTERN } from '../../api/ids.ts';
import { wallTimeMs } from '../../core/clock.ts';
import { BatonError, toBatonError } from '../../core/errors.ts';
import type { AsyncAcceptor } from '../async/async-acceptor.ts';
import { Invocation, kErrorWriter, sendError } from '../invocation.ts';
import type { FunctionTraffic, FunctionState, InvocationProxy } from '../proxy.ts';
import { readBody } from '../read-body.ts';
import { writeLambdaError } from './lambda-errors.ts';
import type { SigV4Verifier } from './sigv4-verifier.ts';

export const LAMBDA_INVOKE_PREFIX = '/2015-03-31/functions/';
const SUFFIX = '/invocations';
const ARN_PATTERN = /^arn:aws[a-z-]*:lambda:[^:]*:[^:]*:function:([^:]+)(?::(.+))?$/;

export interface LambdaApiOptions {
  readonly proxy: InvocationProxy;
  readonly acceptor: AsyncAcceptor;
  readonly verifier: SigV4Verifier;
  /** Largest `RequestResponse` payload (Lambda: 6 MB). */
  readonly syncPayloadMaxBytes: number;
  /** Largest `Event` payload (Lambda: 1 MB). */
  readonly asyncPayloadMaxBytes: number;
  readonly newId: () => string;
}

type InvocationType = 'RequestResponse' | 'Event' | 'DryRun';

/**
 * Lambda's Invoke API on the invocation port: `POST /2015-03-31/functions/{FunctionName}/invocations`.
 * `FunctionName` is a name, `name:$LATEST`, or an ARN (any region and account: a local cluster has
 * one of each); `Qualifier` may only be `$LATEST` (versions and aliases are not modelled).
 *
 * - `RequestResponse` (default): the payload goes down the ordinary invocation path (cold-start
 *   queue, concurrency limits, autoscaler) as `POST /` with `x-baton-event-format: lambda`, so a
 *   handler gets the raw payload as its event; the answer is the function's result.
 * - `Event`: the payload is made durable in the asynchronous queue; 202 once it is.
 * - `DryRun`: 204 once the function exists and the signature (when checked) is good.
 *
 * Every answer carries `x-amzn-RequestId` (for `Event`, the invocation id under `/v1/invocations/`).
 */
export class LambdaApi {
  readonly #options: LambdaApiOptions;

  constructor(options: LambdaApiOptions) {
    this.#options = options;
  }

  /** Takes `/2015-03-31/functions/…` requests; false for anything else. */
  handle(req: IncomingMessage, res: ServerResponse, url: string): boolean {
    if (!url.startsWith(LAMBDA_INVOKE_PREFIX)) return false;
    // A delivery of an asynchronous invocation names its id, so that every attempt has the same request id.
    const given = req.headers['x-baton-invocation-id'];
    const isDelivery = typeof given === 'string' && ID_PATTERN.test(given) && req.headers['x-amz-invocation-type'] === undefined;
    const requestId = isDelivery ? given : this.#options.newId();
    res.setHeader('x-amzn-requestid', requestId);
    (res as ServerResponse & { [kErrorWriter]?: unknown })[kErrorWriter] = writeLambdaError;
    this.#serve(req, res, url, requestId).catch((err: unknown) => {
      res.shouldKeepAlive = false;
      sendError(res, toBatonError(err));
    });
    return true;
  }

  async #serve(req: IncomingMessage, res: ServerResponse, url: string, requestId: string): Promise<void> {
    const { proxy, verifier } = this.#options;
    const fn = this.#resolve(req, url);
    const type = invocationType(req.headers['x-amz-invocation-type']);
    const maxBytes = type === 'Event' ? this.#options.asyncPayloadMaxBytes : this.#options.syncPayloadMaxBytes;
    const body = await readBody(req, maxBytes);
    await verifier.verify(req, body);
    // A function with `auth: "token"` is invoked here with a SigV4 signature from a configured key,
    // or, when no keys are configured, with a bearer token as on the invocation path.
    if (fn.spec.auth === 'token' && !verifier.isEnabled) {
      const refusal = proxy.table.tokens.check(req.headers.authorization, fn.name, wallTimeMs());
      if (refusal !== undefined) throw refusal;
    }
    if (type === 'DryRun') {
      res.writeHead(204).end();
      return;
    }
    if (body.length > 0) checkJson(body);
    const isTail = String(req.headers['x-amz-log-type'] ?? '').toLowerCase() === 'tail';
    if (type === 'Event') {
      await this.#options.acceptor.accept(requestId, fn.name, { kind: 'lambda', method: 'POST', path: '/', headers: [], body });
      res.writeHead(202, { 'x-baton-invocation-id': requestId, location: `/v1/invocations/${requestId}`, 'content-length': 0 }).end();
      return;
    }
    if (proxy.state !== 'open') throw new BatonError('ERR_SHUTTING_DOWN', 'the data plane is shutting down');
    const headers = lambdaRequestHeaders(req, requestId, body.length, isTail);
    const invocation = new Invocation<FunctionTraffic>(proxy, fn, req, res, '/', headers, body.length > 0);
    invocation.body = body;
    invocation.headHook = lambdaHead;
    res.setHeader('x-amz-executed-version', '$LATEST');
    proxy.admit(invocation);
  }

  #resolve(req: IncomingMessage, url: string): FunctionState {
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    if (req.method !== 'POST' || !path.endsWith(SUFFIX)) throw new BatonError('ERR_NOT_FOUND', `no Lambda operation is ${req.method ?? ''} ${path}`);
    let name: string;
    try {
      name = decodeURIComponent(path.slice(LAMBDA_INVOKE_PREFIX.length, path.length - SUFFIX.length));
    } catch {
      throw new BatonError('ERR_INVALID_REQUEST', 'the function name is not valid percent-encoding');
    }
    let qualifier = q < 0 ? null : new URLSearchParams(url.slice(q + 1)).get('Qualifier');
    const arn = ARN_PATTERN.exec(name);
    if (arn !== null) {
      name = arn[1] as string;
      qualifier ??= arn[2] ?? null;
    } else if (name.includes(':')) {
      qualifier ??= name.slice(name.indexOf(':') + 1);
      name = name.slice(0, name.indexOf(':'));
    }
    if (qualifier !== null && qualifier !== '$LATEST') {
      throw new BatonError('ERR_FUNCTION_NOT_FOUND', `function '${name}' has no version or alias '${qualifier}' (only $LATEST exists)`);
    }
    const fn = this.#options.proxy.table.getFunction(name);
    if (fn === undefined) throw new BatonError('ERR_FUNCTION_NOT_FOUND', `Function not found: ${name}`);
    return fn;
  }
}

function invocationType(header: string | string[] | undefined): InvocationType {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined || value === 'RequestResponse') return 'RequestResponse';
  if (value === 'Event' || value === 'DryRun') return value;
  throw new BatonError('ERR_INVALID_REQUEST', `X-Amz-Invocation-Type must be RequestResponse, Event or DryRun (got '${value}')`);
}

function checkJson(body: Buffer): void {
  try {
    JSON.parse(body.toString('utf8'));
  } catch {
    throw new BatonError('ERR_INVALID_REQUEST', 'Could not parse request body into json: the payload must be JSON');
  }
}

/** What a sandbox gets for a Lambda invocation: the payload as a JSON `POST /`, marked for the handler runner. */
export function lambdaRequestHeaders(req: IncomingMessage | undefined, requestId: string, length: number, isTail: boolean): string[] {
  const headers = [
    'content-type', 'application/json',
    'content-length', String(length),
    'x-baton-event-format', 'lambda',
    'x-baton-invocation-id', requestId,
    'x-request-id', requestId,
  ];
  if (isTail) headers.push('x-baton-log-type', 'tail');
  const clientContext = req?.headers['x-amz-client-context'];
  if (typeof clientContext === 'string') headers.push('x-amz-client-context', clientContext);
  return headers;
}

/**
 * A handler function already answers in Lambda's shape (200, maybe `x-amz-function-error`); a
 * command function answers plain HTTP, and a non-2xx answer is its function error.
 */
export function lambdaHead(status: number, headers: string[]): number {
  if (status < 300) return status;
  for (let i = 0; i < headers.length; i += 2) {
    if ((headers[i] as string).toLowerCase() === 'x-amz-function-error') return 200;
  }
  headers.push('x-amz-function-error', 'Unhandled');
  return 200;
}
