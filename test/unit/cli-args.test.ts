import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseCommandArgs, UsageError } from '../../src/cli/command.ts';
import { parseUpFlags, upPorts } from '../../src/cli/daemons.ts';
import { deployCommand } from '../../src/cli/commands/deploy.ts';
import { parseHeaders } from '../../src/cli/commands/invoke.ts';
import { LogCursor } from '../../src/cli/commands/logs.ts';
import { formatTable } from '../../src/cli/format.ts';
import { applyDeployFlags, parseEnvPairs, parseManifest, splitCommand, validateDraft } from '../../src/cli/manifest.ts';
import { BatonError } from '../../src/core/errors.ts';
import { runCli } from '../kit/run-cli.ts';

function specError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => err instanceof BatonError && err.code === 'ERR_INVALID_SPEC' && pattern.test(err.message));
}

test('splitCommand splits like a shell without evaluating', () => {
  assert.deepEqual(splitCommand('node server.js --port 8080'), ['node', 'server.js', '--port', '8080']);
  assert.deepEqual(splitCommand(`  python3 -c "print('hi there')"  `), ['python3', '-c', "print('hi there')"]);
  assert.deepEqual(splitCommand(`echo 'a "b" $HOME' "x\\"y" \\$PATH`), ['echo', 'a "b" $HOME', 'x"y', '$PATH']);
  assert.deepEqual(splitCommand(`a "" b`), ['a', '', 'b']);
  assert.deepEqual(splitCommand('a\tb\nc'), ['a', 'b', 'c']);
  assert.deepEqual(splitCommand(`say hello\\ world`), ['say', 'hello world']);
  specError(() => splitCommand(`echo "unterminated`), /command: unterminated " quote/);
  specError(() => splitCommand('   '), /command: must not be empty/);
});

test('--env pairs split at the first =', () => {
  assert.deepEqual(parseEnvPairs(['A=1', 'B=x=y', 'C=', 'A=2']), { A: '2', B: 'x=y', C: '' });
  specError(() => parseEnvPairs(['NOVALUE']), /env: 'NOVALUE' must be KEY=VALUE/);
  specError(() => parseEnvPairs(['=x']), /env: '=x' must be KEY=VALUE/);
});

test('--header pairs split at the first colon', () => {
  assert.deepEqual(parseHeaders(['Accept: text/plain', 'X-Trace:a:b']), { Accept: 'text/plain', 'X-Trace': 'a:b' });
  assert.throws(() => parseHeaders(['nocolon']), UsageError);
  assert.throws(() => parseHeaders(['bad key: v']), UsageError);
});

test('deploy flags map to the function spec', () => {
  const plan = applyDeployFlags(undefined, {
    name: 'hello', dir: 'fn', command: 'node server.js --greeting "hi there"', concurrency: '4', minScale: '1', maxScale: '10',
    memory: '256', cpu: '500', timeoutMs: '3000', env: ['A=1', 'B=2'],
  }, '/work/project');
  assert.equal(plan.dir, '/work/project/fn');
  assert.deepEqual(plan.spec, {
    name: 'hello',
    command: ['node', 'server.js', '--greeting', 'hi there'],
    concurrency: 4,
    timeoutMs: 3000,
    scaling: { minScale: 1, maxScale: 10 },
    resources: { memoryMiB: 256, cpuMilli: 500 },
    env: { A: '1', B: '2' },
  });
  const spec = validateDraft(plan.spec);
  assert.equal(spec.scaling.targetUtilization, 0.7, 'defaults fill the rest');
  assert.equal(spec.protocol, 'http1');
  assert.equal(validateDraft(applyDeployFlags(undefined, { name: 'g', command: 'node server.js', protocol: 'h2c' }, '/').spec).protocol, 'h2c');
  specError(() => validateDraft(applyDeployFlags(undefined, { name: 'g', command: 'node server.js', protocol: 'http3' }, '/').spec), /protocol/);
  specError(() => applyDeployFlags(undefined, { name: 'x', concurrency: 'many' }, '/'), /concurrency: --concurrency must be a number \(got 'many'\)/);
});

test('a manifest gives the spec and dir; flags override it', () => {
  const manifest = parseManifest([
    'name: hello',
    'handler: index.handler',
    'concurrency: 2',
    'scaling:',
    '  maxScale: 5',
    'env:',
    '  DEBUG: 1',
    '  MODE: fast',
  ].join('\n'), '/proj/examples/hello/baton.yaml');
  assert.equal(manifest.dir, '/proj/examples/hello');
  assert.deepEqual(manifest.spec, { name: 'hello', handler: 'index.handler', concurrency: 2, scaling: { maxScale: 5 }, env: { DEBUG: '1', MODE: 'fast' } });

  const withDir = parseManifest('name: a\ncommand: ./serve --port "$PORT"\ndir: ../src\n', '/proj/deploy/baton.yaml');
  assert.equal(withDir.dir, '/proj/src');
  assert.deepEqual(withDir.spec.command, ['./serve', '--port', '$PORT']);

  const overridden = applyDeployFlags(manifest, { command: 'node s.js', minScale: '1', env: ['MODE=slow'] }, '/elsewhere');
  assert.equal(overridden.dir, '/proj/examples/hello', 'the manifest dir stays unless --dir is given');
  assert.deepEqual(overridden.spec, {
    name: 'hello', command: ['node', 's.js'], concurrency: 2, scaling: { maxScale: 5, minScale: 1 }, env: { DEBUG: '1', MODE: 'slow' },
  });
});

test('a manifest with artifact, unknown fields or bad YAML is rejected', () => {
  specError(() => parseManifest(`name: a\nartifact: sha256:${'a'.repeat(64)}\n`, '/p/baton.yaml'), /artifact: is set by 'baton deploy'/);
  specError(() => parseManifest('name: a\nhandlr: index.handler\n', '/p/baton.yaml'), /handlr: unknown field .*allowed: name, runtime/);
  assert.throws(() => parseManifest('name: [a\n', '/p/baton.yaml'), (err: unknown) => err instanceof BatonError && /cannot parse/.test(err.message));
  assert.throws(() => parseManifest('- a\n', '/p/baton.yaml'), /must hold a mapping/);
});

test('validateDraft names the broken field', () => {
  specError(() => validateDraft({ name: 'hello' }), /handler: exactly one of handler or command/);
  specError(() => validateDraft({ name: 'Hello', handler: 'index.handler' }), /name: must match/);
  specError(() => validateDraft({ name: 'h', handler: 'index.handler', scaling: { minScale: 5, maxScale: 2 } }), /scaling\.minScale/);
});

test('command-line mistakes are usage errors', () => {
  assert.throws(() => parseCommandArgs(deployCommand, ['x', '--bogus']), /unknown flag '--bogus' for 'baton deploy' \(allowed: .*--dir/);
  assert.throws(() => parseCommandArgs(deployCommand, ['x', '--dir']), /flag '--dir' needs a value/);
  assert.throws(() => parseCommandArgs(deployCommand, ['x', '--json=yes']), /flag '--json' takes no value/);
  assert.throws(() => parseCommandArgs(deployCommand, ['x', 'y']), /unexpected argument 'y'/);
  const parsed = parseCommandArgs(deployCommand, ['x', '--env', 'A=1', '--env', 'B=2', '--json']);
  assert.deepEqual(parsed.values['env'], ['A=1', 'B=2']);
  assert.equal(parsed.values['json'], true);
});

test('bad flags exit with 2 and say what is wrong', async () => {
  const unknown = await runCli(['deploy', 'hello', '--dri', 'x']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /^error: unknown flag '--dri' for 'baton deploy'/);
  assert.match(unknown.stderr, /run 'baton deploy --help'/);
  const missing = await runCli(['invoke']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /'baton invoke' needs NAME/);
  const command = await runCli(['deplyo']);
  assert.equal(command.code, 2);
  assert.match(command.stderr, /unknown command 'deplyo'/);
  assert.equal((await runCli([])).code, 2);
  const help = await runCli(['list', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /usage: baton list/);
});

test('daemon commands reject unknown flags with a coded error naming the flag, before starting anything', async () => {
  const result = await runCli(['up', '--anything']);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /^error ERR_INVALID_CONFIG: unknown flag '--anything'/);
  const worker = await runCli(['worker', '--no-such-key', '1']);
  assert.equal(worker.code, 1);
  assert.match(worker.stderr, /^error ERR_INVALID_CONFIG: .*no-such-key/);
});

test('an invalid spec is rejected before any request is sent', async (t) => {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    res.writeHead(500).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const dir = mkdtempSync(join(tmpdir(), 'baton-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'index.js'), 'export const handler = () => 1;\n');

  const cases: [string[], RegExp][] = [
    [['deploy', 'Bad_Name', '--dir', dir, '--handler', 'index.handler'], /ERR_INVALID_SPEC: invalid function spec: name/],
    [['deploy', 'ok', '--dir', dir], /handler: exactly one of handler or command/],
    [['deploy', 'ok', '--dir', dir, '--handler', 'index.handler', '--command', 'node x.js'], /exactly one of handler or command/],
    [['deploy', 'ok', '--dir', dir, '--handler', 'index.handler', '--concurrency', '0'], /concurrency/],
    [['deploy', 'ok', '--dir', dir, '--handler', 'index.handler', '--env', 'PORT=1'], /env/],
    [['deploy', 'ok', '--dir', dir, '--command', 'node "x.js'], /unterminated/],
    [['deploy', 'ok', '--dir', join(dir, 'nope'), '--handler', 'index.handler'], /dir: .* is not a folder/],
  ];
  for (const [argv, pattern] of cases) {
    const result = await runCli([...argv, '--url', url]);
    assert.equal(result.code, 1, argv.join(' '));
    assert.match(result.stderr, pattern);
  }
  const noDir = await runCli(['deploy', 'ok', '--handler', 'index.handler', '--url', url]);
  assert.equal(noDir.code, 2);
  assert.match(noDir.stderr, /--dir is required/);
  assert.deepEqual(seen, [], 'nothing reached the control plane');
});

test('the log cursor prints each line once, in order', () => {
  const cursor = new LogCursor();
  const line = (ts: string, text: string) => ({ ts, sandboxId: 's1', stream: 'stdout' as const, line: text });
  assert.deepEqual(cursor.advance([line('2025-01-01T00:00:01Z', 'a'), line('2025-01-01T00:00:02Z', 'b')]).map((l) => l.line), ['a', 'b']);
  const next = [line('2025-01-01T00:00:01Z', 'a'), line('2025-01-01T00:00:02Z', 'b'), line('2025-01-01T00:00:02Z', 'c'), line('2025-01-01T00:00:03Z', 'd')];
  assert.deepEqual(cursor.advance(next).map((l) => l.line), ['c', 'd']);
  assert.deepEqual(cursor.advance(next), []);
});

test('tables align columns and right-align numbers', () => {
  assert.equal(formatTable(['NAME', 'GEN'], [['a', '1'], ['longer', '12']]), 'NAME    GEN\na         1\nlonger   12');
});

test('baton up: --runtime and --workers', () => {
  assert.deepEqual({ ...parseUpFlags([]), dataDir: '' }, { dataDir: '', offset: 0, logLevel: 'warn', runtime: 'process', workers: 1, controlPlanes: 1, dataPlanes: 1, store: 'file', isTls: false });
  const emulated = parseUpFlags(['--runtime', 'emulated', '--workers', '200']);
  assert.equal(emulated.runtime, 'emulated');
  assert.equal(emulated.workers, 200);
  for (const bad of [['--runtime', 'vm'], ['--workers', '0'], ['--workers', 'many'], ['--workers', '3'], ['--replicas', '2']]) {
    assert.throws(() => parseUpFlags(bad), (err: unknown) => err instanceof Error && 'code' in err && err.code === 'ERR_INVALID_CONFIG', bad.join(' '));
  }
});

test('baton up: --tls, bare (also in front of several data planes); refused with a value', () => {
  assert.equal(parseUpFlags(['--tls']).isTls, true);
  assert.equal(parseUpFlags(['--tls', '--port-offset', '10']).isTls, true);
  assert.equal(parseUpFlags(['--tls', '--data-planes', '2']).isTls, true);
  for (const bad of [['--tls', 'yes'], ['--tls', 'no']]) {
    assert.throws(() => parseUpFlags(bad), (err: unknown) => err instanceof Error && 'code' in err && err.code === 'ERR_INVALID_CONFIG', bad.join(' '));
  }
});

test('baton up: the HA shape — several control planes need the Redis store; each daemon gets ports of its own', () => {
  const ha = parseUpFlags(['--control-planes', '3', '--data-planes', '2', '--store', 'redis', '--port-offset', '100']);
  assert.deepEqual([ha.controlPlanes, ha.dataPlanes, ha.store], [3, 2, 'redis']);
  const ports = upPorts(ha);
  assert.deepEqual(ports.controlPlanes, [{ port: 9190, registrationPort: 9191 }, { port: 9200, registrationPort: 9201 }, { port: 9210, registrationPort: 9211 }]);
  assert.deepEqual(ports.dataPlanes, [{ port: 8180, internalPort: 8181 }, { port: 8190, internalPort: 8191 }]);
  const all = [...ports.controlPlanes.flatMap((p) => [p.port, p.registrationPort]), ...ports.dataPlanes.flatMap((p) => [p.port, p.internalPort]), ports.worker, ports.redis, ports.haproxy];
  assert.equal(new Set(all).size, all.length, 'no port twice');
  for (const bad of [['--control-planes', '3'], ['--control-planes', '3', '--store', 'file'], ['--control-planes', '0', '--store', 'redis'], ['--control-planes', '9', '--store', 'redis'], ['--data-planes', '0'], ['--store', 'etcd']]) {
    assert.throws(() => parseUpFlags(bad), (err: unknown) => err instanceof Error && 'code' in err && err.code === 'ERR_INVALID_CONFIG', bad.join(' '));
  }
});
