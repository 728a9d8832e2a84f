import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Dispatcher } from 'undici';
import { EXEC_MS_HEADER, INVITRO_HEADERS } from './runner.ts';

/**
 * The runner's invocations as gRPC calls, as Invitro's gRPC mode sends them: `faas.Executor/Execute`
 * with FaasRequest{message, runtimeInMilliSec, memoryInMebiBytes} (the trace function's proto),
 * through @grpc/grpc-js. It stands in for the runner's undici dispatcher: each dispatched request's
 * headers give the function (`host`, sent as the call's authority, which is how the data plane
 * routes gRPC), the execution time and the memory; the reply's `durationInMicroSec` is answered as
 * the body `{"ExecutionTime": µs}` the runner reads from HTTP answers.
 *
 * One channel (one HTTP/2 connection) per function, opened at its first call. A failed call is
 * reported with Baton's error code when the status message carries one (`ERR_…: …`, as the data plane
 * sends them), else `GRPC_<STATUS>`.
 */
export class GrpcDispatcher extends Dispatcher {
  readonly #target: string;
  readonly #deadlineMs: number;
  readonly #Executor: grpc.ServiceClientConstructor;
  readonly #clients = new Map<string, grpc.Client>();

  /** `target`: host:port of the data plane; `protoPath`: the trace function's faas.proto. */
  constructor(target: string, protoPath: string, deadlineMs: number) {
    super();
    this.#target = target;
    this.#deadlineMs = deadlineMs;
    const definition = protoLoader.loadSync(protoPath, { keepCase: true, defaults: true });
    const faas = (grpc.loadPackageDefinition(definition) as unknown as { faas: { Executor: grpc.ServiceClientConstructor } }).faas;
    this.#Executor = faas.Executor;
  }

  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const headers = headerMap(options.headers);
    const authority = headers.get('host') ?? '';
    let client = this.#clients.get(authority);
    if (client === undefined) {
      client = new this.#Executor(this.#target, grpc.credentials.createInsecure(), authority === '' ? {} : { 'grpc.default_authority': authority });
      this.#clients.set(authority, client);
    }
    const request = {
      message: headers.get(INVITRO_HEADERS.function) ?? '',
      runtimeInMilliSec: Number(headers.get(INVITRO_HEADERS.execMs) ?? headers.get(EXEC_MS_HEADER) ?? 0) || 0,
      memoryInMebiBytes: Number(headers.get(INVITRO_HEADERS.memoryMiB) ?? 0) || 0,
    };
    let isDone = false;
    const call = (client as grpc.Client & { Execute: ExecuteMethod }).Execute(request, { deadline: Date.now() + this.#deadlineMs }, (err, reply) => {
      if (isDone) return;
      isDone = true;
      if (err !== null || reply === undefined) {
        handler.onError?.(Object.assign(new Error(err?.details ?? 'no reply'), { code: errorCode(err) }));
        return;
      }
      const body = Buffer.from(JSON.stringify({ ExecutionTime: reply.durationInMicroSec }));
      handler.onHeaders?.(200, [], () => undefined, 'OK');
      handler.onData?.(body);
      handler.onComplete?.([]);
    });
    handler.onConnect?.((err?: Error) => {
      if (isDone) return;
      isDone = true;
      call.cancel();
      handler.onError?.(err ?? new Error('aborted'));
    });
    return true;
  }

  override close(): Promise<void>;
  override close(callback: () => void): void;
  override close(callback?: () => void): Promise<void> | void {
    for (const client of this.#clients.values()) client.close();
    this.#clients.clear();
    if (callback !== undefined) {
      callback();
      return;
    }
    return Promise.resolve();
  }

  override destroy(): Promise<void>;
  override destroy(err: Error | null): Promise<void>;
  override destroy(callback: () => void): void;
  override destroy(err: Error | null, callback: () => void): void;
  override destroy(a?: Error | null | (() => void), b?: () => void): Promise<void> | void {
    const callback = typeof a === 'function' ? a : b;
    if (callback !== undefined) return this.close(callback);
    return this.close();
  }
}

interface FaasReply { message: string; durationInMicroSec: number; memoryUsageInKb: number }
type ExecuteMethod = (request: object, options: grpc.CallOptions, callback: (err: grpc.ServiceError | null, reply?: FaasReply) => void) => grpc.ClientUnaryCall;

function headerMap(headers: Dispatcher.DispatchOptions['headers']): Map<string, string> {
  const map = new Map<string, string>();
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) map.set(String(headers[i]).toLowerCase(), String(headers[i + 1]));
  } else if (headers !== null && headers !== undefined && typeof headers === 'object') {
    for (const [name, value] of Object.entries(headers as Record<string, unknown>)) if (value !== undefined) map.set(name.toLowerCase(), String(value));
  }
  return map;
}

const STATUS_NAMES = Object.fromEntries(Object.entries(grpc.status).filter(([, v]) => typeof v === 'number').map(([k, v]) => [v, k])) as Record<number, string>;

function errorCode(err: grpc.ServiceError | null): string {
  if (err === null) return 'GRPC_UNKNOWN';
  const baton = /^(ERR_[A-Z_]+):/.exec(err.details ?? '')?.[1];
  return baton ?? `GRPC_${STATUS_NAMES[err.code] ?? err.code}`;
}
