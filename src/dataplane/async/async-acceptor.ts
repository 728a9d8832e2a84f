import type { AsyncRequest } from './async-event.ts';

/** What the invocation APIs need from the asynchronous queue. */
export interface AsyncAcceptor {
  /**
   * Resolves once the event is durable (then, and only then, may the caller answer 202).
   * Rejects with ERR_ASYNC_QUEUE_FULL when the queue is at capacity, ERR_SHUTTING_DOWN while closing.
   */
  accept(id: string, fn: string, request: AsyncRequest): Promise<void>;
}
