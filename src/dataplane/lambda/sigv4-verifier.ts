import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import { BatonError } from '../../core/errors.ts';

/** One access key the data plane accepts on the Lambda Invoke API. */
export interface AccessKey {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

/** How far a request's `x-amz-date` may be from now, as AWS allows. */
const MAX_SKEW_MS = 15 * 60_000;
const AUTH_PATTERN = /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request,\s*SignedHeaders=([a-z0-9;_.-]+),\s*Signature=([0-9a-f]{64})$/;

class Sha256 extends Hash {
  constructor(secret?: ConstructorParameters<typeof Hash>[1]) {
    super('sha256', secret);
  }
}

/**
 * Verifies AWS Signature Version 4 on Lambda Invoke API requests by signing the request again
 * with `@smithy/signature-v4` (the AWS SDK's own signer) over exactly the headers the client
 * signed, and comparing the signatures in constant time. Without configured keys, any signature
 * (or none) is accepted: a local cluster needs no credentials, and the SDK always signs.
 */
export class SigV4Verifier {
  readonly #keys: ReadonlyMap<string, string>;
  readonly #wallNow: () => number;

  constructor(keys: readonly AccessKey[], wallNow: () => number) {
    this.#keys = new Map(keys.map((k) => [k.accessKeyId, k.secretAccessKey]));
    this.#wallNow = wallNow;
  }

  get isEnabled(): boolean {
    return this.#keys.size > 0;
  }

  /** Throws ERR_INVALID_SIGNATURE or ERR_UNKNOWN_ACCESS_KEY; resolves when the signature is good (or checking is off). */
  async verify(req: IncomingMessage, body: Buffer): Promise<void> {
    if (!this.isEnabled) return;
    const auth = AUTH_PATTERN.exec(String(req.headers.authorization ?? ''));
    if (auth === null) throw new BatonError('ERR_INVALID_SIGNATURE', 'the request is not signed with AWS Signature Version 4 (Authorization header missing or malformed)');
    const [, accessKeyId, , region, service, signedHeaderList, signature] = auth as unknown as [string, string, string, string, string, string, string];
    const secretAccessKey = this.#keys.get(accessKeyId);
    if (secretAccessKey === undefined) throw new BatonError('ERR_UNKNOWN_ACCESS_KEY', `the access key '${accessKeyId}' is not known here`);
    const signingDate = parseAmzDate(String(req.headers['x-amz-date'] ?? ''));
    if (signingDate === undefined || Math.abs(this.#wallNow() - signingDate.getTime()) > MAX_SKEW_MS) {
      throw new BatonError('ERR_INVALID_SIGNATURE', 'x-amz-date is missing, malformed or more than 15 minutes from now');
    }
    // The client signs the payload's hash as a header: it must be the hash of the body received.
    const contentHash = req.headers['x-amz-content-sha256'];
    if (contentHash !== undefined && contentHash !== createHash('sha256').update(body).digest('hex')) {
      throw new BatonError('ERR_INVALID_SIGNATURE', 'x-amz-content-sha256 is not the SHA-256 of the body (an unsigned or altered payload)');
    }
    const signedHeaders = signedHeaderList.split(';');
    const headers: Record<string, string> = {};
    for (const name of signedHeaders) {
      const value = req.headersDistinct[name];
      if (value !== undefined) headers[name] = value.join(',');
    }
    const url = new URL(req.url ?? '/', 'http://local');
    const query: Record<string, string | string[]> = {};
    for (const key of new Set(url.searchParams.keys())) {
      const values = url.searchParams.getAll(key);
      query[key] = values.length === 1 ? values[0] as string : values;
    }
    const signer = new SignatureV4({ credentials: { accessKeyId, secretAccessKey }, region, service, sha256: Sha256, uriEscapePath: true, applyChecksum: false });
    const signed = await signer.sign({
      method: req.method ?? 'POST', protocol: 'http:', hostname: headers['host'] ?? '', path: url.pathname, query, headers, body,
    }, { signingDate, signingRegion: region, signingService: service, signableHeaders: new Set(signedHeaders) });
    const expected = /Signature=([0-9a-f]{64})/.exec(String(signed.headers['authorization'] ?? ''))?.[1] ?? '';
    if (expected.length !== signature.length || !timingSafeEqual(Buffer.from(expected), Buffer.from(signature))) {
      throw new BatonError('ERR_INVALID_SIGNATURE', 'the request signature does not match (check the secret access key)');
    }
  }
}

/** `20240102T030405Z` → that instant (UTC). */
function parseAmzDate(value: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (m === null) return undefined;
  const [, y, mo, d, h, mi, s] = m.map(Number) as [number, number, number, number, number, number, number];
  return new Date(Date.UTC(y, mo - 1, d, h, mi, s));
}
