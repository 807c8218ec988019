/**
 * `npm run demo`: the two sides of examples/channel.ts as two processes, in one terminal.
 * Their output is prefixed with [server] / [client]; the demo fails if either side fails or
 * if the channel's segment outlives them.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import { isShmChannelError, SharedMemory } from '../lib/index';

const TIME_LIMIT_MS = 20_000;
const script = join(__dirname, 'channel.js');
// A name of our own, so that the demo never meets a server started by hand.
const name = `/shmchannel-demo-${process.pid}`;

const children: ChildProcess[] = [];
let interrupted = false;

/** Starts one side of channel.js; resolves with its exit status once its output is flushed. */
function start(mode: 'server' | 'client', message: string): Promise<string | number> {
  const child = fork(script, [mode, message, name], { silent: true });
  children.push(child);
  for (const stream of [child.stdout, child.stderr]) {
    if (stream !== null) createInterface({ input: stream }).on('line', (line) => console.log(`[${mode}] ${line}`));
  }
  // 'close' comes after 'exit' and after the child's stdout and stderr have ended.
  return new Promise((resolve) => child.on('close', (code, signal) => resolve(signal ?? code ?? 1)));
}

function stopChildren(why: string): void {
  const running = children.filter((child) => child.exitCode === null && child.signalCode === null);
  if (running.length === 0) return;
  console.error(`demo: ${why}: stopping ${running.length} process(es)`);
  // SIGTERM lets channel.js close its channel (and the server unlink its segment).
  for (const child of running) child.kill('SIGTERM');
  setTimeout(() => running.forEach((child) => child.kill('SIGKILL')), 2000).unref();
}

/** True if the segment was still there (and is now gone). */
function removeLeftoverSegment(): boolean {
  try {
    SharedMemory.unlink(name);
    return true;
  } catch (err) {
    if (isShmChannelError(err, 'ERR_SHM_CLOSE_FAILED') && err.errno === 'ENOENT') return false;
    throw err;
  }
}

async function main(): Promise<void> {
  const timer = setTimeout(() => stopChildren(`no result after ${TIME_LIMIT_MS / 1000} s`), TIME_LIMIT_MS);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      interrupted = true;
      stopChildren(signal);
    });
  }

  // Server first; the client waits for the server by itself (connectTimeout).
  const server = start('server', 'Message from server.');
  const client = start('client', 'Message from client.');
  const [serverStatus, clientStatus] = await Promise.all([server, client]);
  clearTimeout(timer);

  let ok = true;
  for (const [side, status] of [
    ['server', serverStatus],
    ['client', clientStatus],
  ] as const) {
    if (status !== 0) {
      console.error(`demo: the ${side} failed (${typeof status === 'number' ? `exit code ${status}` : status})`);
      ok = false;
    }
  }
  if (removeLeftoverSegment()) {
    console.error(`demo: ${name} was left in /dev/shm; removed it`);
    ok = false;
  }
  console.log(ok ? 'demo: done' : 'demo: FAILED');
  process.exitCode = ok ? 0 : interrupted ? 130 : 1;
}

main().catch((err: unknown) => {
  console.error('demo:', err);
  stopChildren('error');
  process.exitCode = 1;
});
