import type { Logger } from '../../observability/logger.ts';
import type { AsyncEvent, AsyncRequest, AsyncResponse } from './async-event.ts';
import type { AsyncStore, LoadReport } from './async-store.ts';
import type { SegmentLog } from './segment-log.ts';

/** Where an event's records are: its last full record (with the request) and its last state record. */
interface Placement {
  home: number;
  last: number;
}

interface EventRecord {
  readonly t: 'e';
  readonly id: string;
  readonly fn: string;
  readonly acceptedAt: number;
  readonly queuedAt: number;
  readonly state: AsyncEvent['state'];
  readonly attempts: AsyncEvent['attempts'];
  readonly notBefore: number;
  readonly throttles: number;
  readonly redrives: number;
  readonly finishedAt?: number;
  readonly deadLetterReason?: AsyncEvent['deadLetterReason'];
  readonly response?: { status: number; headers: Record<string, string>; isTruncated: boolean; body: string };
  readonly request?: Omit<AsyncRequest, 'body'>;
}

interface ForgetRecord {
  readonly t: 'f';
  readonly id: string;
}

/**
 * The embedded `AsyncStore`: every state change is one record in a `SegmentLog` (group commit,
 * checksums). An event's request (its body is the record's body) is written on acceptance, and
 * again when the event is dead-lettered or redriven, so that an old segment is not kept alive by
 * one long-lived dead letter. A segment is deleted once no kept event has its last full record or
 * its last state record there.
 */
export class EmbeddedStore implements AsyncStore {
  readonly #log: SegmentLog;
  readonly #logger: Logger;
  readonly #placements = new Map<string, Placement>();
  /** Kept events with a record in each segment (counted once per event and segment). */
  readonly #refs = new Map<number, number>();

  constructor(log: SegmentLog, logger: Logger) {
    this.#log = log;
    this.#logger = logger;
  }

  async load(): Promise<LoadReport> {
    const events = new Map<string, AsyncEvent>();
    const report = await this.#log.open(({ segment, header, body }) => {
      const record = header as EventRecord | ForgetRecord;
      if (record.t === 'f') {
        events.delete(record.id);
        this.#placements.delete(record.id);
        return;
      }
      const known = events.get(record.id);
      const request = record.request === undefined ? known?.request : { ...record.request, body };
      // State records of an event whose full record is gone (forgotten, its segment deleted) are left over: skip them.
      if (request === undefined) return;
      events.set(record.id, fromRecord(record, request));
      const placement = this.#placements.get(record.id);
      if (placement === undefined || record.request !== undefined) this.#placements.set(record.id, { home: segment, last: segment });
      else placement.last = segment;
    });
    for (const placement of this.#placements.values()) this.#ref(placement, 1);
    for (const segment of this.#log.segments) {
      if ((this.#refs.get(segment) ?? 0) === 0) await this.#log.drop(segment);
    }
    return {
      events: [...events.values()],
      corrupt: report.corrupt.map((c) => ({ where: `segment ${c.segment} at byte ${c.offset}`, bytes: c.bytes, reason: c.reason })),
    };
  }

  save(event: AsyncEvent, withRequest: boolean): Promise<void> {
    const { segment, durable } = this.#log.append(toRecord(event, withRequest), withRequest ? event.request.body : undefined);
    const placement = this.#placements.get(event.id);
    if (placement === undefined) {
      const fresh = { home: segment, last: segment };
      this.#placements.set(event.id, fresh);
      this.#ref(fresh, 1);
    } else {
      this.#ref(placement, -1);
      if (withRequest) placement.home = segment;
      placement.last = segment;
      this.#ref(placement, 1);
    }
    return durable;
  }

  forget(id: string): void {
    const placement = this.#placements.get(id);
    if (placement === undefined) return;
    this.#placements.delete(id);
    this.#ref(placement, -1);
    // Without this record a replay would bring back the event from its state records' segment.
    const { segment } = this.#log.append({ t: 'f', id } satisfies ForgetRecord);
    this.#refs.set(segment, this.#refs.get(segment) ?? 0);
  }

  close(): Promise<void> {
    return this.#log.close();
  }

  #ref(placement: Placement, delta: 1 | -1): void {
    this.#bump(placement.home, delta);
    if (placement.last !== placement.home) this.#bump(placement.last, delta);
  }

  #bump(segment: number, delta: 1 | -1): void {
    const count = (this.#refs.get(segment) ?? 0) + delta;
    this.#refs.set(segment, count);
    if (count === 0 && segment < this.#log.activeSegment) {
      this.#refs.delete(segment);
      this.#log.drop(segment).catch((err: unknown) => this.#logger.warn({ segment, err: (err as Error).message }, 'deleting a segment failed'));
    }
  }
}

function toRecord(event: AsyncEvent, withRequest: boolean): EventRecord {
  const { body: _body, ...request } = event.request;
  return {
    t: 'e', id: event.id, fn: event.fn, acceptedAt: event.acceptedAt, queuedAt: event.queuedAt, state: event.state,
    attempts: event.attempts, notBefore: event.notBefore, throttles: event.throttles, redrives: event.redrives,
    ...(event.finishedAt === undefined ? {} : { finishedAt: event.finishedAt }),
    ...(event.deadLetterReason === undefined ? {} : { deadLetterReason: event.deadLetterReason }),
    ...(event.response === undefined ? {} : { response: { status: event.response.status, headers: event.response.headers, isTruncated: event.response.isTruncated, body: event.response.body.toString('base64') } }),
    ...(withRequest ? { request } : {}),
  };
}

function fromRecord(record: EventRecord, request: AsyncRequest): AsyncEvent {
  const response: AsyncResponse | undefined = record.response === undefined
    ? undefined
    : { status: record.response.status, headers: record.response.headers, isTruncated: record.response.isTruncated, body: Buffer.from(record.response.body, 'base64') };
  return {
    id: record.id, fn: record.fn, acceptedAt: record.acceptedAt, queuedAt: record.queuedAt, request, state: record.state,
    attempts: record.attempts, notBefore: record.notBefore, throttles: record.throttles, redrives: record.redrives,
    ...(record.finishedAt === undefined ? {} : { finishedAt: record.finishedAt }),
    ...(response === undefined ? {} : { response }),
    ...(record.deadLetterReason === undefined ? {} : { deadLetterReason: record.deadLetterReason }),
  };
}
