import { FUNCTION_NAME_PATTERN } from '../../api/function-spec.ts';
import type { Clock, Timer } from '../../core/clock.ts';
import { BatonError } from '../../core/errors.ts';
import { IntrusiveList, type ListLinks } from '../../core/intrusive-list.ts';
import type { EmulatedRuntime } from './emulated-runtime.ts';
import type { ResponderReply, ResponderRequest } from './http-responder.ts';

/** The longest execution an invocation may ask for; longer requests are cut to it. */
export const MAX_EXEC_MS = 60_000;

/** The answer, shaped like the test function of Dirigent's emulated sandboxes. */
export interface EmulatedAnswer {
  readonly Status: 'OK';
  readonly Function: string;
  readonly MachineName: string;
  /** Microseconds actually waited. */
  readonly ExecutionTime: number;
}

export interface InvocationHandler {
  handle(req: ResponderRequest, reply: ResponderReply): void;
  /** Cancels every invocation still waiting (their connections are closed by the server's owner). */
  close(): void;
}

/**
 * Serves every invocation sent to an emulated worker's shared sandbox address: it waits the
 * requested execution time — header `x-baton-exec-ms`, else Invitro's `requested_cpu` (both in
 * milliseconds; default 0, at most MAX_EXEC_MS) — then answers 200 with an EmulatedAnswer.
 *
 * The address is shared by all the worker's sandboxes, so the request does not say which sandbox
 * it is for. `Function` is, in order: the `/fn/NAME/` path prefix or the Host header's first label
 * when a sandbox of that function is ready here; else the function of every ready sandbox here
 * when there is only one; else ''.
 */
export function createInvocationHandler(options: { workerId: string; runtime: EmulatedRuntime; clock: Clock }): InvocationHandler {
  const { workerId, runtime, clock } = options;
  const waiting = new IntrusiveList<Waiting>();
  const answer = (req: ResponderRequest, reply: ResponderReply, startedAt: number): void => {
    const body: EmulatedAnswer = {
      Status: 'OK',
      Function: functionOf(req, runtime),
      MachineName: workerId,
      ExecutionTime: Math.round((clock.now() - startedAt) * 1000),
    };
    reply.send(200, JSON.stringify(body));
  };
  return {
    handle(req, reply) {
      const startedAt = clock.now();
      const execMs = requestedExecMs(req);
      if (execMs instanceof BatonError) {
        reply.send(execMs.status, JSON.stringify(execMs.toBody()));
        return;
      }
      if (execMs === 0) {
        answer(req, reply, startedAt);
        return;
      }
      const wait: Waiting = { timer: undefined, prev: undefined, next: undefined, isLinked: false };
      // A Node timer may fire up to a millisecond early by performance.now() (the loop's cached
      // time), so wait again for whatever is left: the answer never reports less than was asked.
      const arm = (ms: number): void => {
        wait.timer = clock.setTimeout(() => {
          waiting.remove(wait);
          wait.timer = undefined;
          if (reply.isClosed) return;
          const leftMs = execMs - (clock.now() - startedAt);
          if (leftMs > 0) arm(leftMs);
          else answer(req, reply, startedAt);
        }, ms);
        waiting.push(wait);
      };
      arm(execMs);
      reply.onClose(() => {
        if (waiting.remove(wait)) wait.timer?.cancel();
      });
    },
    close() {
      for (const wait of waiting) wait.timer?.cancel();
      waiting.clear();
    },
  };
}

/** An invocation waiting out its execution time, in the handler's list (see IntrusiveList). */
interface Waiting extends ListLinks<Waiting> {
  timer: Timer | undefined;
}

/** The requested execution time in ms, or a 400 error for a value that is not a non-negative number. */
function requestedExecMs(req: ResponderRequest): number | BatonError {
  const text = req.header('x-baton-exec-ms') ?? req.header('requested_cpu');
  if (text === undefined) return 0;
  const ms = Number(text);
  if (text.trim() === '' || !Number.isFinite(ms) || ms < 0) {
    return new BatonError('ERR_INVALID_REQUEST', `the requested execution time must be a non-negative number of milliseconds, got '${text}'`);
  }
  return Math.min(MAX_EXEC_MS, ms);
}

function functionOf(req: ResponderRequest, runtime: EmulatedRuntime): string {
  const fromPath = /^\/fn\/([^/?]+)/.exec(req.url)?.[1];
  const fromHost = (req.header('host') ?? '').split('.')[0]?.split(':')[0];
  for (const name of [fromPath, fromHost]) {
    if (name !== undefined && FUNCTION_NAME_PATTERN.test(name) && runtime.hasFunction(name)) return name;
  }
  return runtime.soleFunction() ?? '';
}
