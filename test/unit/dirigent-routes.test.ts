import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { functionSpecSchema } from '../../src/api/function-spec.ts';
import { BatonError } from '../../src/core/errors.ts';
import { formToSpec, imageToCode, TRACE_FUNCTION_ARTIFACT } from '../../src/controlplane/dirigent-routes.ts';

const form = (pairs: [string, string][]) => new URLSearchParams(pairs);

describe('Dirigent registration form → function spec', () => {
  it('maps every field Dirigent reads', () => {
    const spec = formToSpec(form([
      ['name', 'warm-function-1'], ['image', 'emulated'], ['port_forwarding', '80'], ['port_forwarding', 'tcp'],
      ['requested_cpu', '250'], ['requested_memory', '64'], ['scaling_upper_bound', '1024'], ['scaling_lower_bound', '1'],
    ]));
    assert.deepEqual(spec, { name: 'warm-function-1', runtime: 'emulated', resources: { cpuMilli: 250, memoryMiB: 64 }, scaling: { maxScale: 1024, minScale: 1 } });
    assert.ok(functionSpecSchema.safeParse(spec).success);
  });

  it('gives a cold-start sweep function one sandbox at most, removed as soon as it is idle', () => {
    const spec = formToSpec(form([['name', 'cold-function-0-7'], ['image', 'docker.io/cvetkovic/dirigent_empty_function:latest'], ['scaling_upper_bound', '1'], ['cold_start_sweep', 'true']]));
    assert.deepEqual(spec.scaling, { minScale: 0, maxScale: 1, stableWindowMs: 6_000, panicWindowMs: 2_000, scaleToZeroGraceMs: 0 });
  });

  it('maps images: emulated names, gRPC trace-function images (Baton\'s trace function over h2c), artifact digests (process runtime), and refuses registry images', () => {
    for (const image of ['emulated', 'trace', 'empty', 'docker.io/cvetkovic/dirigent_trace_function:latest', 'docker.io/cvetkovic/dirigent_empty_function:latest']) {
      assert.deepEqual(imageToCode(image, undefined), { runtime: 'emulated' }, image);
    }
    for (const image of ['docker.io/cvetkovic/dirigent_grpc_function:latest', 'ghcr.io/vhive-serverless/invitro_trace_function:latest']) {
      assert.deepEqual(imageToCode(image, undefined), { runtime: 'process', artifact: TRACE_FUNCTION_ARTIFACT, command: ['node', 'server.js'], protocol: 'h2c' }, image);
    }
    const digest = `sha256:${'a'.repeat(64)}`;
    assert.deepEqual(imageToCode(digest, undefined), { runtime: 'process', artifact: digest, command: ['node', 'server.js'] });
    assert.deepEqual(imageToCode(digest, '/usr/bin/python3 server.py'), { runtime: 'process', artifact: digest, command: ['/usr/bin/python3', 'server.py'] });
    assert.throws(() => imageToCode('docker.io/library/nginx:latest', undefined), (err: unknown) => err instanceof BatonError && err.code === 'ERR_INVALID_REQUEST');
  });

  it('refuses missing and malformed fields, naming them', () => {
    const cases: [[string, string][], RegExp][] = [
      [[['image', 'emulated']], /form field name is required/],
      [[['name', 'f']], /form field image is required/],
      [[['name', 'f'], ['image', 'emulated'], ['port_forwarding', '80']], /port_forwarding comes in pairs/],
      [[['name', 'f'], ['image', 'emulated'], ['port_forwarding', '80'], ['port_forwarding', 'sctp']], /protocol "sctp"/],
      [[['name', 'f'], ['image', 'emulated'], ['requested_memory', 'lots']], /requested_memory must be an integer/],
      [[['name', 'f'], ['image', 'emulated'], ['cold_start_sweep', 'yes']], /cold_start_sweep must be true or false/],
    ];
    for (const [pairs, message] of cases) {
      assert.throws(() => formToSpec(form(pairs)), (err: unknown) => err instanceof BatonError && err.code === 'ERR_INVALID_REQUEST' && message.test(err.message), String(message));
    }
  });
});
