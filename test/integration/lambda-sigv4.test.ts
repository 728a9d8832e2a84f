import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { toBatonError } from '../../src/core/errors.ts';
import { writeLambdaError } from '../../src/dataplane/lambda/lambda-errors.ts';
import { SigV4Verifier } from '../../src/dataplane/lambda/sigv4-verifier.ts';
import { readBody } from '../../src/dataplane/read-body.ts';

/** SigV4 verification of requests signed by the real AWS SDK: the right key passes; a wrong secret, an unknown key or no signature do not. */

async function server(t: { after(fn: () => void): void }, verifier: SigV4Verifier): Promise<string> {
  const srv = createServer((req, res) => {
    readBody(req, 1 << 20).then((body) => verifier.verify(req, body)).then(
      () => res.writeHead(200, { 'content-type': 'application/json' }).end('"verified"'),
      (err: unknown) => writeLambdaError(res, toBatonError(err)),
    );
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.after(() => srv.close());
  return `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
}

const client = (endpoint: string, accessKeyId: string, secretAccessKey: string) =>
  new LambdaClient({ endpoint, region: 'eu-local-1', credentials: { accessKeyId, secretAccessKey }, maxAttempts: 1 });

test('a request signed with a configured key is verified; a wrong secret or an unknown key is refused with Lambda\'s error types', async (t) => {
  const endpoint = await server(t, new SigV4Verifier([{ accessKeyId: 'AKIDLOCAL', secretAccessKey: 's3cret/with+chars' }], Date.now));
  const good = client(endpoint, 'AKIDLOCAL', 's3cret/with+chars');
  t.after(() => good.destroy());
  const out = await good.send(new InvokeCommand({ FunctionName: 'arn:aws:lambda:eu-local-1:123:function:my-fn', Qualifier: '$LATEST', Payload: Buffer.from('{"a":[1,2,3]}'), LogType: 'Tail' }));
  assert.equal(Buffer.from(out.Payload ?? new Uint8Array()).toString(), '"verified"');

  const wrong = client(endpoint, 'AKIDLOCAL', 'not-the-secret');
  t.after(() => wrong.destroy());
  await assert.rejects(wrong.send(new InvokeCommand({ FunctionName: 'f', Payload: Buffer.from('{}') })), (err: unknown) => (err as { name?: string }).name === 'InvalidSignatureException');

  const unknown = client(endpoint, 'AKIDOTHER', 'x');
  t.after(() => unknown.destroy());
  await assert.rejects(unknown.send(new InvokeCommand({ FunctionName: 'f', Payload: Buffer.from('{}') })), (err: unknown) => (err as { name?: string }).name === 'UnrecognizedClientException');

  const unsigned = await fetch(`${endpoint}/2015-03-31/functions/f/invocations`, { method: 'POST', body: '{}' });
  assert.equal(unsigned.status, 403);
  assert.equal(unsigned.headers.get('x-amzn-errortype'), 'InvalidSignatureException');
});

test('a tampered body fails verification (the payload hash is signed)', async (t) => {
  const seen: Buffer[] = [];
  const verifier = new SigV4Verifier([{ accessKeyId: 'AK', secretAccessKey: 'SK' }], Date.now);
  const srv = createServer((req, res) => {
    readBody(req, 1 << 20).then((body) => {
      seen.push(body);
      // Verify as if one byte of the body had changed on the way.
      const tampered = Buffer.from(body);
      tampered[0] = 0x20;
      return verifier.verify(req, tampered);
    }).then(() => res.writeHead(200).end('null'), (err: unknown) => writeLambdaError(res, toBatonError(err)));
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.after(() => srv.close());
  const c = client(`http://127.0.0.1:${(srv.address() as AddressInfo).port}`, 'AK', 'SK');
  t.after(() => c.destroy());
  await assert.rejects(c.send(new InvokeCommand({ FunctionName: 'f', Payload: Buffer.from('{"x":1}') })), (err: unknown) => (err as { name?: string }).name === 'InvalidSignatureException');
  assert.equal(seen.length, 1);
});

test('without configured keys, any signature or none is accepted', async (t) => {
  const endpoint = await server(t, new SigV4Verifier([], Date.now));
  const anyone = client(endpoint, 'whoever', 'whatever');
  t.after(() => anyone.destroy());
  const out = await anyone.send(new InvokeCommand({ FunctionName: 'f' }));
  assert.equal(out.StatusCode, 200);
});
