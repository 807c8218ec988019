import { Buffer } from 'node:buffer';
import { spawn } from 'node:child_process';

import { Observable } from 'rxjs';

/** The error a caller of `serve --exec` sees (as ERR_REMOTE with this remote code). */
interface CommandFailure extends Error {
  code: 'ERR_EXEC_FAILED';
}

function failure(message: string): CommandFailure {
  return Object.assign(new Error(message), { code: 'ERR_EXEC_FAILED' as const });
}

/**
 * Runs `command` through /bin/sh with `input` on its stdin; emits its whole stdout once it
 * exits with status 0. A non-zero status fails with its stderr as the message.
 * Unsubscribing (the caller cancelled, or the server closes) kills the command with SIGTERM.
 * The command gets its own process group so that the kill reaches what the shell started
 * too (`sleep 5; echo done` is a shell with a child).
 */
export function runCommand(command: string, input: Buffer): Observable<Buffer> {
  return new Observable<Buffer>((subscriber) => {
    const child = spawn(command, { shell: true, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let exited = false;
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    // EPIPE when the command exits without reading its input (e.g. `date`): not an error.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
    child.on('error', (err) => {
      exited = true;
      subscriber.error(failure(`cannot run ${JSON.stringify(command)}: ${err.message}`));
    });
    child.on('close', (status, signal) => {
      exited = true;
      if (status === 0) {
        subscriber.next(Buffer.concat(stdout));
        subscriber.complete();
        return;
      }
      const message = Buffer.concat(stderr).toString('utf8').trim();
      const how = signal !== null ? `was killed by ${signal}` : `exited with status ${String(status)}`;
      subscriber.error(failure(message !== '' ? message : `${JSON.stringify(command)} ${how}`));
    });
    return () => {
      if (exited || child.pid === undefined) return;
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        // It exited meanwhile.
      }
    };
  });
}
