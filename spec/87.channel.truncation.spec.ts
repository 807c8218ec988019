import { spawnSync } from 'node:child_process';

import { expect } from 'chai';
import { firstValueFrom, lastValueFrom } from 'rxjs';

import { SharedMemory, type Channel } from '../lib/index';
import { describeResult, runCommand } from './helpers/commands';
import { shmExists, uniqueName } from './helpers/names';
import { Peer } from './helpers/peer';
import { openChannel, releaseAll, unlinkLater } from './helpers/resources';
import { Layout, publishUnknownKindFrame, ringSegment } from './helpers/segment-layout';
import { reaches, waitUntil } from './helpers/wait';

const CAPACITY = 64 * 1024;
const LIB = require.resolve('../lib/index');

/** Shrinks the object behind `name` from another process, as a hostile or broken peer could. */
async function shrinkFromAnotherProcess(name: string, size: number): Promise<void> {
  const script = 'require("fs").truncateSync(process.argv[1], Number(process.argv[2]))';
  const result = await runCommand(process.execPath, ['-e', script, `/dev/shm${name}`, String(size)], {
    cwd: process.cwd(),
  });
  expect(result.code, describeResult('truncate', result)).to.equal(0);
}

/**
 * Whether a peer process learnt that the segment is gone: from its own look at it (its streams
 * error), or from the other end's close, seen first when that end noticed first (its streams
 * then complete: a client whose server closed is just closed).
 */
function learntOfIt(peer: Peer): boolean {
  return peer.events('stream-error').length > 0 || peer.events('state').some((e) => e.state === 'closed');
}

/** Resolves with the error notifications$ ends with. */
function streamError(ch: Channel): Promise<{ code?: string; message: string }> {
  return lastValueFrom(ch.notifications$).then(
    () => expect.fail('notifications$ completed instead of failing'),
    (err: { code?: string; message: string }) => err,
  );
}

describe('A peer that shrinks the segment', function () {
  afterEach(releaseAll);

  for (const [what, size] of [
    ['to nothing', 0],
    ['to its header and ring controls', Layout.data],
  ] as const) {
    it(`should fail the channel with ERR_PROTOCOL, not die of SIGBUS, when it is shrunk ${what}`, async function () {
      const name = uniqueName('shrunk');
      // One client: another process shrinks the server's segment, by name.
      const server = await openChannel(name, 'server', { ringCapacity: CAPACITY, maxClients: 1 });
      const client = await Peer.spawn({ name, mode: 'client' });
      await reaches(server, 'connected');
      const failed = streamError(server);

      await shrinkFromAnotherProcess(name, size);
      // Writing touches the ring past the new end (and past the page that holds it), unless the
      // channel's segment watch made it learn of the shrink first, and close.
      try {
        server.notify(Buffer.alloc(8192, 1));
      } catch (err) {
        expect(['ERR_PROTOCOL', 'ERR_CHANNEL_CLOSED']).to.include((err as { code?: string }).code);
      }

      const err = await failed;
      expect(err.code, err.message).to.equal('ERR_PROTOCOL');
      expect(err.message).to.match(/segment lost pages: another process shrank it/);
      await reaches(server, 'closed');
      // Unlinked although its header is gone: the name still named our object.
      expect(shmExists(name)).to.equal(false);
      // The client survives too; it learns of it as a broken or lost peer.
      await waitUntil(() => learntOfIt(client));
      expect(client.isRunning).to.equal(true);
      await client.stats();
      for (const e of client.events('stream-error')) {
        expect(['ERR_PROTOCOL', 'ERR_PEER_LOST']).to.include(e.error.code);
      }

      // And this process goes on: a new channel works.
      const next = uniqueName('after-shrink');
      const server2 = await openChannel(next, 'server');
      const client2 = await Peer.spawn({ name: next, mode: 'client' });
      const got = firstValueFrom(server2.notifications$);
      await client2.notify({ text: 'still alive' });
      expect((await got).toString()).to.equal('still alive');
    });
  }

  it('should fail both ends of an idle channel, which nothing sends to look, when it is shrunk', async function () {
    const name = uniqueName('shrunk-idle');
    // One client: another process shrinks the server's segment, by name.
    const server = await openChannel(name, 'server', { ringCapacity: CAPACITY, maxClients: 1 });
    const client = await Peer.spawn({ name, mode: 'client' });
    await reaches(server, 'connected');
    const failed = streamError(server);

    // No traffic and no timer: only the segment watch can tell the waker threads.
    await shrinkFromAnotherProcess(name, 0);
    const err = await failed;
    expect(err.code, err.message).to.equal('ERR_PROTOCOL');
    expect(err.message).to.match(/segment lost pages: another process shrank it/);
    await reaches(server, 'closed');
    await waitUntil(() => learntOfIt(client));
    expect(client.isRunning).to.equal(true);
    for (const e of client.events('stream-error')) {
      expect(['ERR_PROTOCOL', 'ERR_PEER_LOST']).to.include(e.error.code);
    }
  });

  it('should still fail a server that is waiting for a dropped client to leave when the segment shrinks', async function () {
    const name = uniqueName('shrunk-dropping');
    // One client: another process shrinks the server's segment, by name.
    const server = await openChannel(name, 'server', { ringCapacity: CAPACITY, maxClients: 1 });
    const client = await Peer.spawn({ name, mode: 'client' });
    await reaches(server, 'connected');
    // The client stays, stopped, so the server waits for it to leave, reading nothing.
    process.kill(client.pid, 'SIGSTOP');
    const dropped = firstValueFrom(server.clientErrors$);
    const memory = SharedMemory.open(name);
    publishUnknownKindFrame(memory.buffer, 'c2s', CAPACITY);
    ringSegment(name);
    memory.close();
    await dropped;
    expect(server.state).to.equal('peer-lost');

    const failed = streamError(server);
    await shrinkFromAnotherProcess(name, 0);
    const err = await failed;
    expect(err.code, err.message).to.equal('ERR_PROTOCOL');
    expect(err.message).to.match(/segment lost pages/);
    await reaches(server, 'closed');
    process.kill(client.pid, 'SIGCONT');
  });

  it('should keep both peer processes alive when the segment shrinks under live traffic', async function () {
    this.timeout(60_000);
    for (const size of [0, 4096, Layout.data + CAPACITY / 2, Layout.data + CAPACITY + 100]) {
      const name = uniqueName('shrunk-live');
      unlinkLater(name);
      // One client: another process shrinks the server's segment, by name.
      const server = await Peer.spawn({ name, mode: 'server', options: { ringCapacity: CAPACITY, maxClients: 1 } });
      await server.handle({ kind: 'echo' });
      const client = await Peer.spawn({ name, mode: 'client' });
      const traffic = client.notify({ sizes: [200, 3000, 40_000, 70 * 1024], count: 200 }).catch(() => undefined);
      await client.request({ text: 'warm' });
      await shrinkFromAnotherProcess(name, size);
      await traffic;
      await client.request({ text: 'after' }).catch(() => undefined);

      for (const [role, victim] of [
        ['server', server],
        ['client', client],
      ] as const) {
        await waitUntil(() => learntOfIt(victim));
        expect(victim.isRunning, `${role} after shrinking to ${size}`).to.equal(true);
        await victim.stats();
        for (const e of victim.events('stream-error')) {
          expect(['ERR_PROTOCOL', 'ERR_PEER_LOST'], `${role}, size ${size}`).to.include(e.error.code);
        }
      }
      expect(
        server.events('stream-error').map((e) => e.error.message),
        `server, size ${size}`,
      ).to.satisfy((messages: string[]) => messages.some((m) => /shrank/.test(m)));
      await client.stop();
      await server.stop();
    }
  });

  it('should read zeros from a SharedMemory view past the new end, and say it was truncated', async function () {
    const name = uniqueName('shrunk-memory');
    unlinkLater(name);
    const memory = SharedMemory.create(name, 64 * 1024);
    memory.buffer.fill(0x5a);
    expect(memory.truncated).to.equal(false);

    await shrinkFromAnotherProcess(name, 4096);
    expect(memory.buffer[100]).to.equal(0x5a);
    expect(memory.buffer[60_000]).to.equal(0);
    expect(memory.truncated).to.equal(true);
    // The replacement is private memory: writable, and seen only here.
    memory.buffer[60_000] = 7;
    expect(memory.buffer[60_000]).to.equal(7);
    memory.close();
    expect(memory.truncated).to.equal(false);
  });

  it('should leave any other SIGBUS as deadly as it was', async function () {
    // Loading the addon installs the handler; a SIGBUS it does not own must still kill.
    const script = `require(${JSON.stringify(LIB)}); process.kill(process.pid, 'SIGBUS'); setTimeout(() => {}, 5000);`;
    const result = await runCommand(process.execPath, ['-e', script], { cwd: process.cwd(), timeoutMs: 20_000 });
    if (/asan/.test(process.env.LD_PRELOAD ?? '')) {
      // Under the sanitizer (npm run test:sanitize) AddressSanitizer's handler was there first.
      expect(result.stderr, describeResult('self-SIGBUS', result)).to.match(/AddressSanitizer: BUS/);
    } else {
      expect(result.signal, describeResult('self-SIGBUS', result)).to.equal('SIGBUS');
    }
  });
});

// A /dev/shm of its own, 1 MiB, in a private mount namespace: the machine's is not touched.
const canMountTmpfs =
  process.getuid?.() === 0 &&
  spawnSync('unshare', ['-m', 'sh', '-c', 'mount -t tmpfs -o size=1m tmpfs /dev/shm']).status === 0;

/** Runs `script` (with `lib` bound to the library) in a process whose /dev/shm holds 1 MiB. */
async function inSmallDevShm(script: string): Promise<Record<string, unknown>> {
  const program = `const lib = require(${JSON.stringify(LIB)}); (async () => { ${script} })().then((r) => console.log(JSON.stringify(r)), (e) => { console.error(e); process.exit(1); });`;
  const result = await runCommand(
    'unshare',
    ['-m', 'sh', '-c', 'mount -t tmpfs -o size=1m tmpfs /dev/shm && exec "$0" -e "$SCRIPT"', process.execPath],
    { cwd: process.cwd(), env: { ...process.env, SCRIPT: program }, timeoutMs: 60_000 },
  );
  expect(result.code, describeResult('small /dev/shm', result)).to.equal(0);
  return JSON.parse(result.stdout.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
}

describe('A full /dev/shm', function () {
  before(function () {
    if (!canMountTmpfs) this.skip();
  });

  it('should fail a server open() with ERR_RESOURCE_LIMIT, not later in the middle of traffic', async function () {
    const r = await inSmallDevShm(`
      // One client: its whole segment is allocated at open() (a server of many's, as each client connects).
      const server = new lib.Channel('/full', 'server', { ringCapacity: 1024 * 1024, maxClients: 1 });
      try { await server.open(); return { opened: true }; }
      catch (e) { return { code: e.code, message: e.message, left: require('fs').readdirSync('/dev/shm') }; }
    `);
    expect(r.code, String(r.message)).to.equal('ERR_RESOURCE_LIMIT');
    expect(r.message).to.match(/room in \/dev\/shm/);
    expect(r.left).to.deep.equal([]);
  });

  it('should read zeros instead of dying of SIGBUS where a sparse SharedMemory finds no room', async function () {
    const r = await inSmallDevShm(`
      const memory = lib.SharedMemory.create('/sparse', 4 * 1024 * 1024);
      memory.buffer.fill(1);
      const result = { truncated: memory.truncated, last: memory.buffer[memory.size - 1] };
      memory.close();
      memory.unlink();
      return result;
    `);
    expect(r.truncated).to.equal(true);
    expect(r.last).to.equal(1);
  });
});
