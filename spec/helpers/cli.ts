import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as path from 'node:path';

// dist/spec/helpers/cli.js -> dist/lib/cli/main.js: the built command, as `bin` installs it.
export const CLI_MAIN = path.resolve(__dirname, '..', '..', 'lib', 'cli', 'main.js');

/** How a finished `shmchannel` process ended and what it printed. */
export interface CliResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const GRACEFUL_STOP_MS = 3000;

/**
 * A running `node dist/lib/cli/main.js …`, with its output collected. Every one is stopped
 * by stopAllCli() in afterEach (SIGTERM, which a server answers by closing and unlinking
 * its segment; SIGKILL if it does not end in time).
 */
export class CliProcess {
  private static readonly live = new Set<CliProcess>();

  readonly child: ChildProcessWithoutNullStreams;
  stdout = '';
  stderr = '';
  /** Resolves when the process has exited and its output is complete. */
  readonly done: Promise<CliResult>;
  private readonly listeners = new Set<() => void>();

  constructor(args: string[], input?: string) {
    this.child = spawn(process.execPath, [CLI_MAIN, ...args], { stdio: 'pipe' });
    CliProcess.live.add(this);
    this.child.stdout.on('data', (chunk: Buffer) => this.append('stdout', chunk));
    this.child.stderr.on('data', (chunk: Buffer) => this.append('stderr', chunk));
    this.child.stdin.on('error', () => undefined);
    this.child.stdin.end(input);
    this.done = new Promise((resolve) => {
      this.child.once('close', (status, signal) => {
        CliProcess.live.delete(this);
        resolve({ status, signal, stdout: this.stdout, stderr: this.stderr });
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get isRunning(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves once `stream` matches `pattern`; rejects if the process ends first. */
  waitForOutput(stream: 'stdout' | 'stderr', pattern: RegExp): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const match = pattern.exec(this[stream]);
        if (match === null) return false;
        this.listeners.delete(check);
        resolve(match[0]);
        return true;
      };
      if (check()) return;
      this.listeners.add(check);
      void this.done.then((r) => {
        if (this.listeners.delete(check)) {
          reject(
            new Error(
              `shmchannel exited (${r.status ?? r.signal}) before ${stream} matched ${pattern}:\n${r.stdout}\n${r.stderr}`,
            ),
          );
        }
      });
    });
  }

  /** Sends `signal` and waits for the exit. */
  async kill(signal: NodeJS.Signals = 'SIGTERM'): Promise<CliResult> {
    if (this.isRunning) this.child.kill(signal);
    return this.done;
  }

  /** afterEach: end every CLI process still running. */
  static async stopAll(): Promise<void> {
    await Promise.all(
      [...CliProcess.live].map(async (p) => {
        const timer = setTimeout(() => p.child.kill('SIGKILL'), GRACEFUL_STOP_MS);
        await p.kill('SIGTERM');
        clearTimeout(timer);
      }),
    );
  }

  private append(stream: 'stdout' | 'stderr', chunk: Buffer): void {
    this[stream] += chunk.toString('utf8');
    for (const check of [...this.listeners]) check();
  }
}

/** Runs `shmchannel ...args` to its end. */
export function runCli(args: string[], input?: string): Promise<CliResult> {
  return new CliProcess(args, input).done;
}

/** Starts `shmchannel serve NAME ...extra` and waits until it serves. */
export async function startServe(name: string, extra: string[] = []): Promise<CliProcess> {
  const server = new CliProcess(['serve', name, ...extra]);
  await server.waitForOutput(
    extra.includes('--json') ? 'stdout' : 'stderr',
    extra.includes('--json') ? /"event":"ready"/ : /serving /,
  );
  return server;
}

/** The JSON objects of a JSON Lines output. */
export function jsonLines(text: string): unknown[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as unknown);
}
