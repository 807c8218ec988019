import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { expect } from 'chai';
import { firstValueFrom, lastValueFrom, toArray } from 'rxjs';

import { SharedMemory, isShmChannelError } from '../lib/index';
import { describeResult, runCommand, type CommandResult } from './helpers/commands';
import { fnv1a, has, peerPattern, plainEnv } from './helpers/foreign-peers';
import { shmExists, uniqueName } from './helpers/names';
import { openChannel, releaseAll } from './helpers/resources';

// The message-level C API (native/core/shmchannel_message.h) across real processes and real
// /dev/shm segments: examples/c/channel.c against its TypeScript twin examples/channel.ts both
// ways, and spec/helpers/message-peer.c (large messages, streams, errors with codes) against a
// Channel of this process. The library is built as `npm run build:c` builds it (make -C native,
// here with install into a temporary prefix and a temporary OUT). Skipped only where there is
// no C compiler or make.

const repoRoot = path.resolve(__dirname, '..', '..');
const COMMAND_TIMEOUT_MS = 3 * 60 * 1000;
const RUN_TIMEOUT_MS = 30_000;
const nodeExample = path.join(repoRoot, 'dist', 'examples', 'channel.js');

/** A program that runs in the background (a server), its output collected line by line. */
class Background {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<CommandResult>;

  /** `segment`: the channel it serves, removed after it if it had to be killed. */
  constructor(
    command: string,
    args: string[],
    env: NodeJS.ProcessEnv,
    readonly segment: string,
  ) {
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

  /** Resolves once a line of stdout matches; rejects if the program ends first. */
  async line(pattern: RegExp): Promise<void> {
    const ended = this.exited.then((r) => {
      throw new Error(describeResult(`ended before ${String(pattern)}`, r));
    });
    for (;;) {
      if (this.stdout.split('\n').some((l) => pattern.test(l))) return;
      await Promise.race([new Promise((resolve) => setTimeout(resolve, 20)), ended]);
    }
  }
}

describe('the message-level C API (shmchannel_message.h) across processes', function () {
  this.timeout(COMMAND_TIMEOUT_MS);
  let work: string;
  let prefix: string;
  let cExample: string;
  let peer: string;
  const running: Background[] = [];

  function background(command: string, args: string[], segment: string, env = plainEnv()): Background {
    const program = new Background(command, args, env, segment);
    running.push(program);
    return program;
  }

  before(async function () {
    if (!has('cc') || !has('make')) {
      this.skip();
      return;
    }
    work = mkdtempSync(path.join(tmpdir(), 'shmch-cmsg-'));
    prefix = path.join(work, 'prefix');
    const out = path.join(work, 'build');
    const made = await runCommand('make', ['-C', 'native', 'install', `PREFIX=${prefix}`, `OUT=${out}`], {
      cwd: repoRoot,
      env: plainEnv(),
      timeoutMs: COMMAND_TIMEOUT_MS,
    });
    expect(made.code, describeResult('make install', made)).to.equal(0);
    cExample = path.join(out, 'examples', 'channel');
    peer = path.join(work, 'message-peer');
    const source = path.join(repoRoot, 'spec', 'helpers', 'message-peer.c');
    const flags = ['-std=c99', '-Wall', '-Wextra', '-Werror', `-I${path.join(prefix, 'include')}`];
    const libs = [path.join(prefix, 'lib', 'libshmchannel.a'), '-lstdc++', '-lm', '-lrt', '-lpthread'];
    const built = await runCommand('cc', [...flags, source, '-o', peer, ...libs], { cwd: work, env: plainEnv() });
    expect(built.code, describeResult('cc message-peer.c', built)).to.equal(0);
  });

  after(function () {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  afterEach(async function () {
    for (const program of running.splice(0)) {
      if (program.child.exitCode === null && program.child.signalCode === null) program.child.kill('SIGKILL');
      const result = await program.exited;
      // A server killed (a failed test) could not remove its segment.
      if (result.signal !== null && shmExists(program.segment)) SharedMemory.unlink(program.segment);
    }
    await releaseAll();
  });

  it('should install shmchannel_message.h beside shmchannel.h, and build examples/c/channel.c', function () {
    expect(existsSync(path.join(prefix, 'include', 'shmchannel.h'))).to.equal(true);
    expect(existsSync(path.join(prefix, 'include', 'shmchannel_message.h'))).to.equal(true);
    expect(existsSync(cExample), cExample).to.equal(true);
  });

  it('should let the C example server and the Node example client exchange requests and notifications', async function () {
    const name = uniqueName('cmsg-c-server');
    const server = background(cExample, ['server', 'from C ✓', name], name);
    await server.line(/^listening on /);
    const client = await runCommand('node', [nodeExample, 'client', 'from Node', name], {
      cwd: repoRoot,
      timeoutMs: RUN_TIMEOUT_MS,
    });
    expect(client.code, describeResult('node client', client)).to.equal(0);
    const served = await server.exited;
    expect(served.code, describeResult('C server', served)).to.equal(0);
    expect(client.stdout.split('\n')).to.include.members([
      'request from server: "from C ✓"',
      'notification from server: "from C ✓"',
      'reply from server: server got "from Node"',
    ]);
    expect(served.stdout.split('\n')).to.include.members([
      'client connected',
      'request from client: "from Node"',
      'notification from client: "from Node"',
      'reply from client: client got "from C ✓"',
      'client disconnected',
    ]);
    expect(shmExists(name), 'the C server removed its segment').to.equal(false);
  });

  it('should let the Node example server and the C example client exchange requests and notifications', async function () {
    const name = uniqueName('cmsg-node-server');
    const server = background('node', [nodeExample, 'server', 'from Node', name], name, process.env);
    await server.line(/^listening on /);
    const client = await runCommand(cExample, ['client', 'from C ✓', name], {
      cwd: repoRoot,
      env: plainEnv(),
      timeoutMs: RUN_TIMEOUT_MS,
    });
    expect(client.code, describeResult('C client', client)).to.equal(0);
    const served = await server.exited;
    expect(served.code, describeResult('node server', served)).to.equal(0);
    expect(client.stdout.split('\n')).to.include.members([
      'request from server: "from Node"',
      'notification from server: "from Node"',
      'reply from server: server got "from C ✓"',
    ]);
    expect(served.stdout.split('\n')).to.include.members([
      'client connected',
      'request from client: "from C ✓"',
      'notification from client: "from C ✓"',
      'reply from client: client got "from Node"',
      'client disconnected',
    ]);
    expect(shmExists(name)).to.equal(false);
  });

  it('should let the C example server take a second client after the first left', async function () {
    const name = uniqueName('cmsg-two-clients');
    const server = background(cExample, ['server', 'from C', name, '2'], name);
    await server.line(/^listening on /);
    for (const text of ['first', 'second']) {
      const client = await runCommand('node', [nodeExample, 'client', text, name], {
        cwd: repoRoot,
        timeoutMs: RUN_TIMEOUT_MS,
      });
      expect(client.code, describeResult(`node client ${text}`, client)).to.equal(0);
      expect(client.stdout).to.include(`reply from server: server got "${text}"`);
    }
    const served = await server.exited;
    expect(served.code, describeResult('C server', served)).to.equal(0);
    expect(served.stdout.match(/^client connected$/gm)).to.have.length(2);
    expect(served.stdout.match(/^client disconnected$/gm)).to.have.length(2);
    expect(served.stdout).to.include('reply from client: client got "from C"');
    expect(shmExists(name)).to.equal(false);
  });

  it('should carry messages larger than the ring both ways, streams, and a C error with its code to a Node client; then serve a second client', async function () {
    const name = uniqueName('cmsg-peer-server');
    // A 4 KiB ring: fragments of at most 1008 bytes, so 100 kB is about a hundred of them.
    const server = background(peer, ['server', name, '4096', String(1 << 20), '2'], name);
    await server.line(/^ready$/);

    const client = await openChannel(name, 'client', { connectTimeout: 10_000 });
    const big = peerPattern(100_000);
    const reply = await lastValueFrom(client.request(big, { timeout: 10_000 }));
    expect(reply.length).to.equal(big.length);
    expect(reply.equals(Buffer.from(big).reverse()), 'the C server reversed all 100000 bytes').to.equal(true);

    const parts = await lastValueFrom(client.request('stream:3', { timeout: 10_000 }).pipe(toArray()));
    expect(parts.map((p) => p.toString())).to.deep.equal(['part 0', 'part 1', 'part 2']);

    const message = 'bad "thing"\n\t\\ ✓ \u0001';
    const failure = await lastValueFrom(client.request(`fail:E_C_SIDE:${message}`, { timeout: 10_000 })).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(isShmChannelError(failure), String(failure)).to.equal(true);
    if (!isShmChannelError(failure)) return;
    expect(failure.code).to.equal('ERR_REMOTE');
    expect(failure.remoteCode).to.equal('E_C_SIDE');
    expect(failure.message).to.equal(message);

    client.notify(big);
    await server.line(new RegExp(`^notify 100000 ${fnv1a(big)}$`));
    await client.close();
    await server.line(/^bye$/);

    // The same server, a second client: the first one's leaving freed the slot.
    const second = await openChannel(name, 'client', { connectTimeout: 10_000 });
    const again = await lastValueFrom(second.request('abc', { timeout: 10_000 }));
    expect(again.toString()).to.equal('cba');
    await second.close();

    const served = await server.exited;
    expect(served.code, describeResult('message-peer server', served)).to.equal(0);
    expect(served.stdout.match(/^hello$/gm)).to.have.length(2);
    expect(served.stdout.match(/^bye$/gm)).to.have.length(2);
    expect(shmExists(name)).to.equal(false);
  });

  it('should let a C client send and receive messages larger than the ring and get a Node error with its code', async function () {
    const name = uniqueName('cmsg-peer-client');
    const server = await openChannel(name, 'server', { ringCapacity: 4096, maxMessageSize: 1 << 20 });
    server.requests$.subscribe((request) => {
      if (request.data.toString() === 'fail') {
        request.error(Object.assign(new Error('node says "no" ✓'), { code: 'E_NODE' }));
      } else {
        request.respond(Buffer.from(request.data).reverse());
      }
    });
    const note = firstValueFrom(server.notifications$);
    const size = 100_000;
    const run = await runCommand(peer, ['client', name, String(size)], {
      cwd: work,
      env: plainEnv(),
      timeoutMs: RUN_TIMEOUT_MS,
    });
    expect(run.code, describeResult('message-peer client', run)).to.equal(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines).to.deep.equal([
      `reply ${size} ${fnv1a(Buffer.from(peerPattern(size)).reverse())}`,
      'error E_NODE|node says "no" ✓',
    ]);
    expect((await note).equals(peerPattern(size)), 'the notification arrived whole').to.equal(true);
  });
});
