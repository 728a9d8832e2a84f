import type { FunctionRecord } from '../../api/function-spec.ts';
import type { BatonClient, FunctionStatus } from '../client.ts';

export interface FunctionWithStatus {
  readonly record: FunctionRecord;
  /** Undefined when the function vanished between the list and the lookup. */
  readonly status: FunctionStatus | undefined;
}

const LOOKUP_CONCURRENCY = 16;

/**
 * Every function with its sandbox counts. The list answer may already carry `status`; otherwise
 * each function is looked up, at most 16 at a time.
 */
export async function listWithStatus(client: BatonClient, signal?: AbortSignal): Promise<FunctionWithStatus[]> {
  const records = await client.listFunctions(signal === undefined ? {} : { signal });
  const out: FunctionWithStatus[] = new Array(records.length);
  let next = 0;
  const lane = async () => {
    for (let i = next++; i < records.length; i = next++) {
      const record = records[i] as FunctionRecord & { status?: FunctionStatus };
      const status = record.status ?? await client.getFunction(record.spec.name).then((d) => d.status, () => undefined);
      out[i] = { record, status };
    }
  };
  await Promise.all(Array.from({ length: Math.min(LOOKUP_CONCURRENCY, records.length) }, lane));
  return out.sort((a, b) => (a.record.spec.name < b.record.spec.name ? -1 : 1));
}
