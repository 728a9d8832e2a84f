import type { ServerResponse } from 'node:http';
import type { ErrorCode } from '../core/errors.ts';
import type { BatonError } from '../core/errors.ts';

/**
 * gRPC through the data plane (docs/errors.md, "gRPC"). A request whose content-type is
 * `application/grpc…` gets Baton's own errors as gRPC statuses — HTTP 200 with `grpc-status` and
 * `grpc-message` and no body (a Trailers-Only response), or trailers ending a response already
 * begun — instead of an HTTP error body, which a gRPC client could only report as INTERNAL or
 * UNKNOWN. Its `grpc-timeout` bounds the invocation from its arrival, queueing for a cold start
 * included.
 */

/** gRPC status codes (grpc/doc/statuscodes.md) that Baton answers with. */
export const GRPC_STATUS = {
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

/** Baton's codes a data-plane invocation can fail with, as gRPC statuses; any other is INTERNAL. */
const STATUS_OF: Partial<Record<ErrorCode, number>> = {
  ERR_FUNCTION_NOT_FOUND: GRPC_STATUS.NOT_FOUND,
  ERR_NOT_FOUND: GRPC_STATUS.NOT_FOUND,
  ERR_INVALID_REQUEST: GRPC_STATUS.INVALID_ARGUMENT,
  ERR_DEADLINE_EXCEEDED: GRPC_STATUS.DEADLINE_EXCEEDED,
  ERR_FUNCTION_TIMEOUT: GRPC_STATUS.DEADLINE_EXCEEDED,
  ERR_TOO_MANY_REQUESTS: GRPC_STATUS.RESOURCE_EXHAUSTED,
  ERR_PAYLOAD_TOO_LARGE: GRPC_STATUS.RESOURCE_EXHAUSTED,
  ERR_HEADERS_TOO_LARGE: GRPC_STATUS.RESOURCE_EXHAUSTED,
  ERR_QUEUE_FULL: GRPC_STATUS.UNAVAILABLE,
  ERR_COLD_START_TIMEOUT: GRPC_STATUS.UNAVAILABLE,
  ERR_NO_CAPACITY: GRPC_STATUS.UNAVAILABLE,
  ERR_SANDBOX_FAILED: GRPC_STATUS.UNAVAILABLE,
  ERR_SHUTTING_DOWN: GRPC_STATUS.UNAVAILABLE,
  ERR_INVALID_SIGNATURE: GRPC_STATUS.PERMISSION_DENIED,
  ERR_UNKNOWN_ACCESS_KEY: GRPC_STATUS.PERMISSION_DENIED,
};

export function grpcStatusOf(code: ErrorCode): number {
  return STATUS_OF[code] ?? GRPC_STATUS.INTERNAL;
}

/** True for `application/grpc`, `application/grpc+proto` and the like. */
export function isGrpcContentType(value: string | string[] | undefined): boolean {
  return typeof value === 'string' && value.startsWith('application/grpc') && (value.length === 16 || value.charCodeAt(16) === 0x2b /* + */ || value.charCodeAt(16) === 0x3b /* ; */);
}

const kGrpc = Symbol('baton.grpc');
type Tagged = ServerResponse & { [kGrpc]?: true };

/** Marks `res` as the answer to a gRPC request: Baton's errors on it become gRPC statuses. */
export function markGrpc(res: ServerResponse): void {
  (res as Tagged)[kGrpc] = true;
}

export function isGrpcResponse(res: ServerResponse): boolean {
  return (res as Tagged)[kGrpc] === true;
}

/**
 * Answers `err` as a gRPC status in the trailers that end the response: after a head of 200 when
 * none was sent, else after what the sandbox sent (a server stream cut by its deadline still tells
 * the client why).
 */
export function writeGrpcError(res: ServerResponse, err: BatonError): void {
  const status = String(grpcStatusOf(err.code));
  const message = encodeGrpcMessage(`${err.code}: ${err.message}`);
  // Not Trailers-Only (grpc-status in the head): Node's compatibility API then sends the head and
  // an empty DATA frame, and the client sees a stream reset without a status.
  if (!res.headersSent) res.writeHead(200, { 'content-type': 'application/grpc', 'x-baton-error': err.code });
  res.addTrailers({ 'grpc-status': status, 'grpc-message': message });
  res.end();
}

/** grpc-message is percent-encoded UTF-8 (everything outside printable ASCII, and `%`). */
function encodeGrpcMessage(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

const TIMEOUT_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000_001 };

/**
 * A `grpc-timeout` value (at most 8 digits and a unit: H M S m u n) in milliseconds, rounded up to
 * a whole one; undefined when it is malformed.
 */
export function parseGrpcTimeout(value: string): number | undefined {
  const match = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (match === null) return undefined;
  return Math.ceil(Number(match[1]) * (TIMEOUT_UNIT_MS[match[2] as string] as number));
}
