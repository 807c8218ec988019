import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { expect } from 'chai';
import { lastValueFrom, type Subscription } from 'rxjs';

import { SharedMemory, isShmChannelError, type IncomingRequest } from '../lib/index';
import { describeResult, runCommand, type CommandResult } from './helpers/commands';
import { fnv1a, has, peerPattern, plainEnv } from './helpers/foreign-peers';
import { shmExists, uniqueName } from './helpers/names';
import { openChannel, releaseAll } from './helpers/resources';

// Node, C and Python peers against each other across real processes and real /dev/shm
// segments: C <-> Python both ways, every runtime's server taking a second client of another
// runtime, cancellation reaching a handler of another runtime, and a peer SIGKILLed
// mid-request on either side of every pairing. The three peers (spec/helpers/cross-peer.c,
// cross-peer.py, cross-peer-node.ts) share one command line and print the same lines, so each
// test runs any pairing the same way. The C library is built as `npm run build:c` builds it,
// into a temporary OUT. Skipped where there is no python3, C compiler or make.

const repoRoot = path.resolve(__dirname, '..', '..');
const COMMAND_TIMEOUT_MS = 3 * 60 * 1000;
const RUN_TIMEOUT_MS = 90_000;
const RING = '4096';
// Larger than the 4 KiB ring many times over (fragments of at most 1008 bytes).
const BIG = 100_000;

type Runtime = 'node' | 'python' | 'c';
const RUNTIMES: Runtime[] = ['node', 'python', 'c'];

/** How a peer of `runtime` reports that its peer left with a request in flight. */
function lost(runtime: Runtime): string {
  return runtime === 'c' ? 'peer-left' : 'ERR_PEER_LOST';
}

/** What `cross-peer client NAME size` prints when the exchange went through. */
function exchangeLines(runtime: Runtime, size: number): string[] {
  const reversed = peerPattern(size).reverse();
  const error = 'E_CROSS|refused "as asked" ✓';
  return [
    `reply ${size} ${fnv1a(reversed)}`,
    'stream part 0|part 1|part 2',
    runtime === 'c' ? `error ${error}` : `error ERR_REMOTE ${error}`,
    `note ${size} ${fnv1a(reversed)}`,
  ];
}

/** A peer program running in the background, its output collected. */
class Background {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<CommandResult>;

  constructor(command: string, args: string[], env: NodeJS.ProcessEnv) {
    this.child = spawn(command, args, { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (this.stdout += chunk));
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
    const timer = setTimeout(() => this.child.kill('SIGKILL'), RUN_TIMEOUT_MS);
    this.exited = new Promise((resolve) => {
      this.child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stdout: this.stdout, stderr: this.stderr });
      });
    });
  }

  get lines(): string[] {
    return this.stdout.split('\n');
  }

  /** The first line of stdout that matches, once there is one; rejects if the program ends first. */
  async line(pattern: RegExp): Promise<RegExpMatchArray> {
    const ended = this.exited.then((r) => {
      throw new Error(describeResult(`ended before ${String(pattern)}`, r));
    });
    for (;;) {
      for (const line of this.lines) {
        const match = line.match(pattern);
        if (match) return match;
      }
      await Promise.race([new Promise((resolve) => setTimeout(resolve, 20)), ended]);
    }
  }

  /** SIGKILLs it and waits for its end. */
  async kill(): Promise<CommandResult> {
    this.child.kill('SIGKILL');
    const result = await this.exited;
    expect(result.signal, describeResult('killed peer', result)).to.equal('SIGKILL');
    return result;
  }
}

describe('Node, C and Python peers across processes (cross-runtime)', function () {
  this.timeout(COMMAND_TIMEOUT_MS);
  let work: string;
  let cPeer: string;
  let env: NodeJS.ProcessEnv;
  const pyPeer = path.join(repoRoot, 'spec', 'helpers', 'cross-peer.py');
  const nodePeer = path.join(__dirname, 'helpers', 'cross-peer-node.js');
  const running: Background[] = [];
  const segments: string[] = [];

  /** Starts `cross-peer args...` of `runtime`. */
  function peer(runtime: Runtime, args: string[]): Background {
    const program =
      runtime === 'node'
        ? new Background(process.execPath, [nodePeer, ...args], { ...process.env, ...env })
        : runtime === 'python'
          ? new Background('python3', [pyPeer, ...args], env)
          : new Background(cPeer, args, env);
    running.push(program);
    return program;
  }

  /** A segment name for this test, removed after it if a killed server left it. */
  function segment(label: string): string {
    const name = uniqueName(label);
    segments.push(name);
    return name;
  }

  /** Starts a server of `runtime` for `clients` clients, and waits until it is ready. */
  async function server(runtime: Runtime, name: string, clients: number): Promise<Background> {
    const program = peer(runtime, ['server', name, RING, String(clients)]);
    await program.line(/^ready$/);
    return program;
  }

  /** Runs a client of `runtime` through the whole exchange and checks what it printed. */
  async function exchange(runtime: Runtime, name: string, size: number): Promise<void> {
    const result = await peer(runtime, ['client', name, String(size)]).exited;
    expect(result.code, describeResult(`${runtime} client`, result)).to.equal(0);
    expect(result.stdout.split('\n'), describeResult(`${runtime} client`, result)).to.include.members(
      exchangeLines(runtime, size),
    );
  }

  /** Waits for a server's end and checks it served `clients` clients and removed its segment. */
  async function served(program: Background, runtime: Runtime, name: string, clients: number): Promise<CommandResult> {
    const result = await program.exited;
    const what = describeResult(`${runtime} server`, result);
    expect(result.code, what).to.equal(0);
    expect(result.stdout.match(/^hello$/gm), what).to.have.length(clients);
    expect(result.stdout.match(/^bye$/gm), what).to.have.length(clients);
    expect(shmExists(name), `the ${runtime} server removed ${name}`).to.equal(false);
    return result;
  }

  before(async function () {
    if (!has('python3') || !has('cc') || !has('make')) {
      this.skip();
      return;
    }
    work = mkdtempSync(path.join(tmpdir(), 'shmch-cross-'));
    env = plainEnv();
    const out = path.join(work, 'build');
    const made = await runCommand('make', ['-C', 'native', `OUT=${out}`], {
      cwd: repoRoot,
      env,
      timeoutMs: COMMAND_TIMEOUT_MS,
    });
    expect(made.code, describeResult('make', made)).to.equal(0);
    env.SHMCHANNEL_LIB = path.join(out, 'libshmchannel.so');
    env.PYTHONPATH = path.join(repoRoot, 'python');
    cPeer = path.join(work, 'cross-peer');
    const source = path.join(repoRoot, 'spec', 'helpers', 'cross-peer.c');
    const flags = ['-std=c99', '-Wall', '-Wextra', '-Werror', `-I${path.join(repoRoot, 'native', 'core')}`];
    const libs = [path.join(out, 'libshmchannel.a'), '-lstdc++', '-lm', '-lrt', '-lpthread'];
    const built = await runCommand('cc', [...flags, source, '-o', cPeer, ...libs], { cwd: work, env });
    expect(built.code, describeResult('cc cross-peer.c', built)).to.equal(0);
  });

  after(function () {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  afterEach(async function () {
    for (const program of running.splice(0)) {
      if (program.child.exitCode === null && program.child.signalCode === null) program.child.kill('SIGKILL');
      await program.exited;
    }
    await releaseAll();
    // A SIGKILLed server cannot remove its segment (nor can one killed because a test failed).
    for (const name of segments.splice(0)) if (shmExists(name)) SharedMemory.unlink(name);
  });

  describe('requests, streams, notifications both ways, messages larger than the ring, remote errors; a second client', function () {
    const plans: [Runtime, Runtime[]][] = [
      ['c', ['python', 'node']],
      ['python', ['c', 'node', 'node']],
      ['node', ['python', 'python']],
    ];
    for (const [serverRuntime, clients] of plans) {
      it(`should let a ${serverRuntime} server serve a ${clients.join(' client, then a ')} client`, async function () {
        const name = segment(`cross-${serverRuntime}`);
        const program = await server(serverRuntime, name, clients.length);
        for (const client of clients) await exchange(client, name, BIG);
        const result = await served(program, serverRuntime, name, clients.length);
        // Each client's big notification arrived whole at the server.
        expect(result.stdout.match(new RegExp(`^notify ${BIG} ${fnv1a(peerPattern(BIG))}$`, 'gm'))).to.have.length(
          clients.length,
        );
      });
    }
  });

  describe('cancellation', function () {
    for (const serverRuntime of ['python', 'c'] as const) {
      it(`should cancel at a ${serverRuntime} handler a request that a Node client unsubscribes from or times out`, async function () {
        const name = segment(`cancel-${serverRuntime}`);
        const program = await server(serverRuntime, name, 1);
        const client = await openChannel(name, 'client', { connectTimeout: 20_000 });

        /** Once the handler of `text` runs: a wait for it to see its cancel (Python: its task
         * is cancelled; C: the program receives CANCEL for that id). */
        async function handlerBlocking(text: string): Promise<() => Promise<RegExpMatchArray>> {
          const blocking = await program.line(new RegExp(`^blocking ${text}(?: (\\d+))?$`));
          const seen = serverRuntime === 'c' ? `^cancel ${blocking[1]}$` : `^cancelled ${text}$`;
          return () => program.line(new RegExp(seen));
        }

        const subscription: Subscription = client.request('block-unsubscribed').subscribe({ error: () => undefined });
        const unsubscribed = await handlerBlocking('block-unsubscribed');
        subscription.unsubscribe();
        await unsubscribed();

        const timedOut = client.request('block-timed-out', { timeout: 5000 });
        const failure = lastValueFrom(timedOut).then(
          () => undefined,
          (err: unknown) => err,
        );
        const timedOutAtHandler = await handlerBlocking('block-timed-out');
        expect(isShmChannelError(await failure, 'ERR_TIMEOUT'), String(await failure)).to.equal(true);
        await timedOutAtHandler();

        // Both cancels came while the client was still there, and the server still answers it.
        expect(program.lines).not.to.include('bye');
        expect((await lastValueFrom(client.request('abc', { timeout: 30_000 }))).toString()).to.equal('cba');
        await client.close();
        await served(program, serverRuntime, name, 1);
      });
    }

    it('should cancel at a Node handler (IncomingRequest.cancelled) the request_stream a Python client leaves early', async function () {
      const name = segment('cancel-node');
      const channel = await openChannel(name, 'server', { ringCapacity: 4096 });
      let ticks: IncomingRequest | undefined;
      let cancelledBeforeNext: boolean | undefined;
      const cancelled = new Promise<void>((resolve) => {
        channel.requests$.subscribe((request) => {
          if (request.data.toString() === 'ticks') {
            ticks = request;
            const timer = setInterval(() => request.next('tick'), 20);
            request.cancelled$.subscribe(() => {
              clearInterval(timer);
              resolve();
            });
          } else {
            cancelledBeforeNext = ticks?.cancelled;
            request.respond(Buffer.from(request.data).reverse());
          }
        });
      });
      const result = await peer('python', ['client-leave', name]).exited;
      expect(result.code, describeResult('python client', result)).to.equal(0);
      expect(result.stdout.split('\n')).to.include.members(['left after tick|tick', 'reply cba']);
      await cancelled;
      expect(ticks?.cancelled).to.equal(true);
      // The cancel came before the next request, not from the client's leaving.
      expect(cancelledBeforeNext).to.equal(true);
    });
  });

  describe('a peer SIGKILLed mid-request', function () {
    for (const serverRuntime of RUNTIMES) {
      for (const clientRuntime of RUNTIMES) {
        if (clientRuntime === serverRuntime) continue;

        it(`should end a ${clientRuntime} client's pending request with ${lost(clientRuntime)} when its ${serverRuntime} server is SIGKILLed`, async function () {
          const name = segment(`kill-${serverRuntime}-server`);
          const program = await server(serverRuntime, name, 1);
          const client = peer(clientRuntime, ['client-pending', name]);
          await program.line(/^blocking block/);
          await program.kill();
          const result = await client.exited;
          const what = describeResult(`${clientRuntime} client`, result);
          expect(result.code, what).to.equal(0);
          expect(result.stdout.split('\n'), what).to.include(`pending error ${lost(clientRuntime)}`);
          expect(result.stdout, what).not.to.include('pending answered');
          // The message API: after the BYE, a client whose server left is over.
          if (clientRuntime === 'c') expect(result.stdout.split('\n'), what).to.include('then SHMCH_E_CLOSED');
        });

        it(`should end a ${serverRuntime} server's pending request with ${lost(serverRuntime)} when its ${clientRuntime} client is SIGKILLed, then serve a next client`, async function () {
          const name = segment(`kill-${clientRuntime}-client`);
          const program = await server(serverRuntime, name, 2);
          const client = peer(clientRuntime, ['client-hold', name]);
          await program.line(/^asked$/);
          await client.line(/^blocking block/);
          await client.kill();
          await program.line(new RegExp(`^ask error ${lost(serverRuntime)}$`));
          expect(program.lines).not.to.include('ask answered');
          const next = RUNTIMES.find((r) => r !== serverRuntime && r !== clientRuntime) ?? clientRuntime;
          await exchange(next, name, 10_000);
          await served(program, serverRuntime, name, 2);
        });
      }
    }
  });
});
