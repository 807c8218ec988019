// Run by spec/48.worker-only-process.spec.ts: a process whose main thread never loads the
// addon; a worker thread (worker-only-thread.ts) opens a channel end, and the process ends as
// <ending> says:
//   node worker-only-process.js <name> <server|client> <ending>
//   terminate  the main thread terminates the worker, its channel open
//   close      the worker closes its channel and ends by itself
//   exit       the main thread calls process.exit(0), the worker's channel open
//   peer-lost  the worker waits for its peer to leave, then closes and ends by itself
//   reload     as terminate; then a second worker opens the channel again, and the main thread
//              prints the addon's threads and SIGBUS handling while it is open and after it
//              closed and ended
// Prints 'open' once a worker's channel is open, then 'done' once the main thread is through
// (not after process.exit). Any error: a line 'failed: ...' and exit code 1.
import { readdirSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';

// Types only: nothing of the library is loaded on this thread.
import type { Mode } from '../../lib/index';

export type WorkerOnlyEnding = 'terminate' | 'close' | 'exit' | 'peer-lost' | 'reload';

/** What a worker is told: an ending, or to close once the main thread says 'close'. */
export interface WorkerOnlyJob {
  name: string;
  mode: Mode;
  ending: Exclude<WorkerOnlyEnding, 'reload'> | 'close-when-told';
  /** A server's maxClients; the default when undefined. */
  maxClients?: number;
}

const THREAD_SCRIPT = path.join(__dirname, 'worker-only-thread.js');
// How long the main thread lives on once the worker is gone: the time a native thread left
// behind by the unloaded addon has to run into its unmapped code and crash the process.
const LINGER_MS = 200;
// A waker, its peer watch and the segment watch.
const THREADS_OF_ONE_CHANNEL = 3;

function fail(err: unknown): void {
  console.log(`failed: ${String(err)}`);
  process.exitCode = 1;
}

/** The names of the addon's native threads in this process. */
function nativeThreads(): string[] {
  return readdirSync('/proc/self/task')
    .map((task) => readFileSync(`/proc/self/task/${task}/comm`, 'utf8').trim())
    .filter((comm) => comm.startsWith('shmch-'))
    .sort();
}

/** Whether a handler catches SIGBUS in this process (ours, or a sanitizer's from the start). */
function sigbusCaught(): boolean {
  const caught = /SigCgt:\s*([0-9a-f]+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0';
  const sigbusBit = BigInt(constants.signals.SIGBUS - 1);
  return ((BigInt(`0x${caught}`) >> sigbusBit) & 1n) === 1n;
}

const sigbusCaughtAtStart = sigbusCaught();

function threadsLine(): string {
  return `threads: ${nativeThreads().join(',') || 'none'}`;
}

/** threadsLine() once the threads of the worker's channel have started and named themselves. */
async function threadsOfOneChannel(): Promise<string> {
  for (let look = 0; look < 100 && nativeThreads().length < THREADS_OF_ONE_CHANNEL; look++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return threadsLine();
}

function runWorker(job: WorkerOnlyJob, then: () => void): void {
  const worker = new Worker(THREAD_SCRIPT, { workerData: job });
  worker.on('error', fail);
  worker.on('message', (message: unknown) => {
    if (message !== 'open') return;
    console.log('open');
    if (job.ending === 'terminate') worker.terminate().catch(fail);
    if (job.ending === 'exit') process.exit(0);
    if (job.ending === 'close-when-told') {
      void threadsOfOneChannel().then((threads) => {
        console.log(`while open: ${threads}; SIGBUS ${sigbusCaught() ? 'caught' : 'not caught'}`);
        worker.postMessage('close');
      });
    }
  });
  worker.on('exit', (code) => {
    if (job.ending !== 'terminate' && code !== 0) fail(`the worker exited with code ${code}`);
    then();
  });
}

function main(name: string, mode: Mode, ending: WorkerOnlyEnding, maxClients: number | undefined): void {
  const done = () => setTimeout(() => console.log('done'), LINGER_MS);
  if (ending !== 'reload') {
    runWorker({ name, mode, ending, maxClients }, done);
    return;
  }
  runWorker({ name, mode, ending: 'terminate', maxClients }, () =>
    runWorker({ name, mode, ending: 'close-when-told', maxClients }, () => {
      console.log(
        `after: ${threadsLine()}; SIGBUS ${sigbusCaught() === sigbusCaughtAtStart ? 'as at start' : 'changed'}`,
      );
      done();
    }),
  );
}

const [name, mode, ending, maxClients] = process.argv.slice(2);
main(name, mode as Mode, ending as WorkerOnlyEnding, maxClients === undefined ? undefined : Number(maxClients));
