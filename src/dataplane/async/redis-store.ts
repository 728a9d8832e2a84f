import type { Redis } from 'ioredis';
import type { Logger } from '../../observability/logger.ts';
import type { AsyncEvent, AsyncRequest } from './async-event.ts';
import type { AsyncStore, LoadReport } from './async-store.ts';

/**
 * The Redis `AsyncStore`: each data plane has a stream of its unfinished events and a hash per
 * event, under `prefix` (e.g. `baton:async:<dataplaneId>:`).
 *
 *   <prefix>ev:<id>    hash: `s` state (JSON), `r` request head (JSON), `b` request body, `x` stream entry id
 *   <prefix>stream     one entry per unfinished event (`id`), read through the consumer group `baton`
 *
 * Accepting is one MULTI (HSET + XADD); `save` resolves once Redis has answered, so an event is as
 * durable as Redis is configured to make it (`appendonly yes` with `appendfsync always` for the
 * same promise as the embedded log; `everysec` loses up to a second on a Redis crash). At start,
 * the data plane claims its stream's entries through the group (`XREADGROUP … 0` for those it had
 * claimed before, `>` for the rest); a finished event's entry is acknowledged and deleted (XACK +
 * XDEL). Finished events (kept for their results) are found by SCAN.
 */
export class RedisStore implements AsyncStore {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #consumer: string;
  readonly #logger: Logger;
  /** Stream entry of each unfinished event. */
  readonly #entries = new Map<string, string>();

  constructor(redis: Redis, prefix: string, consumer: string, logger: Logger) {
    this.#redis = redis;
    this.#prefix = prefix;
    this.#consumer = consumer;
    this.#logger = logger;
  }

  get #stream(): string {
    return `${this.#prefix}stream`;
  }

  async load(): Promise<LoadReport> {
    const redis = this.#redis;
    try {
      await redis.xgroup('CREATE', this.#stream, 'baton', '0', 'MKSTREAM');
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
    }
    for (const from of ['0', '>']) {
      for (;;) {
        const read = await redis.xreadgroup('GROUP', 'baton', this.#consumer, 'COUNT', 1000, 'STREAMS', this.#stream, from) as [string, [string, string[]][]][] | null;
        const entries = read?.[0]?.[1] ?? [];
        for (const [entryId, fields] of entries) {
          const id = fields[fields.indexOf('id') + 1];
          if (id !== undefined) this.#entries.set(id, entryId);
        }
        if (entries.length < 1000 || from === '0') break;
      }
    }
    const events: AsyncEvent[] = [];
    const corrupt: { where: string; bytes: number; reason: string }[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${this.#prefix}ev:*`, 'COUNT', 1000);
      cursor = next;
      for (const key of keys) {
        const [s, r, b] = await redis.hmgetBuffer(key, 's', 'r', 'b');
        const event = s === null || r === null || s === undefined || r === undefined ? undefined : parse(s, r, b ?? Buffer.alloc(0));
        if (event === undefined) corrupt.push({ where: key, bytes: (s?.length ?? 0) + (r?.length ?? 0), reason: 'hash without a readable state or request' });
        else events.push(event);
      }
    } while (cursor !== '0');
    return { events, corrupt };
  }

  async save(event: AsyncEvent, withRequest: boolean): Promise<void> {
    const key = `${this.#prefix}ev:${event.id}`;
    const { request, response, ...rest } = event;
    const state = response === undefined ? rest : { ...rest, response: { ...response, body: response.body.toString('base64') } };
    const multi = this.#redis.multi();
    if (withRequest) {
      const { body, ...head } = request;
      multi.hset(key, 's', JSON.stringify(state), 'r', JSON.stringify(head), 'b', body);
    } else {
      multi.hset(key, 's', JSON.stringify(state));
    }
    // Accepted: queued, or with its first attempt started in the same save (a function with a free slot).
    const isAccepted = (event.state === 'queued' && event.attempts.length === 0) || (event.state === 'running' && event.attempts.length === 1);
    const isNew = withRequest && !this.#entries.has(event.id) && isAccepted && event.redrives === 0;
    if (isNew) multi.xadd(this.#stream, '*', 'id', event.id);
    const entry = this.#entries.get(event.id);
    const isFinished = event.state === 'succeeded' || event.state === 'failed' || event.state === 'dead-lettered';
    if (isFinished && entry !== undefined) multi.xack(this.#stream, 'baton', entry).xdel(this.#stream, entry);
    if (event.state === 'queued' && event.redrives > 0 && entry === undefined) multi.xadd(this.#stream, '*', 'id', event.id);
    const results = await multi.exec();
    for (const [err] of results ?? []) if (err !== null) throw err;
    if (isFinished) this.#entries.delete(event.id);
    const added = results?.find(([, value], i) => i > 0 && typeof value === 'string' && /^\d+-\d+$/.test(value));
    if (added !== undefined) {
      this.#entries.set(event.id, added[1] as string);
      // Claimed at once by this data plane's consumer, so that a restart finds it among its pending entries.
      await this.#redis.xreadgroup('GROUP', 'baton', this.#consumer, 'COUNT', 1000, 'STREAMS', this.#stream, '>');
    }
  }

  forget(id: string): void {
    const entry = this.#entries.get(id);
    this.#entries.delete(id);
    const multi = this.#redis.multi().del(`${this.#prefix}ev:${id}`);
    if (entry !== undefined) multi.xack(this.#stream, 'baton', entry).xdel(this.#stream, entry);
    multi.exec().catch((err: unknown) => this.#logger.warn({ id, err: (err as Error).message }, 'forgetting an async invocation in Redis failed'));
  }

  async close(): Promise<void> {
    await this.#redis.quit().catch(() => undefined);
  }
}

function parse(s: Buffer, r: Buffer, b: Buffer): AsyncEvent | undefined {
  try {
    const state = JSON.parse(s.toString('utf8')) as Omit<AsyncEvent, 'request' | 'response'> & { response?: { status: number; headers: Record<string, string>; isTruncated: boolean; body: string } };
    const head = JSON.parse(r.toString('utf8')) as Omit<AsyncRequest, 'body'>;
    const { response, ...rest } = state;
    return {
      ...rest,
      request: { ...head, body: b },
      ...(response === undefined ? {} : { response: { ...response, body: Buffer.from(response.body, 'base64') } }),
    };
  } catch {
    return undefined;
  }
}
