/**
 * What a run records per invocation, column-wise (about 36 bytes per invocation on top of the
 * plan), so that 10^6 invocations fit in tens of MB. The runner fills it; analysis reads it.
 * All times are ms on the run's monotonic timeline (0 = the run's start).
 */
export interface InvocationRecords {
  /** Number of invocations recorded (the first `length` of the plan: sending is in plan order). */
  readonly length: number;
  readonly functions: readonly string[];
  readonly functionIndex: ArrayLike<number>;
  /** Requested execution time, ms. */
  readonly requestedExecMs: ArrayLike<number>;
  /** Trace minute of the invocation (for Dirigent's warm-up filter). */
  readonly minute: ArrayLike<number>;
  /** When the plan said to send it. */
  readonly scheduledMs: ArrayLike<number>;
  /** When it was actually handed to the HTTP client. */
  readonly sentMs: ArrayLike<number>;
  /** When the whole response body had arrived, or the invocation failed. */
  readonly endMs: ArrayLike<number>;
  /** HTTP status; 0 when no response came (transport error, timeout, stop). */
  readonly status: ArrayLike<number>;
  /** 0 = no error; otherwise an index into `errorCodes`. */
  readonly errorIndex: ArrayLike<number>;
  /** Interned error codes; `errorCodes[0]` is '' (no error). */
  readonly errorCodes: readonly string[];
  /** `ExecutionTime` reported by the function, µs; NaN when the reply had none. */
  readonly execUs: ArrayLike<number>;
}

/** One invocation in object form, for tests and small hand-built record sets. */
export interface InvocationRow {
  readonly function: string;
  readonly requestedExecMs: number;
  readonly minute?: number;
  readonly scheduledMs: number;
  readonly sentMs: number;
  readonly endMs: number;
  readonly status: number;
  /** Omitted or '' for no error. */
  readonly error?: string;
  readonly execUs?: number;
}

/** True when the invocation got a 2xx answer and no error was recorded. */
export function isOk(records: InvocationRecords, i: number): boolean {
  const status = records.status[i] ?? 0;
  return status >= 200 && status < 300 && (records.errorIndex[i] ?? 0) === 0;
}

/** The error code of invocation i, '' when it has none. */
export function errorCodeOf(records: InvocationRecords, i: number): string {
  return records.errorCodes[records.errorIndex[i] ?? 0] ?? '';
}

/** Builds column-form records from rows. */
export function recordsFromRows(rows: readonly InvocationRow[]): InvocationRecords {
  const functions: string[] = [];
  const errorCodes: string[] = [''];
  const intern = (list: string[], value: string): number => {
    const index = list.indexOf(value);
    return index >= 0 ? index : list.push(value) - 1;
  };
  const column = (pick: (row: InvocationRow) => number): Float64Array => Float64Array.from(rows, pick);
  return {
    length: rows.length,
    functions,
    errorCodes,
    functionIndex: Uint32Array.from(rows, (r) => intern(functions, r.function)),
    errorIndex: Uint16Array.from(rows, (r) => intern(errorCodes, r.error ?? '')),
    requestedExecMs: column((r) => r.requestedExecMs),
    minute: column((r) => r.minute ?? Math.floor(r.scheduledMs / 60_000)),
    scheduledMs: column((r) => r.scheduledMs),
    sentMs: column((r) => r.sentMs),
    endMs: column((r) => r.endMs),
    status: column((r) => r.status),
    execUs: column((r) => r.execUs ?? Number.NaN),
  };
}
