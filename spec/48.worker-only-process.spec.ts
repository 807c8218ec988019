import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';

import { expect } from 'chai';

import { describeResult, type CommandResult } from './helpers/commands';
import { shmExists, uniqueName } from './helpers/names';
import { openChannel, releaseAll, unlinkLater } from './helpers/resources';
import type { WorkerOnlyEnding } from './helpers/worker-only-process';

const CHILD = path.join(__dirname, 'helpers', 'worker-only-process.js');
// Each ending is a race between the addon's own threads and its unloading, lost in some runs
// only: enough runs that a lost race shows, a few at a time to finish within the timeout.
// Under the sanitizer (npm run test:sanitize) a process starts several times slower, and what
// is looked for there, a memory error in the teardown, shows in fewer runs.
const SANITIZED = /asan/.test(process.env.LD_PRELOAD ?? '');
const RUNS = SANITIZED ? 8 : 24;
const PARALLEL = 3;
const RUN_TIMEOUT_MS = 20000;

interface ChildRun {
  /** True once the worker's channel is open, false if the process ended before. */
  opened: Promise<boolean>;
  ended: Promise<CommandResult>;
}

/** Starts helpers/worker-only-process.js: a worker of a fresh process opens `name`. */
function startChild(name: string, mode: 'server' | 'client', ending: WorkerOnlyEnding, maxClients?: number): ChildRun {
  const args = [CHILD, name, mode, ending, ...(maxClients === undefined ? [] : [String(maxClients)])];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let onOpen: (opened: boolean) => void = () => undefined;
  const opened = new Promise<boolean>((resolve) => (onOpen = resolve));
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    if (stdout.split('\n').includes('open')) onOpen(true);
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
  const ended = new Promise<CommandResult>((resolve, reject) => {
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      onOpen(false);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { opened, ended };
}

/**
 * What went wrong in one run, or undefined: the process must exit 0 (no signal) having said
 * all it should, and leave no segment in /dev/shm.
 */
function problemOf(run: number, name: string, result: CommandResult, expectedStdout: string): string | undefined {
  if (result.code !== 0 || result.signal !== null || result.stdout !== expectedStdout) {
    return describeResult(`run ${run}`, result);
  }
  if (shmExists(name)) {
    unlinkLater(name);
    return `run ${run}: ${name} was left in /dev/shm`;
  }
  return undefined;
}

/** Runs `once` `runs` times, PARALLEL at a time; returns the problems of the runs that had one. */
async function repeat(once: (run: number) => Promise<string | undefined>, runs = RUNS): Promise<string[]> {
  const problems: string[] = [];
  let next = 0;
  const lane = async () => {
    while (next < runs) {
      const problem = await once(next++);
      if (problem !== undefined) problems.push(problem);
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, lane));
  return problems;
}

function expectNoProblems(problems: string[], runs = RUNS): void {
  expect(problems, `${problems.length} of ${runs} runs failed:\n${problems.join('\n')}`).to.deep.equal([]);
}

// The addon's process-wide threads and handlers must not outlive the last environment that
// loaded it: when that is a worker, Node unloads the addon as the worker ends, and a thread
// of ours still running then crashes the process (SIGSEGV) some time later.
describe('A process in which only a worker thread loads the addon', function () {
  this.timeout(60000);

  // Two cores kept busy delay our threads' wake-ups past the unloading, which makes the
  // crash likely enough to see in a few dozen runs.
  let busyLoops: ChildProcess[] = [];

  beforeEach(function () {
    busyLoops = [0, 1].map(() => spawn('/bin/sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' }));
  });

  afterEach(async function () {
    for (const loop of busyLoops) loop.kill('SIGKILL');
    busyLoops = [];
    await releaseAll();
  });

  /** Every run: a server in the worker, ended as `ending` says. */
  const serverRuns = (ending: WorkerOnlyEnding, expectedStdout: string, runs = RUNS, maxClients?: number) =>
    repeat(async (run) => {
      const name = uniqueName(`worker-only-${ending}`);
      const result = await startChild(name, 'server', ending, maxClients).ended;
      return problemOf(run, name, result, expectedStdout);
    }, runs);

  it('should exit 0 after the main thread terminates the worker with its channel open', async function () {
    expectNoProblems(await serverRuns('terminate', 'open\ndone\n'));
  });

  it('should exit 0 after the worker closes its channel and ends by itself', async function () {
    expectNoProblems(await serverRuns('close', 'open\ndone\n'));
  });

  it("should exit 0 when the main thread calls process.exit(0) with the worker's channel open", async function () {
    expectNoProblems(await serverRuns('exit', 'open\n'));
  });

  it('should exit 0 after the main thread terminates a client worker whose server is in another process', async function () {
    const problems = await repeat(async (run) => {
      const name = uniqueName('worker-only-client');
      // The server in this process: another one than the client's all the same.
      const server = await openChannel(name, 'server');
      const result = await startChild(name, 'client', 'terminate').ended;
      await server.close();
      return problemOf(run, name, result, 'open\ndone\n');
    });
    expectNoProblems(problems);
  });

  it('should exit 0 after a client worker sees its server in another process leave, closes and ends', async function () {
    const problems = await repeat(async (run) => {
      const name = uniqueName('worker-only-server-gone');
      const server = await openChannel(name, 'server');
      const child = startChild(name, 'client', 'peer-lost');
      await child.opened;
      await server.close();
      return problemOf(run, name, await child.ended, 'open\ndone\n');
    });
    expectNoProblems(problems);
  });

  it('should start its thread and SIGBUS guard again for a worker that loads the addon after the last one ended', async function () {
    // The worker's first channel: the waker, its peer watch, and the process's segment watch
    // (the threads of a server of one client).
    const expectedStdout = [
      'open',
      'open',
      'while open: threads: shmch-segwatch,shmch-waker,shmch-watch; SIGBUS caught',
      'after: threads: none; SIGBUS as at start',
      'done',
      '',
    ].join('\n');
    const runs = 6;
    expectNoProblems(await serverRuns('reload', expectedStdout, runs, 1), runs);
  });
});
