import { parseArgs, type ParseArgsConfig } from 'node:util';

import { validateName } from '../names';

/** Exit statuses of every command (docs/CLI.md, `shmchannel --help`). */
export const ExitCode = {
  OK: 0,
  /** The command ran and failed: the error's `code` says why. */
  FAILURE: 1,
  /** Bad arguments: unknown command or option, missing or extra operands, bad values. */
  USAGE: 2,
  /** Stopped by SIGINT/SIGTERM before it finished (request, notify, bench). */
  INTERRUPTED: 130,
} as const;

export type OptionSpecs = NonNullable<ParseArgsConfig['options']>;
export type OptionValues = Record<string, string | boolean | undefined>;

/** What a command receives once its arguments have parsed. */
export interface Invocation {
  command: string;
  positionals: string[];
  values: OptionValues;
  /** --json: machine-readable stdout, errors as JSON on stderr. */
  json: boolean;
}

/** One subcommand: its help text, its options and what it does; returns the exit status. */
export interface Command {
  name: string;
  /** One line for `shmchannel --help`. */
  summary: string;
  /** The full `shmchannel <cmd> --help` text, from "Usage:" on. */
  help: string;
  options: OptionSpecs;
  /** How many operands it takes, and what they are called in messages (e.g. NAME, DATA). */
  operands: { min: number; max: number; names: string[] };
  run(invocation: Invocation): Promise<number>;
}

/** Bad command-line input: printed with the usage hint, exit status 2. */
export class UsageError extends Error {
  readonly code = 'ERR_USAGE';
}

/** Options every command accepts. */
const COMMON_OPTIONS: OptionSpecs = {
  help: { type: 'boolean', short: 'h' },
  json: { type: 'boolean' },
};

export const COMMON_HELP = `  -h, --help            show this help
      --json            machine-readable output on stdout (errors as JSON on stderr)`;

/** True if --help/-h appears before any `--` (so it wins over every other mistake). */
export function wantsHelp(args: readonly string[]): boolean {
  for (const arg of args) {
    if (arg === '--') return false;
    if (arg === '--help' || arg === '-h') return true;
  }
  return false;
}

/** Parses a command's arguments strictly; every mistake is a UsageError. */
export function parseInvocation(command: Command, args: string[]): Invocation {
  let parsed: { values: OptionValues; positionals: string[] };
  try {
    parsed = parseArgs({
      args,
      options: { ...COMMON_OPTIONS, ...command.options },
      allowPositionals: true,
      strict: true,
    }) as { values: OptionValues; positionals: string[] };
  } catch (err) {
    // parseArgs says e.g. "Unknown option '--x'. To specify a positional argument starting
    // with a '-', place it at the end of the command after '--'": keep its first sentence.
    throw new UsageError((err as Error).message.replace(/\. To specify.*$/s, ''));
  }
  const { positionals } = parsed;
  const { min, max, names } = command.operands;
  if (positionals.length < min) throw new UsageError(`missing ${names[positionals.length] ?? 'operand'}`);
  if (positionals.length > max) {
    const expected = max === 0 ? 'it takes none' : `it takes ${names.slice(0, max).join(' ')}`;
    throw new UsageError(`unexpected operand ${JSON.stringify(positionals[max])} (${expected})`);
  }
  return { command: command.name, positionals, values: parsed.values, json: parsed.values.json === true };
}

/** A channel name as POSIX wants it: `demo` and `/demo` both mean `/demo`. */
export function channelName(operand: string): string {
  const name = operand.startsWith('/') ? operand : `/${operand}`;
  try {
    validateName(name);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return name;
}

/** An option that must be a whole number ≥ min, or undefined when absent. */
export function integerOption(values: OptionValues, option: string, min: number): number | undefined {
  const raw = values[option];
  if (raw === undefined || typeof raw === 'boolean') return undefined;
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isSafeInteger(n) || n < min) {
    throw new UsageError(`--${option} must be a whole number ≥ ${min}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

/** An option that must be a number > 0 (fractions allowed), or undefined when absent. */
export function positiveNumberOption(values: OptionValues, option: string): number | undefined {
  const raw = values[option];
  if (raw === undefined || typeof raw === 'boolean') return undefined;
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n) || n <= 0) {
    throw new UsageError(`--${option} must be a number > 0, got ${JSON.stringify(raw)}`);
  }
  return n;
}

/** A string option, or undefined when absent. */
export function stringOption(values: OptionValues, option: string): string | undefined {
  const raw = values[option];
  return typeof raw === 'string' ? raw : undefined;
}
