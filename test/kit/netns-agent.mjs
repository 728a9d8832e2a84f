// Runs inside a network namespace of a test (`ip netns exec NS node netns-agent.mjs`): reads one
// JSON request per line on stdin — {id, url, method?, headers?, body?, timeoutMs?} — performs it
// from inside the namespace and writes {id, status, body} or {id, error} as one line on stdout.
import { createInterface } from 'node:readline';

createInterface({ input: process.stdin }).on('line', async (line) => {
  let request;
  try {
    request = JSON.parse(line);
  } catch {
    return;
  }
  try {
    const res = await fetch(request.url, {
      method: request.method ?? 'GET',
      headers: request.headers ?? {},
      body: request.body,
      signal: AbortSignal.timeout(request.timeoutMs ?? 10_000),
    });
    process.stdout.write(`${JSON.stringify({ id: request.id, status: res.status, body: await res.text() })}\n`);
  } catch (caught) {
    const err = /** @type {Error & { cause?: { code?: string } }} */ (caught);
    process.stdout.write(`${JSON.stringify({ id: request.id, error: `${err.name}: ${err.cause?.code ?? err.message}` })}\n`);
  }
});
