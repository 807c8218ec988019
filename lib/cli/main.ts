#!/usr/bin/env node
// The `shmchannel` command: see docs/CLI.md, or `shmchannel --help`.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';

import { bench } from './bench';
import { ExitCode, parseInvocation, UsageError, wantsHelp, type Command, type Invocation } from './command';
import { listen } from './listen';
import { ls } from './ls';
import { notify } from './notify';
import { reportError } from './output';
import { request } from './request';
import { rm } from './rm';
import { serve } from './serve';

const COMMANDS: readonly Command[] = [serve, request, notify, listen, ls, rm, bench];

const EXIT_STATUS_HELP = `Exit status:
  0    success
  1    the command failed; the error is printed as 'shmchannel <cmd>: <message> (<code>)'
       (with --json: {"error":{"code","message",…}} on stderr)
  2    usage error: unknown command or option, missing or extra operands, bad value
  130  interrupted by SIGINT/SIGTERM before it finished (request, notify, bench)`;

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  const lines = COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return `Usage: shmchannel <command> [options]

Shared-memory IPC channels between local processes, from the shell.
A channel NAME is a POSIX shared-memory name: 'demo' and '/demo' both mean /dev/shm/demo.

Commands:
${lines.join('\n')}

Options:
  -h, --help     show help ('shmchannel <command> --help' for a command)
  -V, --version  show the version

${EXIT_STATUS_HELP}`;
}

function commandHelp(command: Command): string {
  return `${command.help}\n\n${EXIT_STATUS_HELP}`;
}

function version(): string {
  // dist/lib/cli/main.js -> the package root.
  const file = path.resolve(__dirname, '..', '..', '..', 'package.json');
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
}

export async function main(args: string[]): Promise<number> {
  const [first, ...rest] = args;
  if (first === undefined) {
    process.stderr.write(`${mainHelp()}\n`);
    return ExitCode.USAGE;
  }
  if (first === '--help' || first === '-h' || first === 'help') {
    const about = COMMANDS.find((c) => c.name === rest[0]);
    process.stdout.write(`${about === undefined ? mainHelp() : commandHelp(about)}\n`);
    return ExitCode.OK;
  }
  if (first === '--version' || first === '-V') {
    process.stdout.write(`${version()}\n`);
    return ExitCode.OK;
  }
  const command = COMMANDS.find((c) => c.name === first);
  const json = rest.includes('--json');
  if (command === undefined) {
    const what = first.startsWith('-')
      ? `unknown option ${JSON.stringify(first)}`
      : `unknown command ${JSON.stringify(first)}`;
    return reportError('', json, new UsageError(`${what}; commands: ${COMMANDS.map((c) => c.name).join(', ')}`));
  }
  if (wantsHelp(rest)) {
    process.stdout.write(`${commandHelp(command)}\n`);
    return ExitCode.OK;
  }
  let invocation: Invocation;
  try {
    invocation = parseInvocation(command, rest);
  } catch (err) {
    return reportError(command.name, json, err);
  }
  try {
    return await command.run(invocation);
  } catch (err) {
    return reportError(command.name, invocation.json, err);
  }
}

if (require.main === module) {
  // A reader that goes away (`shmchannel listen x | head -1`) is a normal end, not a crash.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(ExitCode.OK);
    throw err;
  });
  void main(process.argv.slice(2)).then(exitWhenWritten);
}

/**
 * Exits once stdout and stderr have taken everything written: a large write to a pipe
 * whose reader is slower is partly queued, and process.exit() would cut it off. Exiting
 * explicitly also ends what an interrupted command left behind (a read of stdin, a timer).
 */
function exitWhenWritten(status: number): void {
  let pending = 2;
  const done = (): void => {
    pending -= 1;
    if (pending === 0) process.exit(status);
  };
  process.stdout.write('', done);
  process.stderr.write('', done);
}
