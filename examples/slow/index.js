// Sleeps for ?ms=N (or a JSON body {"ms": N}) milliseconds, at most 60 s, then answers.
import { setTimeout as sleep } from 'node:timers/promises';

const MAX_MS = 60_000;

export async function handler(event) {
  let ms = Number(event.queryStringParameters?.ms ?? 0);
  if (event.body !== undefined && event.body.length > 0) {
    try {
      const parsed = JSON.parse(event.isBase64Encoded ? Buffer.from(event.body, 'base64').toString('utf8') : event.body);
      if (parsed !== null && typeof parsed === 'object' && 'ms' in parsed) ms = Number(parsed.ms);
    } catch {
      return { statusCode: 400, body: JSON.stringify({ error: 'body must be JSON like {"ms": 100}' }) };
    }
  }
  const sleptMs = Number.isFinite(ms) ? Math.min(MAX_MS, Math.max(0, Math.floor(ms))) : 0;
  await sleep(sleptMs);
  return { sleptMs, sandboxId: process.env.BATON_SANDBOX_ID };
}
