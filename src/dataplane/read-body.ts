import type { IncomingMessage } from 'node:http';
import { BatonError } from '../core/errors.ts';

/**
 * Reads a request body of at most `maxBytes`. A larger `content-length` is refused before a byte
 * is read; a body that grows past the limit (chunked) is refused as soon as it does. Rejects with
 * ERR_PAYLOAD_TOO_LARGE (`details.maxBytes`), or ERR_INVALID_REQUEST when the client went away.
 */
export function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > maxBytes) return Promise.reject(tooLarge(maxBytes));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    const onData = (chunk: Buffer): void => {
      bytes += chunk.length;
      if (bytes > maxBytes) {
        req.off('data', onData);
        req.resume();
        reject(tooLarge(maxBytes));
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => resolve(chunks.length === 1 ? chunks[0] as Buffer : Buffer.concat(chunks)));
    req.once('error', (err) => reject(new BatonError('ERR_INVALID_REQUEST', `reading the request body failed: ${err.message}`, { cause: err })));
    req.once('aborted', () => reject(new BatonError('ERR_INVALID_REQUEST', 'the client went away while sending the body')));
  });
}

function tooLarge(maxBytes: number): BatonError {
  return new BatonError('ERR_PAYLOAD_TOO_LARGE', `the request body must be smaller than ${maxBytes} bytes`, { details: { maxBytes } });
}
