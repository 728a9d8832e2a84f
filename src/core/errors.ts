/**
 * Every error Baton reports carries a stable `code` from this registry. Callers match on the code,
 * never on the message. HTTP status is mapped at the edge from the same table, and
 * `docs/errors.md` lists every code (a unit test keeps the two in step).
 */
export const ERROR_CODES = {
  ERR_INVALID_SPEC: { status: 400, retryable: false, summary: 'A function spec broke a rule; `details` names the field and the rule.' },
  ERR_INVALID_REQUEST: { status: 400, retryable: false, summary: 'A request body or parameter is malformed.' },
  ERR_INVALID_CONFIG: { status: 400, retryable: false, summary: 'A daemon configuration key is unknown or its value breaks a rule.' },
  ERR_INVALID_ARTIFACT: { status: 400, retryable: false, summary: 'An artifact is not a (gzipped) tar, or holds an absolute path, `..`, a link out of the tree or a special file; or an image in it is malformed or has such a layer (a device node, a write through a symlink).' },
  ERR_ARTIFACT_TOO_LARGE: { status: 413, retryable: false, summary: 'An artifact is larger (packed or unpacked) than the configured limit.' },
  ERR_ARTIFACT_NOT_FOUND: { status: 404, retryable: false, summary: 'No artifact has that digest.' },
  ERR_DIGEST_MISMATCH: { status: 502, retryable: true, summary: 'A fetched artifact does not hash to its digest.' },
  ERR_FUNCTION_NOT_FOUND: { status: 404, retryable: false, summary: 'No function has that name.' },
  ERR_FUNCTION_EXISTS: { status: 409, retryable: false, summary: 'A function with that name already exists (use PUT to update it).' },
  ERR_WORKER_NOT_FOUND: { status: 404, retryable: false, summary: 'The control plane does not know that worker (it must register again).' },
  ERR_DATAPLANE_NOT_FOUND: { status: 404, retryable: false, summary: 'The control plane does not know that data plane (it must register again).' },
  ERR_SANDBOX_NOT_FOUND: { status: 404, retryable: false, summary: 'No sandbox has that id.' },
  ERR_TOKEN_NOT_FOUND: { status: 404, retryable: false, summary: 'No API token has that id.' },
  ERR_UNAUTHENTICATED: { status: 401, retryable: false, summary: 'The call needs a valid credential and carries none, or one that is unknown, revoked or expired: a management call (or an invocation of a function with `auth: token`) an API token (`Authorization: Bearer baton_…`; the answer has `WWW-Authenticate: Bearer`), an internal call the cluster\'s join key, a command to a worker or data plane the token it gave its control plane. Nothing changed.' },
  ERR_QUOTA_NOT_FOUND: { status: 404, retryable: false, summary: 'No quota has that scope.' },
  ERR_QUOTA_EXCEEDED: { status: 403, retryable: false, summary: 'A function\'s `scaling.minScale` (with the minimum scales of the other functions in the scope) does not fit a quota of its scope; `details.scope` names it. Nothing changed.' },
  ERR_FORBIDDEN: { status: 403, retryable: false, summary: 'The token\'s role or scope does not allow the call; it says nothing of whether the object exists.' },
  ERR_NOT_FOUND: { status: 404, retryable: false, summary: 'No route matches the path.' },
  ERR_METHOD_NOT_ALLOWED: { status: 405, retryable: false, summary: 'The path exists but not with this method; the answer\'s `Allow` header (and `details.allow`) lists the methods it takes.' },
  ERR_VERSION_GAP: { status: 409, retryable: true, summary: 'An endpoint delta does not start at the receiver\'s version; the sender must send a snapshot.' },
  ERR_STALE_EPOCH: { status: 409, retryable: false, summary: 'A state-changing message carries a leader epoch lower than the highest the receiver has seen: it comes from a deposed leader and is refused.' },
  ERR_NOT_LEADER: { status: 503, retryable: true, summary: 'This control plane is a follower: internal calls go to the leader, whose URL `details.leaderUrl` names when one is elected.' },
  ERR_QUEUE_FULL: { status: 503, retryable: true, summary: 'The function\'s invocation queue is at capacity.' },
  ERR_COLD_START_TIMEOUT: { status: 504, retryable: true, summary: 'No sandbox became free for the invocation before its queue deadline.' },
  ERR_DEADLINE_EXCEEDED: { status: 504, retryable: true, summary: 'The invocation passed the deadline its client set (gRPC\'s `grpc-timeout`) while it waited for a sandbox or ran; a gRPC client sees DEADLINE_EXCEEDED.' },
  ERR_FUNCTION_TIMEOUT: { status: 504, retryable: false, summary: 'The function did not answer within its `timeoutMs`.' },
  ERR_SANDBOX_FAILED: { status: 502, retryable: true, summary: 'The sandbox failed while serving the invocation (connection refused or reset).' },
  ERR_SANDBOX_START_FAILED: { status: 502, retryable: true, summary: 'A sandbox could not be started or did not become ready.' },
  ERR_NO_CAPACITY: { status: 503, retryable: true, summary: 'No schedulable worker has the CPU and memory a sandbox needs, or the function has no sandbox and a quota of its scope is used up by its other functions.' },
  ERR_PREREQUISITE_MISSING: { status: 500, retryable: false, summary: 'The machine lacks something a runtime needs (a tool, root, a cgroup controller); the message names each with the command that fixes it.' },
  ERR_RUNTIME_UNAVAILABLE: { status: 400, retryable: false, summary: 'The worker does not offer the function\'s runtime.' },
  ERR_PAYLOAD_TOO_LARGE: { status: 413, retryable: false, summary: 'A request body is larger than allowed (compressed or, once decompressed, unpacked).' },
  ERR_TOO_MANY_REQUESTS: { status: 429, retryable: true, summary: 'The function is at its `maxConcurrency`, or at its `scaling.maxScale` with every slot busy and its bounded wait full, or the data plane is at its `maxConcurrentInvocations`, or a token made more management calls than its rate allows; refused at once, retry after `Retry-After` seconds.' },
  ERR_HEADERS_TOO_LARGE: { status: 431, retryable: false, summary: 'A request\'s header section is larger, or has more fields, than the daemon allows.' },
  ERR_ASYNC_QUEUE_FULL: { status: 503, retryable: true, summary: 'The data plane\'s durable queue of asynchronous invocations is at capacity (events or bytes); retry once it has drained.' },
  ERR_INVOCATION_NOT_FOUND: { status: 404, retryable: false, summary: 'No asynchronous invocation with that id is known (never accepted here, or past its retention).' },
  ERR_INVALID_SIGNATURE: { status: 403, retryable: false, summary: 'A Lambda Invoke API request\'s SigV4 signature does not match, is missing, or its date is too far from now.' },
  ERR_UNKNOWN_ACCESS_KEY: { status: 403, retryable: false, summary: 'A Lambda Invoke API request is signed with an access key the data plane is not configured with.' },
  ERR_SHUTTING_DOWN: { status: 503, retryable: true, summary: 'The daemon is closing and accepts no new work.' },
  ERR_UNAVAILABLE: { status: 503, retryable: true, summary: 'A peer daemon could not be reached.' },
  ERR_OVERLOADED: { status: 503, retryable: true, summary: 'Too many calls are already in flight to a peer daemon; the call was refused at once.' },
  ERR_TIMEOUT: { status: 504, retryable: true, summary: 'A call between daemons passed its deadline.' },
  ERR_BAD_RESPONSE: { status: 502, retryable: false, summary: 'A peer daemon answered an internal call with a body its contract does not allow (mismatched versions).' },
  ERR_INTERNAL: { status: 500, retryable: false, summary: 'An unexpected failure; the message and the logs say more.' },
} as const satisfies Record<string, { status: number; retryable: boolean; summary: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CODES, value);
}

/** The JSON shape of an error on the wire: `{ "error": { code, message, details } }`. */
export interface ErrorBody {
  readonly error: { readonly code: ErrorCode; readonly message: string; readonly details?: unknown };
}

export class BatonError extends Error {
  override readonly name = 'BatonError';
  readonly code: ErrorCode;
  readonly details: unknown;

  constructor(code: ErrorCode, message: string, options: { details?: unknown; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details;
  }

  get status(): number {
    return ERROR_CODES[this.code].status;
  }

  get isRetryable(): boolean {
    return ERROR_CODES[this.code].retryable;
  }

  toBody(): ErrorBody {
    const error = this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
    return { error };
  }

  /** Rebuilds an error received from a peer; unknown shapes become ERR_INTERNAL. */
  static fromBody(body: unknown, fallbackMessage: string): BatonError {
    const error = (body as { error?: { code?: unknown; message?: unknown; details?: unknown } } | null)?.error;
    if (error !== undefined && isErrorCode(error.code)) {
      const message = typeof error.message === 'string' ? error.message : fallbackMessage;
      return new BatonError(error.code, message, { details: error.details });
    }
    return new BatonError('ERR_INTERNAL', fallbackMessage);
  }
}

/** Wraps anything thrown into a BatonError, keeping the original as `cause`. */
export function toBatonError(err: unknown): BatonError {
  if (err instanceof BatonError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new BatonError('ERR_INTERNAL', message, { cause: err });
}
