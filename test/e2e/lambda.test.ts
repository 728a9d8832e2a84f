import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvokeCommand, LambdaClient, ResourceNotFoundException, RequestTooLargeException } from '@aws-sdk/client-lambda';
import { startCluster, runCliProcess, ROOT, type Cluster } from '../kit/cluster.ts';
import { waitFor } from '../kit/wait-for.ts';

/**
 * The Lambda Invoke API with the real AWS SDK, unmodified, pointed at the data plane; handlers
 * written for Lambda's Node.js runtime (ESM, CommonJS, callback style) run unmodified.
 */

let cluster: Cluster;
let lambda: LambdaClient;
const FIXTURES = join(ROOT, 'test/fixtures/lambda-handlers');
const SYNC_LIMIT = 200_000;

async function deploy(name: string, handler: string, extra = '', dir = FIXTURES): Promise<void> {
  const manifest = join(cluster.dir, `${name}.yaml`);
  const code = handler.startsWith('[') ? `command: ${handler}\nlambdaRuntimeApi: true\n` : `handler: ${handler}\n`;
  await writeFile(manifest, `name: ${name}\n${code}dir: ${dir}\nresources:\n  memoryMiB: 256\n${extra}`);
  const res = await runCliProcess(['deploy', '-f', manifest, '--url', cluster.cpUrl]);
  assert.equal(res.code, 0, res.stderr);
}

const decode = (payload: Uint8Array | undefined): unknown => JSON.parse(Buffer.from(payload ?? new Uint8Array()).toString('utf8'));
const encode = (value: unknown): Uint8Array => Buffer.from(JSON.stringify(value));

before(async () => {
  cluster = await startCluster({ dataplane: ['--lambda-sync-payload-max-bytes', String(SYNC_LIMIT), '--async-payload-max-bytes', '50000'] });
  lambda = new LambdaClient({ endpoint: cluster.dpUrl, region: 'local', credentials: { accessKeyId: 'local', secretAccessKey: 'local' }, maxAttempts: 1 });
  await deploy('esm', 'esm.handler');
  await deploy('cjs', 'cjs.handler', 'timeoutMs: 5000\n');
  await deploy('callback', 'callback.handler');
  await deploy('pyrt', '["/usr/bin/python3", "runtime.py"]', '', join(ROOT, 'test/fixtures/lambda-runtime'));
});

after(async () => {
  lambda?.destroy();
  await cluster?.stop();
});

describe('the Lambda Invoke API with @aws-sdk/client-lambda', () => {
  it('invokes synchronously: the raw payload is the event, the result is the payload, context is Lambda\'s', async () => {
    const out = await lambda.send(new InvokeCommand({ FunctionName: 'esm', Payload: encode({ hello: 'world', n: 1 }) }));
    assert.equal(out.StatusCode, 200);
    assert.equal(out.FunctionError, undefined);
    assert.equal(out.ExecutedVersion, '$LATEST');
    const result = decode(out.Payload) as Record<string, unknown>;
    assert.deepEqual(result['event'], { hello: 'world', n: 1 });
    assert.equal(result['functionName'], 'esm');
    assert.equal(result['memoryLimitInMB'], '256');
    assert.equal(result['invokedFunctionArn'], 'arn:aws:lambda:local:000000000000:function:esm');
    assert.equal(result['awsRequestId'], out.$metadata.requestId, 'the request id reaches the handler');
    assert.ok(typeof result['remainingMs'] === 'number' && result['remainingMs'] > 0 && result['remainingMs'] <= 60_000);
  });

  it('accepts an ARN and the $LATEST qualifier, and refuses another qualifier as not found', async () => {
    const byArn = await lambda.send(new InvokeCommand({ FunctionName: 'arn:aws:lambda:local:000000000000:function:esm', Qualifier: '$LATEST', Payload: encode({ a: 1 }) }));
    assert.deepEqual((decode(byArn.Payload) as Record<string, unknown>)['event'], { a: 1 });
    await assert.rejects(lambda.send(new InvokeCommand({ FunctionName: 'esm', Qualifier: 'prod' })), (err: unknown) => err instanceof ResourceNotFoundException);
  });

  it('surfaces a thrown error as FunctionError Unhandled with errorMessage, errorType and stackTrace', async () => {
    const out = await lambda.send(new InvokeCommand({ FunctionName: 'esm', Payload: encode({ fail: 'x' }) }));
    assert.equal(out.StatusCode, 200);
    assert.equal(out.FunctionError, 'Unhandled');
    const error = decode(out.Payload) as { errorMessage: string; errorType: string; stackTrace: string[] };
    assert.equal(error.errorType, 'RangeError');
    assert.equal(error.errorMessage, 'failing on purpose: x');
    assert.ok(Array.isArray(error.stackTrace) && error.stackTrace.some((l) => l.includes('esm.mjs')));
  });

  it('returns the invocation\'s own log lines with LogType Tail', async () => {
    const out = await lambda.send(new InvokeCommand({ FunctionName: 'esm', LogType: 'Tail', Payload: encode({ marker: 'tail-me' }) }));
    const log = Buffer.from(out.LogResult ?? '', 'base64').toString('utf8');
    assert.match(log, /START RequestId: [0-9a-f-]+ Version: \$LATEST/);
    assert.match(log, /esm handler got \{"marker":"tail-me"\}/);
    assert.match(log, /END RequestId/);
    assert.match(log, /REPORT RequestId/);
    const plain = await lambda.send(new InvokeCommand({ FunctionName: 'esm', Payload: encode({}) }));
    assert.equal(plain.LogResult, undefined);
  });

  it('answers an unknown function with ResourceNotFoundException', async () => {
    await assert.rejects(lambda.send(new InvokeCommand({ FunctionName: 'no-such-function', Payload: encode({}) })), (err: unknown) => {
      assert.ok(err instanceof ResourceNotFoundException, String(err));
      assert.equal(err.$metadata.httpStatusCode, 404);
      return true;
    });
  });

  it('refuses an oversized payload with RequestTooLargeException (sync and Event limits apart)', async () => {
    const big = encode({ pad: 'x'.repeat(SYNC_LIMIT) });
    await assert.rejects(lambda.send(new InvokeCommand({ FunctionName: 'esm', Payload: big })), (err: unknown) => err instanceof RequestTooLargeException);
    const mid = encode({ pad: 'x'.repeat(60_000) });
    const ok = await lambda.send(new InvokeCommand({ FunctionName: 'esm', Payload: mid }));
    assert.equal(ok.StatusCode, 200);
    await assert.rejects(lambda.send(new InvokeCommand({ FunctionName: 'esm', InvocationType: 'Event', Payload: mid })), (err: unknown) => err instanceof RequestTooLargeException);
  });

  it('refuses a payload that is not JSON with InvalidRequestContentException', async () => {
    await assert.rejects(lambda.send(new InvokeCommand({ FunctionName: 'esm', Payload: Buffer.from('not json') })), (err: unknown) => (err as { name?: string }).name === 'InvalidRequestContentException');
  });

  it('answers DryRun with 204 after checking the function exists', async () => {
    const out = await lambda.send(new InvokeCommand({ FunctionName: 'esm', InvocationType: 'DryRun' }));
    assert.equal(out.StatusCode, 204);
    await assert.rejects(lambda.send(new InvokeCommand({ FunctionName: 'nope', InvocationType: 'DryRun' })), (err: unknown) => err instanceof ResourceNotFoundException);
  });

  it('queues an Event invocation: 202, and its result appears under its id', async () => {
    const out = await lambda.send(new InvokeCommand({ FunctionName: 'esm', InvocationType: 'Event', Payload: encode({ async: true }) }));
    assert.equal(out.StatusCode, 202);
    const id = out.$metadata.requestId as string;
    const done = await waitFor(async () => {
      const res = await fetch(`${cluster.dpUrl}/v1/invocations/${id}`);
      const body = await res.json() as { state: string; response?: { body: string }; attempts: unknown[] };
      return body.state === 'succeeded' ? body : undefined;
    }, { timeoutMs: 20_000, message: 'the Event invocation to succeed' });
    const result = JSON.parse(done.response?.body ?? '{}') as Record<string, unknown>;
    assert.deepEqual(result['event'], { async: true });
    assert.equal(result['awsRequestId'], id, 'the function sees the invocation id as awsRequestId');
    assert.equal(done.attempts.length, 1);
  });
});

describe('Lambda handler compatibility', () => {
  it('runs a CommonJS .cjs handler that uses getRemainingTimeInMillis()', async () => {
    const out = await lambda.send(new InvokeCommand({ FunctionName: 'cjs', Payload: encode({ k: 'v' }) }));
    const result = decode(out.Payload) as { style: string; event: unknown; before: number; after: number };
    assert.equal(result.style, 'cjs');
    assert.deepEqual(result.event, { k: 'v' });
    assert.ok(result.before <= 5000 && result.before > 0, String(result.before));
    assert.ok(result.after < result.before, 'the remaining time goes down');
  });

  it('runs the callback form, success and error', async () => {
    const out = await lambda.send(new InvokeCommand({ FunctionName: 'callback', Payload: encode({ x: 1 }) }));
    const result = decode(out.Payload) as { style: string; event: unknown; awsRequestId: string };
    assert.equal(result.style, 'callback');
    assert.deepEqual(result.event, { x: 1 });
    assert.equal(result.awsRequestId, out.$metadata.requestId);
    const failed = await lambda.send(new InvokeCommand({ FunctionName: 'callback', Payload: encode({ fail: true }) }));
    assert.equal(failed.FunctionError, 'Unhandled');
    assert.equal((decode(failed.Payload) as { errorMessage: string }).errorMessage, 'callback error');
  });

  it('runs a Lambda custom runtime (Python, standard library) through the Runtime API, sync and Event', async () => {
    const out = await lambda.send(new InvokeCommand({ FunctionName: 'pyrt', Payload: encode({ from: 'sdk' }) }));
    const result = decode(out.Payload) as { event: unknown; lang: string; meta: { requestId: string } };
    assert.equal(result.lang, 'python');
    assert.deepEqual(result.event, { from: 'sdk' });
    assert.equal(result.meta.requestId, out.$metadata.requestId);
    const failed = await lambda.send(new InvokeCommand({ FunctionName: 'pyrt', Payload: encode({ fail: 'nope' }) }));
    assert.equal(failed.FunctionError, 'Unhandled');
    assert.deepEqual(decode(failed.Payload), { errorMessage: 'nope', errorType: 'ValueError' });
    const queued = await lambda.send(new InvokeCommand({ FunctionName: 'pyrt', InvocationType: 'Event', Payload: encode({ later: 1 }) }));
    const id = queued.$metadata.requestId as string;
    const done = await waitFor(async () => {
      const v = await (await fetch(`${cluster.dpUrl}/v1/invocations/${id}`)).json() as { state: string; response?: { body: string } };
      return v.state === 'succeeded' ? v : undefined;
    }, { timeoutMs: 20_000, message: 'the Event invocation of the custom runtime' });
    assert.equal((JSON.parse(done.response?.body ?? '{}') as { meta: { requestId: string } }).meta.requestId, id);
  });

  it('keeps the function-URL event shape for HTTP invocations of the same handler', async () => {
    const res = await fetch(`${cluster.dpUrl}/fn/esm/some/path?q=1`, { method: 'POST', body: '{"b":2}', headers: { 'content-type': 'application/json' } });
    const result = await res.json() as { event: { version: string; rawPath: string; body: string } };
    assert.equal(result.event.version, '2.0');
    assert.equal(result.event.rawPath, '/some/path');
    assert.equal(result.event.body, '{"b":2}');
  });
});
