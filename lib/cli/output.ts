import { isShmChannelError } from '../errors';
import { ExitCode, UsageError } from './command';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** One line on stdout. */
export function printLine(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** One JSON object as one line on stdout (JSON Lines, for streams). */
export function printJson(value: object): void {
  printLine(JSON.stringify(value));
}

/** A status line for people, on stderr, so stdout carries only data. */
export function printStatus(command: string, line: string): void {
  process.stderr.write(`shmchannel ${command}: ${line}\n`);
}

/**
 * A message as text: its bytes as they are, then a newline unless it already ends with one,
 * so `echo`-like output and `date`-like output (which ends in a newline) both read well.
 */
export function printData(data: Buffer): void {
  process.stdout.write(data);
  if (data.length === 0 || data[data.length - 1] !== 0x0a) process.stdout.write('\n');
}

/** A message in JSON: `data` when it is valid UTF-8, otherwise `dataBase64`, never lossy. */
export function dataFields(data: Buffer): { data: string } | { dataBase64: string } {
  try {
    return { data: utf8.decode(data) };
  } catch {
    return { dataBase64: data.toString('base64') };
  }
}

/** A message as one line of text, for logs such as serve's (control characters escaped). */
export function dataPreview(data: Buffer, max = 200): string {
  const fields = dataFields(data);
  if ('dataBase64' in fields) return `<${data.length} bytes of binary data>`;
  const text = JSON.stringify(fields.data.length > max ? `${fields.data.slice(0, max)}…` : fields.data);
  return text;
}

/** What every error looks like to a script: the lib's code and the details it carries. */
export interface ErrorReport {
  code: string;
  message: string;
  errno?: string;
  ownerPid?: number;
  remoteCode?: string;
}

export function errorReport(err: unknown): ErrorReport {
  if (isShmChannelError(err)) {
    const report: ErrorReport = { code: err.code, message: err.message };
    if (err.errno !== undefined) report.errno = err.errno;
    if (err.ownerPid !== undefined) report.ownerPid = err.ownerPid;
    if (err.remoteCode !== undefined) report.remoteCode = err.remoteCode;
    return report;
  }
  const e = err as { code?: unknown; message?: unknown } | null | undefined;
  const code = typeof e?.code === 'string' ? e.code : 'ERR_INTERNAL';
  const message = typeof e?.message === 'string' ? e.message : String(err);
  return { code, message };
}

/**
 * Prints `err` on stderr as `shmchannel <cmd>: <message> (<code>)`, or as
 * `{"error":{code,message,…}}` with --json, and returns the exit status it stands for.
 * Only an error without a code (a bug) gets its stack printed.
 */
export function reportError(command: string, json: boolean, err: unknown): number {
  const report = errorReport(err);
  const status = err instanceof UsageError ? ExitCode.USAGE : ExitCode.FAILURE;
  if (json) {
    process.stderr.write(`${JSON.stringify({ error: report })}\n`);
  } else {
    const where = command === '' ? 'shmchannel' : `shmchannel ${command}`;
    const details = [report.code];
    if (report.errno !== undefined) details.push(report.errno);
    if (report.remoteCode !== undefined) details.push(`remote ${report.remoteCode}`);
    if (report.ownerPid !== undefined && !report.message.includes(String(report.ownerPid))) {
      details.push(`owner pid ${report.ownerPid}`);
    }
    process.stderr.write(`${where}: ${report.message} (${details.join(', ')})\n`);
    if (err instanceof UsageError) {
      process.stderr.write(`Run 'shmchannel ${command === '' ? '' : `${command} `}--help' for usage.\n`);
    } else if (report.code === 'ERR_INTERNAL' && err instanceof Error && err.stack !== undefined) {
      process.stderr.write(`${err.stack}\n`);
    }
  }
  return status;
}
