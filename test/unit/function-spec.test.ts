import { test } from 'node:test';
import assert from 'node:assert/strict';
import { functionSpecSchema, SCALING_DEFAULTS } from '../../src/api/function-spec.ts';
import { parseOrThrow } from '../../src/api/validate.ts';
import { BatonError } from '../../src/core/errors.ts';

const artifact = `sha256:${'a'.repeat(64)}`;
const parse = (value: unknown) => parseOrThrow(functionSpecSchema, value, 'ERR_INVALID_SPEC', 'function spec');

function issuesOf(value: unknown): { field: string; rule: string }[] {
  try {
    parse(value);
  } catch (err) {
    assert.ok(err instanceof BatonError);
    assert.equal(err.code, 'ERR_INVALID_SPEC');
    return (err.details as { issues: { field: string; rule: string }[] }).issues;
  }
  assert.fail('expected the spec to be refused');
}

test('a minimal spec compiles to the fully-defaulted form', () => {
  const spec = parse({ name: 'hello', artifact, handler: 'index.handler' });
  assert.equal(spec.runtime, 'process');
  assert.equal(spec.concurrency, 1);
  assert.deepEqual(spec.scaling, { ...SCALING_DEFAULTS });
  assert.deepEqual(spec.resources, { cpuMilli: 100, memoryMiB: 128, maxPids: 256 });
  assert.equal(spec.timeoutMs, 60_000);
  assert.deepEqual(spec.env, {});
  assert.equal(spec.network, 'none');
});

test('a container spec needs an image artifact; handler and command are optional, never both', () => {
  const spec = parse({ name: 'img', runtime: 'container', artifact, resources: { maxPids: 32, diskMiB: 16 }, network: 'egress' });
  assert.equal(spec.runtime, 'container');
  assert.deepEqual(spec.resources, { cpuMilli: 100, memoryMiB: 128, maxPids: 32, diskMiB: 16 });
  assert.equal(spec.network, 'egress');
  assert.throws(() => parse({ name: 'img', runtime: 'container' }), { code: 'ERR_INVALID_SPEC', message: /artifact/ });
  assert.throws(() => parse({ name: 'img', runtime: 'container', artifact, handler: 'index.handler', command: ['x'] }), { code: 'ERR_INVALID_SPEC', message: /handler/ });
  assert.throws(() => parse({ name: 'img', runtime: 'container', artifact, network: 'host' }), { code: 'ERR_INVALID_SPEC', message: /network/ });
  assert.throws(() => parse({ name: 'img', runtime: 'container', artifact, command: ['/bootstrap'], lambdaRuntimeApi: true }), { code: 'ERR_INVALID_SPEC', message: /lambdaRuntimeApi: is only for runtime process/ });
  assert.throws(() => parse({ name: 'emu', runtime: 'emulated', lambdaRuntimeApi: true }), { code: 'ERR_INVALID_SPEC', message: /lambdaRuntimeApi/ });
  assert.equal(parse({ name: 'cr', runtime: 'process', artifact, command: ['/bootstrap'], lambdaRuntimeApi: true }).lambdaRuntimeApi, true);
});

test('partial scaling settings keep the other defaults', () => {
  const spec = parse({ name: 'f', artifact, command: ['./serve'], scaling: { maxScale: 3 } });
  assert.equal(spec.scaling.maxScale, 3);
  assert.equal(spec.scaling.stableWindowMs, 60_000);
});

const cases: [string, Record<string, unknown>, string][] = [
  ['name with capitals', { name: 'Hello' }, 'name'],
  ['name starting with a digit', { name: '1abc' }, 'name'],
  ['name longer than 63', { name: `a${'b'.repeat(63)}` }, 'name'],
  ['artifact not a digest', { artifact: 'sha256:xyz' }, 'artifact'],
  ['both handler and command', { command: ['x'] }, 'handler'],
  ['neither handler nor command', { handler: undefined }, 'handler'],
  ['handler escaping the artifact', { handler: '../up.handler' }, 'handler'],
  ['handler without export', { handler: 'index' }, 'handler'],
  ['concurrency 0', { concurrency: 0 }, 'concurrency'],
  ['minScale above maxScale', { scaling: { minScale: 5, maxScale: 2 } }, 'scaling.minScale'],
  ['panic window longer than stable', { scaling: { stableWindowMs: 1000, panicWindowMs: 2000 } }, 'scaling.panicWindowMs'],
  ['targetUtilization above 1', { scaling: { targetUtilization: 1.5 } }, 'scaling.targetUtilization'],
  ['scale-down rate of 1', { scaling: { maxScaleDownRate: 1 } }, 'scaling.maxScaleDownRate'],
  ['env setting PORT', { env: { PORT: '1' } }, 'env.PORT'],
  ['env setting BATON_*', { env: { BATON_X: '1' } }, 'env.BATON_X'],
  ['unknown field', { replicas: 3 }, '(root)'],
  ['unknown scaling field', { scaling: { window: 3 } }, 'scaling'],
  ['unknown runtime', { runtime: 'vm' }, 'runtime'],
  ['timeout of 0', { timeoutMs: 0 }, 'timeoutMs'],
  ['affinity header with capitals', { affinityHeader: 'X-User' }, 'affinityHeader'],
  ['a process function without artifact', { artifact: undefined }, 'artifact'],
  ['an emulated function with a handler', { runtime: 'emulated' }, 'handler'],
  ['an emulated function with a command', { runtime: 'emulated', handler: undefined, command: ['./serve'] }, 'command'],
];

for (const [what, change, field] of cases) {
  test(`refuses ${what}, naming ${field}`, () => {
    const issues = issuesOf({ name: 'fn', artifact, handler: 'index.handler', ...change });
    assert.ok(issues.some((i) => i.field === field), JSON.stringify(issues));
  });
}

test('an emulated function needs no code: no artifact, handler or command', () => {
  const spec = parse({ name: 'emu', runtime: 'emulated' });
  assert.equal(spec.runtime, 'emulated');
  assert.equal(spec.artifact, undefined);
  assert.equal(spec.handler, undefined);
  assert.equal(spec.command, undefined);
  assert.equal(spec.concurrency, 1);
});

test('an emulated function may name an artifact (it is never checked or fetched)', () => {
  assert.equal(parse({ name: 'emu', runtime: 'emulated', artifact }).artifact, artifact);
});

test('protocol is http1 by default or h2c; h2c is refused where the sandbox answers only HTTP/1.1', () => {
  assert.equal(parse({ name: 'p', artifact, handler: 'index.handler' }).protocol, 'http1');
  assert.equal(parse({ name: 'p', artifact, command: ['node', 'server.js'], protocol: 'h2c' }).protocol, 'h2c');
  assert.equal(parse({ name: 'c', runtime: 'container', artifact, protocol: 'h2c' }).protocol, 'h2c');
  assert.deepEqual(issuesOf({ name: 'p', artifact, handler: 'index.handler', protocol: 'h2' }).map((i) => i.field), ['protocol']);
  assert.deepEqual(issuesOf({ name: 'e', runtime: 'emulated', protocol: 'h2c' }).map((i) => i.field), ['protocol']);
  assert.deepEqual(issuesOf({ name: 'l', artifact, command: ['./bootstrap'], lambdaRuntimeApi: true, protocol: 'h2c' }).map((i) => i.field), ['protocol']);
});
