import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { expect } from 'chai';

import { type Channel } from '../lib/index';
import { describeResult, runCommand } from './helpers/commands';
import { has, peerPattern, plainEnv } from './helpers/foreign-peers';
import { shmExists, uniqueName } from './helpers/names';
import { openChannel, releaseAll } from './helpers/resources';

// Loans through the C API (shmchannel.h: shmch_loan, shmch_write_loan, shmch_borrowed,
// shmch_release) across real processes and a real /dev/shm segment: spec/helpers/loan-peer.c,
// a client, sends notifications and requests by reference to a Channel of this process opened
// with a pool and borrow: true, and reads the responses this side sends from its own loans.
// Both pools must come back whole. Skipped only where there is no C compiler or make.

const repoRoot = path.resolve(__dirname, '..', '..');
const COMMAND_TIMEOUT_MS = 3 * 60 * 1000;
const RUN_TIMEOUT_MS = 30_000;

/** loan-peer.c's message `message`: byte j is (j * 31 + 7 + message) % 251. */
function pattern(message: number, size: number): Buffer {
  return peerPattern(size, message);
}

/** What the server saw of the C client's loans. */
interface Seen {
  notifications: number;
  notificationsExact: number;
  requests: number;
  requestsExact: number;
  /** release() detached every message: each came as a view of the client's pool. */
  allBorrowed: boolean;
  /** At the client's "done" (after it released every response): the whole pool lent at once. */
  poolBack: boolean | undefined;
  errors: string[];
}

/** A server that checks what the client sends and answers each request, reversed, from a loan. */
function serve(server: Channel, size: number, poolSize: number): Seen {
  const seen: Seen = {
    notifications: 0,
    notificationsExact: 0,
    requests: 0,
    requestsExact: 0,
    allBorrowed: true,
    poolBack: undefined,
    errors: [],
  };
  // A view of the client's pool is detached by its release; a copy would keep its bytes.
  const giveBack = (buffer: Buffer): void => {
    const length = buffer.length;
    try {
      server.release(buffer);
    } catch (err) {
      seen.errors.push(String(err));
    }
    if (length > 0 && buffer.length !== 0) seen.allBorrowed = false;
  };
  server.notifications$.subscribe((message) => {
    if (message.length === 4 && message.toString() === 'done') {
      try {
        const whole = server.loan(poolSize);
        seen.poolBack = whole.length === poolSize;
        server.release(whole);
      } catch (err) {
        seen.poolBack = false;
        seen.errors.push(String(err));
      }
      return;
    }
    if (message.equals(pattern(seen.notifications, size))) seen.notificationsExact++;
    seen.notifications++;
    giveBack(message);
  });
  server.requests$.subscribe((request) => {
    const message = seen.requests++;
    const data = request.data;
    if (data.equals(pattern(message, size))) seen.requestsExact++;
    void server.waitForLoan(data.length).then(
      (loan) => {
        for (let j = 0; j < data.length; j++) loan[j] = data[data.length - 1 - j];
        giveBack(data);
        request.respond(loan);
        // Sent by reference: this side's view is gone at once.
        if (loan.length !== 0) seen.errors.push(`loan of response ${message} not detached`);
      },
      (err: unknown) => seen.errors.push(String(err)),
    );
  });
  return seen;
}

describe('loans through the C API (shmch_loan, shmch_borrowed, shmch_release) across processes', function () {
  this.timeout(COMMAND_TIMEOUT_MS);
  let work: string;
  let peer: string;

  before(async function () {
    if (!has('cc') || !has('make')) {
      this.skip();
      return;
    }
    work = mkdtempSync(path.join(tmpdir(), 'shmch-cloans-'));
    const prefix = path.join(work, 'prefix');
    const made = await runCommand(
      'make',
      ['-C', 'native', 'install', `PREFIX=${prefix}`, `OUT=${path.join(work, 'build')}`],
      { cwd: repoRoot, env: plainEnv(), timeoutMs: COMMAND_TIMEOUT_MS },
    );
    expect(made.code, describeResult('make install', made)).to.equal(0);
    peer = path.join(work, 'loan-peer');
    const source = path.join(repoRoot, 'spec', 'helpers', 'loan-peer.c');
    const flags = ['-std=c99', '-Wall', '-Wextra', '-Werror', `-I${path.join(prefix, 'include')}`];
    const libs = [path.join(prefix, 'lib', 'libshmchannel.a'), '-lstdc++', '-lm', '-lrt', '-lpthread'];
    const built = await runCommand('cc', [...flags, source, '-o', peer, ...libs], { cwd: work, env: plainEnv() });
    expect(built.code, describeResult('cc loan-peer.c', built)).to.equal(0);
  });

  after(function () {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  afterEach(releaseAll);

  async function exchange(size: number, count: number, poolSize: number, ringCapacity: number): Promise<void> {
    const name = uniqueName('cloans');
    const server = await openChannel(name, 'server', { poolSize, borrow: true, ringCapacity });
    const seen = serve(server, size, poolSize);
    const run = await runCommand(peer, [name, String(size), String(count)], {
      cwd: work,
      env: plainEnv(),
      timeoutMs: RUN_TIMEOUT_MS,
    });
    const what = describeResult('loan-peer', run) + `\nseen: ${JSON.stringify(seen)}`;
    expect(run.code, what).to.equal(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines[0], what).to.equal(`pool ${poolSize}`);
    // The C side read every response from this side's pool, exact, and gave each back.
    const responses = lines.filter((l) => l.startsWith('response '));
    expect(responses, what).to.have.length(count);
    for (const [i, line] of responses.entries())
      expect(line, what).to.match(new RegExp(`^response ${i} ${size} [0-9a-f]{8} loaned ok$`));
    expect(lines, what).to.include(`released ${count}`);
    // This side got every message exact, as views it released; its own pool came back whole
    // while the client was still there, and the client's did too.
    expect(seen.errors, what).to.deep.equal([]);
    expect(seen.notifications, what).to.equal(count);
    expect(seen.notificationsExact, what).to.equal(count);
    expect(seen.requests, what).to.equal(count);
    expect(seen.requestsExact, what).to.equal(count);
    expect(seen.allBorrowed, what).to.equal(true);
    expect(seen.poolBack, what).to.equal(true);
    expect(lines, what).to.include(`own-pool-back ${poolSize}`);
    expect(lines[lines.length - 1], what).to.equal('done');
    await server.close();
    expect(shmExists(name), name).to.equal(false);
  }

  it('should carry notifications and requests from C by reference, and responses back, through a small pool', async function () {
    // Each message takes two blocks of a four-block pool: loans wait for releases all along.
    await exchange(5000, 24, 4 * 4096, 4096);
  });

  it('should carry 1 MiB messages by reference through a 4 KiB ring', async function () {
    await exchange(1 << 20, 4, 4 << 20, 4096);
  });
});
