#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { COMMON_USAGE, createContext, parseCommandArgs, reportError, UsageError, type CliIo, type Command } from './command.ts';
import { deleteCommand } from './commands/delete.ts';
import { deployCommand } from './commands/deploy.ts';
import { describeCommand } from './commands/describe.ts';
import { dlqCommand } from './commands/dlq.ts';
import { invocationsCommand } from './commands/invocations.ts';
import { haproxyConfigCommand } from './commands/haproxy-config.ts';
import { invokeCommand } from './commands/invoke.ts';
import { listCommand } from './commands/list.ts';
import { loadgenAnalyzeCommand, loadgenPlanCommand, loadgenSynthCommand } from './commands/loadgen.ts';
import { loadgenRunCommand } from './commands/loadgen-run.ts';
import { logsCommand } from './commands/logs.ts';
import { statusCommand } from './commands/status.ts';
import { imageCommand } from './commands/image.ts';
import { auditCommand } from './commands/audit.ts';
import { tokenCommand } from './commands/token.ts';
import { quotaCommand } from './commands/quota.ts';
import { certsCommand } from './commands/certs.ts';

/**
 * The `baton` entry point. Client commands talk to a running cluster; daemon commands start one
 * (their module is loaded only when asked for). Exit codes: 0 ok, 1 failure, 2 bad command line.
 */

const COMMANDS: ReadonlyMap<string, Command> = new Map([
  deployCommand, invokeCommand, listCommand, describeCommand, deleteCommand, logsCommand, statusCommand, invocationsCommand, dlqCommand, imageCommand, haproxyConfigCommand,
  tokenCommand, quotaCommand, auditCommand, certsCommand,
].map((c) => [c.name, c]));

/** `baton loadgen SUB`: each subcommand is a Command named `loadgen SUB`. */
const LOADGEN_COMMANDS: ReadonlyMap<string, Command> = new Map([
  loadgenSynthCommand, loadgenPlanCommand, loadgenRunCommand, loadgenAnalyzeCommand,
].map((c) => [c.name.slice('loadgen '.length), c]));

const DAEMON_COMMANDS: ReadonlyMap<string, string> = new Map([
  ['up', 'start a control plane, a data plane and a worker on this machine'],
  ['controlplane', 'run the control-plane daemon'],
  ['dataplane', 'run the data-plane daemon'],
  ['worker', 'run the worker daemon'],
]);

export function isDaemonCommand(name: string | undefined): boolean {
  return name !== undefined && DAEMON_COMMANDS.has(name);
}

const PROCESS_IO: CliIo = { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd() };

/** Runs one `baton` command line (without `node` and the script) and resolves with its exit code. */
export async function main(argv: string[], io: CliIo = PROCESS_IO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    io.stderr.write(globalHelp());
    return 2;
  }
  if (name === 'help' || name === '--help' || name === '-h') return printHelp(io, rest[0]);
  if (isDaemonCommand(name)) return runDaemon(io, name, rest);
  let command = COMMANDS.get(name);
  let args = rest;
  if (name === 'loadgen') {
    const [sub, ...subArgs] = rest;
    command = sub === undefined ? undefined : LOADGEN_COMMANDS.get(sub);
    if (sub === undefined || sub === '--help' || sub === '-h') {
      (sub === undefined ? io.stderr : io.stdout).write(loadgenHelp());
      return sub === undefined ? 2 : 0;
    }
    if (command === undefined) return reportError(io, new UsageError(`unknown command 'loadgen ${sub}' (loadgen commands: ${[...LOADGEN_COMMANDS.keys()].join(', ')})`));
    args = subArgs;
  }
  if (command === undefined) {
    return reportError(io, new UsageError(`unknown command '${name}' (commands: ${[...COMMANDS.keys(), 'loadgen', ...DAEMON_COMMANDS.keys()].join(', ')})`));
  }
  let parsed;
  try {
    parsed = parseCommandArgs(command, args);
  } catch (err) {
    return reportError(io, err, command.name);
  }
  if (parsed.values['help'] === true) {
    io.stdout.write(commandHelp(command));
    return 0;
  }
  const { ctx, dispose } = createContext(io, parsed);
  try {
    return await command.run(ctx);
  } catch (err) {
    return reportError(io, err, command.name);
  } finally {
    await dispose();
  }
}

async function runDaemon(io: CliIo, name: string, argv: string[]): Promise<number> {
  try {
    const { runDaemonCommand } = await import('./daemons.ts');
    return await runDaemonCommand(name, argv);
  } catch (err) {
    return reportError(io, err);
  }
}

function printHelp(io: CliIo, topic: string | undefined): number {
  if (topic === undefined) {
    io.stdout.write(globalHelp());
    return 0;
  }
  if (topic === 'loadgen') {
    io.stdout.write(loadgenHelp());
    return 0;
  }
  const command = COMMANDS.get(topic);
  if (command === undefined) {
    if (isDaemonCommand(topic)) {
      io.stdout.write(`usage: baton ${topic} --help\n`);
      return 0;
    }
    return reportError(io, new UsageError(`unknown command '${topic}'`));
  }
  io.stdout.write(commandHelp(command));
  return 0;
}

function globalHelp(): string {
  const width = Math.max(...[...COMMANDS.keys(), ...DAEMON_COMMANDS.keys()].map((n) => n.length));
  const line = (n: string, summary: string) => `  ${n.padEnd(width)}  ${summary}`;
  return [
    'usage: baton COMMAND [flags]',
    '',
    'functions:',
    ...[...COMMANDS.values()].map((c) => line(c.name, c.summary)),
    line('loadgen', 'replay a trace or a fixed rate and analyze the results (synth, plan, run, analyze)'),
    '',
    'daemons:',
    ...[...DAEMON_COMMANDS].map(([n, s]) => line(n, s)),
    '',
    COMMON_USAGE,
    '',
    "run 'baton COMMAND --help' for a command's flags",
    '',
  ].join('\n');
}

function loadgenHelp(): string {
  const width = Math.max(...[...LOADGEN_COMMANDS.keys()].map((n) => n.length));
  return [
    'usage: baton loadgen COMMAND [flags]',
    '',
    ...[...LOADGEN_COMMANDS].map(([n, c]) => `  ${n.padEnd(width)}  ${c.summary}`),
    '',
    "run 'baton loadgen COMMAND --help' for a command's flags",
    '',
  ].join('\n');
}

function commandHelp(command: Command): string {
  return `${command.summary}\n\nusage: ${command.usage}\n\n${COMMON_USAGE}\n`;
}

function isEntry(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(script)).href;
  } catch {
    return false;
  }
}

if (isEntry()) {
  const argv = process.argv.slice(2);
  let io = PROCESS_IO;
  if (!isDaemonCommand(argv[0])) {
    // First Ctrl-C stops `logs --follow` cleanly; a second one exits at once.
    const controller = new AbortController();
    process.once('SIGINT', () => {
      controller.abort();
      process.once('SIGINT', () => process.exit(130));
    });
    io = { ...PROCESS_IO, signal: controller.signal };
  }
  main(argv, io).then((code) => process.exit(code), (err: unknown) => {
    process.stderr.write(`error ERR_INTERNAL: ${String(err)}\n`);
    process.exit(1);
  });
}
