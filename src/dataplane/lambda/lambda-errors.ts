import type { ServerResponse } from 'node:http';
import type { BatonError, ErrorCode } from '../../core/errors.ts';
import { retryAfterHeader } from '../invocation.ts';

/**
 * The Lambda Invoke API's error shapes. A data-plane error becomes either a *service error*
 * (Lambda's status, `x-amzn-ErrorType`, which the AWS SDK reads first, and a JSON body
 * `{"Type":"User"|"Service","message"}`), or, when the function itself failed (timed out, its
 * sandbox died), Lambda's *function error*: 200, `X-Amz-Function-Error: Unhandled` and
 * `{"errorMessage","errorType"}`, as Lambda answers for a timed-out or crashed function.
 */
export type LambdaErrorType =
  | 'ResourceNotFoundException'
  | 'TooManyRequestsException'
  | 'InvalidRequestContentException'
  | 'RequestTooLargeException'
  | 'InvalidSignatureException'
  | 'UnrecognizedClientException'
  | 'AccessDeniedException'
  | 'ServiceException';

const SERVICE_ERRORS: Partial<Record<ErrorCode, { status: number; type: LambdaErrorType }>> = {
  ERR_FUNCTION_NOT_FOUND: { status: 404, type: 'ResourceNotFoundException' },
  ERR_NOT_FOUND: { status: 404, type: 'ResourceNotFoundException' },
  ERR_QUEUE_FULL: { status: 429, type: 'TooManyRequestsException' },
  ERR_TOO_MANY_REQUESTS: { status: 429, type: 'TooManyRequestsException' },
  ERR_ASYNC_QUEUE_FULL: { status: 429, type: 'TooManyRequestsException' },
  ERR_NO_CAPACITY: { status: 429, type: 'TooManyRequestsException' },
  ERR_COLD_START_TIMEOUT: { status: 429, type: 'TooManyRequestsException' },
  ERR_INVALID_REQUEST: { status: 400, type: 'InvalidRequestContentException' },
  ERR_PAYLOAD_TOO_LARGE: { status: 413, type: 'RequestTooLargeException' },
  ERR_INVALID_SIGNATURE: { status: 403, type: 'InvalidSignatureException' },
  ERR_UNKNOWN_ACCESS_KEY: { status: 403, type: 'UnrecognizedClientException' },
  ERR_UNAUTHENTICATED: { status: 401, type: 'UnrecognizedClientException' },
  ERR_FORBIDDEN: { status: 403, type: 'AccessDeniedException' },
};

const FUNCTION_ERRORS: Partial<Record<ErrorCode, string>> = {
  ERR_FUNCTION_TIMEOUT: 'Sandbox.Timedout',
  ERR_SANDBOX_FAILED: 'Runtime.ExitError',
};

/** `errorType` when the function failed, else undefined (a service error). */
export function functionErrorType(code: ErrorCode): string | undefined {
  return FUNCTION_ERRORS[code];
}

/** Lambda's status and error type for a data-plane error (ServiceException 500 for the rest). */
export function lambdaServiceError(code: ErrorCode): { status: number; type: LambdaErrorType } {
  return SERVICE_ERRORS[code] ?? { status: 500, type: 'ServiceException' };
}

/** The `kErrorWriter` of responses to the Lambda Invoke API. */
export function writeLambdaError(res: ServerResponse, err: BatonError): void {
  const functionError = functionErrorType(err.code);
  if (functionError !== undefined) {
    const body = JSON.stringify({ errorMessage: err.message, errorType: functionError });
    res.writeHead(200, { 'content-type': 'application/json', 'x-amz-function-error': 'Unhandled', 'x-baton-error': err.code, 'content-length': Buffer.byteLength(body) });
    res.end(body);
    return;
  }
  const { status, type } = lambdaServiceError(err.code);
  const body = JSON.stringify({ Type: status >= 500 ? 'Service' : 'User', message: err.message, code: err.code });
  res.writeHead(status, { 'content-type': 'application/json', 'x-amzn-errortype': type, 'x-baton-error': err.code, 'content-length': Buffer.byteLength(body), ...retryAfterHeader(err) });
  res.end(body);
}
