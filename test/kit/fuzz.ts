import { connect } from 'node:net';

/**
 * How long the fuzz properties run: a bounded number of runs in `npm test`; with
 * `npm run fuzz -- --seconds N` (BATON_FUZZ_SECONDS=N) as many as fit in N seconds per property.
 */
export function fuzzRuns(defaultRuns: number): { numRuns: number; interruptAfterTimeLimit?: number; markInterruptAsFailure?: boolean } {
  const seconds = Number(process.env['BATON_FUZZ_SECONDS'] ?? 0);
  if (!(seconds > 0)) return { numRuns: defaultRuns };
  return { numRuns: Number.MAX_SAFE_INTEGER, interruptAfterTimeLimit: seconds * 1000, markInterruptAsFailure: false };
}

/** One response read off a raw socket: status, the `x-baton-error` header, the body. */
export interface RawResponse {
  readonly status: number;
  readonly code: string | undefined;
  readonly body: string;
}

/**
 * Writes `chunks` to a fresh connection to `port` on loopback, one write each, then reads until the
 * server closes the connection or `idleMs` pass without a byte (bounded: a server that hangs shows
 * as `isHung`). Returns every response that came back, parsed well enough for assertions.
 */
export async function rawExchange(port: number, chunks: readonly Buffer[], idleMs = 1500): Promise<{ responses: RawResponse[]; isClosed: boolean; isHung: boolean }> {
  return await new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const received: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    let isDone = false;
    const finish = (isClosed: boolean, isHung: boolean): void => {
      if (isDone) return;
      isDone = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ responses: parseResponses(Buffer.concat(received)), isClosed, isHung });
    };
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => finish(false, received.length === 0), idleMs);
    };
    socket.on('connect', () => {
      for (const chunk of chunks) socket.write(chunk);
      arm();
    });
    socket.on('data', (d: Buffer) => { received.push(d); arm(); });
    socket.on('error', () => finish(true, false));
    socket.on('close', () => finish(true, false));
  });
}

/** Splits a byte stream of HTTP/1.1 responses (content-length framed, as Baton and the test upstreams answer). */
export function parseResponses(bytes: Buffer): RawResponse[] {
  const responses: RawResponse[] = [];
  let rest = bytes.toString('latin1');
  for (;;) {
    const headEnd = rest.indexOf('\r\n\r\n');
    if (headEnd < 0) return responses;
    const head = rest.slice(0, headEnd).split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '')?.[1] ?? 0);
    const headers = new Map<string, string>();
    for (const line of head.slice(1)) {
      const colon = line.indexOf(':');
      if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    const length = Number(headers.get('content-length') ?? 0);
    const body = rest.slice(headEnd + 4, headEnd + 4 + length);
    responses.push({ status, code: headers.get('x-baton-error'), body });
    rest = rest.slice(headEnd + 4 + length);
  }
}
