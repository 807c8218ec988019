import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

import { expect } from 'chai';
import { firstValueFrom, lastValueFrom, toArray } from 'rxjs';

import { Mode, type IncomingRequest } from '../lib/index';
import { expectErrorsWhenSubscribed, expectRejectsCode, expectThrowsCode } from './helpers/expect-error';
import { shmExists, uniqueName } from './helpers/names';
import { Peer } from './helpers/peer';
import { channel, openChannel, releaseAll, unlinkLater } from './helpers/resources';
import { reaches, recordStates, waitUntil } from './helpers/wait';

describe('Channel#open()', function () {
  afterEach(releaseAll);

  it('should create /dev/shm/<name> for a server', async function () {
    const name = uniqueName('srv');
    expect(shmExists(name)).to.equal(false);
    const server = await openChannel(name, 'server');
    expect(shmExists(name)).to.equal(true);
    expect(server.isOpen).to.equal(true);
  });

  it('should create the segment with mode 0600 by default', async function () {
    const server = await openChannel(uniqueName('perm'), 'server');
    expect(statSync(`/dev/shm${server.name}`).mode & 0o777).to.equal(0o600);
  });

  it('should create the segment with the permissions option', async function () {
    const server = await openChannel(uniqueName('perm'), 'server', { permissions: 0o640 });
    expect(statSync(`/dev/shm${server.name}`).mode & 0o777).to.equal(0o640);
  });

  it('should attach a client to a server in another process', async function () {
    const name = uniqueName('attach');
    const peer = await Peer.spawn({ name, mode: 'server' });
    const client = await openChannel(name, 'client');
    expect(client.isOpen).to.equal(true);
    expect(await firstValueFrom(client.state$)).to.equal('connected');
    await peer.waitFor('state', (e) => e.state === 'connected');
  });

  it('should make a client wait for a server that appears later', async function () {
    const name = uniqueName('late');
    const peer = Peer.start({ name, mode: 'server', startDelayMs: 1000 });
    expect(shmExists(name)).to.equal(false);
    const client = await openChannel(name, 'client', { connectTimeout: 20000 });
    await peer.ready;
    expect(client.isOpen).to.equal(true);
    await peer.waitFor('state', (e) => e.state === 'connected');
  });

  // API.md: open() fails with ERR_SHM_OPEN_FAILED (errno ENOENT) "if it cannot" attach, and the
  // error table lists ERR_TIMEOUT for "a client's connectTimeout". Read together: waiting that
  // runs out is ERR_TIMEOUT; a single try (connectTimeout 0) that finds nothing is ENOENT.
  it('should fail with ERR_TIMEOUT when no server appears within connectTimeout', async function () {
    const client = channel(uniqueName('nosrv'), 'client', { connectTimeout: 300 });
    await expectRejectsCode(client.open(), 'ERR_TIMEOUT');
    expect(client.isOpen).to.equal(false);
  });

  it('should fail with ERR_SHM_OPEN_FAILED (ENOENT) at once with connectTimeout 0 and no server', async function () {
    const client = channel(uniqueName('nosrv'), 'client', { connectTimeout: 0 });
    const err = await expectRejectsCode(client.open(), 'ERR_SHM_OPEN_FAILED');
    expect(err.errno).to.equal('ENOENT');
  });

  // Only an all-zero segment is a server still being created; any other bytes never become one.
  for (const [what, size, fill] of [
    ['8 KiB of 0x07', 8192, 0x07],
    ['1 MiB of 0xff', 1 << 20, 0xff],
  ] as const) {
    it(`should fail at once with ERR_INCOMPATIBLE_SEGMENT when the name holds ${what}`, async function () {
      const name = uniqueName('not-ours');
      unlinkLater(name);
      writeFileSync(`/dev/shm${name}`, Buffer.alloc(size, fill), { mode: 0o600 });
      for (const connectTimeout of [0, 2 ** 31 - 1]) {
        const client = channel(name, 'client', { connectTimeout });
        // With the whole connectTimeout waited, this would never settle: the test's own limit fails it.
        const err = await expectRejectsCode(client.open(), 'ERR_INCOMPATIBLE_SEGMENT');
        expect(err.message).to.match(/bad magic/);
      }
    });
  }

  it('should wait for an all-zero segment (a server still creating it) until connectTimeout', async function () {
    const name = uniqueName('zeroed');
    unlinkLater(name);
    writeFileSync(`/dev/shm${name}`, Buffer.alloc(8192), { mode: 0o600 });
    const client = channel(name, 'client', { connectTimeout: 300 });
    await expectRejectsCode(client.open(), 'ERR_TIMEOUT');
  });

  it('should fail with ERR_ALREADY_OPEN when opened twice, and stay open', async function () {
    const server = await openChannel(uniqueName('twice'), 'server');
    await expectRejectsCode(server.open(), 'ERR_ALREADY_OPEN');
    expect(server.isOpen).to.equal(true);
    expect(await firstValueFrom(server.state$)).to.equal('open');
    expect(shmExists(server.name)).to.equal(true);
  });

  it('should fail with ERR_ALREADY_OPEN and the ownerPid when a live server owns the name', async function () {
    const name = uniqueName('owned');
    const peer = await Peer.spawn({ name, mode: 'server' });
    const second = channel(name, 'server');
    const err = await expectRejectsCode(second.open(), 'ERR_ALREADY_OPEN');
    expect(err.ownerPid).to.equal(peer.pid);
    // The owner's segment is untouched: a client can still connect to it.
    const client = await openChannel(name, 'client');
    await peer.waitFor('state', (e) => e.state === 'connected');
    expect(client.isOpen).to.equal(true);
  });

  it('should reclaim a segment left behind by a dead server', async function () {
    const name = uniqueName('reclaim');
    unlinkLater(name); // in case the reclaim fails, don't leak the dead server's segment
    const dead = await Peer.spawn({ name, mode: 'server' });
    await dead.kill('SIGKILL');
    expect(shmExists(name)).to.equal(true);
    const server = await openChannel(name, 'server');
    expect(await firstValueFrom(server.state$)).to.equal('open');
    const client = await Peer.spawn({ name, mode: 'client' });
    await reaches(server, 'connected');
    expect(client.isRunning).to.equal(true);
  });

  it('should fail with ERR_CHANNEL_BUSY when another client is connected', async function () {
    const name = uniqueName('busy');
    const server = await openChannel(name, 'server', { maxClients: 1 });
    await Peer.spawn({ name, mode: 'client' });
    await reaches(server, 'connected');
    // A busy server is not "not there yet": no waiting until connectTimeout.
    const second = channel(name, 'client', { connectTimeout: 2000 });
    await expectRejectsCode(second.open(), 'ERR_CHANNEL_BUSY');
    expect(second.isOpen).to.equal(false);
  });

  it('should fail with ERR_CHANNEL_CLOSED after close()', async function () {
    const server = await openChannel(uniqueName('reopen'), 'server');
    await server.close();
    await expectRejectsCode(server.open(), 'ERR_CHANNEL_CLOSED');
    expect(shmExists(server.name)).to.equal(false);
  });
});

describe('Channel#close()', function () {
  afterEach(releaseAll);

  it('should complete notifications$ and requests$', async function () {
    const server = await openChannel(uniqueName('complete'), 'server');
    const notificationsDone = lastValueFrom(server.notifications$.pipe(toArray()));
    const requestsDone = lastValueFrom(server.requests$.pipe(toArray()));
    await server.close();
    expect(await notificationsDone).to.deep.equal([]);
    expect(await requestsDone).to.deep.equal([]);
  });

  it('should complete a subscriber that comes after close()', async function () {
    const server = await openChannel(uniqueName('complete-late'), 'server');
    await server.close();
    expect(await lastValueFrom(server.notifications$.pipe(toArray()))).to.deep.equal([]);
    expect(await lastValueFrom(server.requests$.pipe(toArray()))).to.deep.equal([]);
    expect(await lastValueFrom(server.clientErrors$.pipe(toArray()))).to.deep.equal([]);
  });

  it('should fail pending requests with ERR_CHANNEL_CLOSED', async function () {
    const name = uniqueName('pending');
    const peer = await Peer.spawn({ name, mode: 'server' });
    await peer.handle({ kind: 'never' });
    const client = await openChannel(name, 'client');
    const failed = expectRejectsCode(firstValueFrom(client.request('wait')), 'ERR_CHANNEL_CLOSED');
    await waitUntil(async () => (await peer.stats()).arrivals.length === 1);
    await client.close();
    await failed;
  });

  it('should cancel the requests it was handling, and the peer gets ERR_PEER_LOST', async function () {
    const name = uniqueName('handling');
    const server = await openChannel(name, 'server');
    const handling = new Promise<IncomingRequest>((resolve) => server.requests$.subscribe(resolve));
    const peer = await Peer.spawn({ name, mode: 'client' });
    const answer = peer.request({ text: 'hang' });
    const request = await handling;
    await server.close();
    expect(request.cancelled).to.equal(true);
    expect(request.signal.aborted).to.equal(true);
    const result = await answer;
    expect(result.error?.code).to.equal('ERR_PEER_LOST');
  });

  it('should end its native threads (shmch-waker and shmch-watch), leaving only the process-wide shmch-segwatch', async function () {
    const threadNames = (): string[] =>
      readdirSync('/proc/self/task').map((task) => readFileSync(`/proc/self/task/${task}/comm`, 'utf8').trim());
    // One segment watch serves every channel of the process, and stays once started.
    const channelThreads = (): string[] =>
      threadNames()
        .filter((comm) => comm.startsWith('shmch-') && comm !== 'shmch-segwatch')
        .sort();
    expect(channelThreads(), 'no channel open before').to.deep.equal([]);
    const name = uniqueName('threads');
    const server = await openChannel(name, 'server', { maxClients: 1 });
    await Peer.spawn({ name, mode: 'client' });
    await reaches(server, 'connected');
    await waitUntil(() => channelThreads().length === 2);
    expect(channelThreads()).to.deep.equal(['shmch-waker', 'shmch-watch']);
    await server.close();
    expect(channelThreads()).to.deep.equal([]);
    expect(threadNames().filter((comm) => comm === 'shmch-segwatch')).to.have.length(1);
  });

  it('should unlink the segment of a server', async function () {
    const server = await openChannel(uniqueName('unlink'), 'server');
    await server.close();
    expect(shmExists(server.name)).to.equal(false);
  });

  it('should leave the segment of the server when a client closes', async function () {
    const name = uniqueName('clientclose');
    const server = await openChannel(name, 'server');
    const client = await openChannel(name, 'client');
    await client.close();
    expect(shmExists(name)).to.equal(true);
    expect(server.isOpen).to.equal(true);
  });

  it('should make notify() throw ERR_CHANNEL_CLOSED', async function () {
    const server = await openChannel(uniqueName('after'), 'server');
    await server.close();
    expectThrowsCode(() => server.notify('late'), 'ERR_CHANNEL_CLOSED');
  });

  it('should make request() error its subscriber with ERR_CHANNEL_CLOSED, never throw', async function () {
    const server = await openChannel(uniqueName('after'), 'server');
    await server.close();
    await expectErrorsWhenSubscribed(() => server.request('late'), 'ERR_CHANNEL_CLOSED');
  });

  it('should be idempotent', async function () {
    const server = await openChannel(uniqueName('idem'), 'server');
    await server.close();
    await server.close();
    await Promise.all([server.close(), server.close()]);
    expect(server.isOpen).to.equal(false);
  });
});

describe('Channel properties', function () {
  afterEach(releaseAll);

  it('should define Mode.SERVER and Mode.CLIENT as the mode strings', async function () {
    expect(Mode.SERVER).to.equal('server');
    expect(Mode.CLIENT).to.equal('client');
    const name = uniqueName('mode');
    const server = await openChannel(name, Mode.SERVER);
    const client = await openChannel(name, Mode.CLIENT);
    expect(server.mode).to.equal('server');
    expect(client.mode).to.equal('client');
  });

  it('should expose name and isOpen through the lifecycle', async function () {
    const name = uniqueName('props');
    const server = channel(name, 'server');
    expect(server.name).to.equal(name);
    expect(server.isOpen).to.equal(false);
    await server.open();
    expect(server.isOpen).to.equal(true);
    await server.close();
    expect(server.isOpen).to.equal(false);
    expect(server.name).to.equal(name);
  });

  it('should replay the current state to a new state$ subscriber', async function () {
    const server = channel(uniqueName('state'), 'server');
    expect(await firstValueFrom(server.state$)).to.equal('idle');
    await server.open();
    expect(await firstValueFrom(server.state$)).to.equal('open');
  });

  it('should go idle, open, connected, peer-lost, open on a server whose client comes and goes', async function () {
    const name = uniqueName('srvstates');
    const server = channel(name, 'server');
    const states = recordStates(server);
    await server.open();
    const peer = await Peer.spawn({ name, mode: 'client' });
    await reaches(server, 'connected');
    const lost = reaches(server, 'peer-lost');
    await peer.close();
    await lost;
    await waitUntil(async () => states.at(-1) === 'open');
    expect(states).to.deep.equal(['idle', 'open', 'connected', 'peer-lost', 'open']);
  });

  it('should accept the next client after one left', async function () {
    const name = uniqueName('next');
    const server = await openChannel(name, 'server');
    const first = await Peer.spawn({ name, mode: 'client' });
    await reaches(server, 'connected');
    await first.close();
    await waitUntil(async () => (await firstValueFrom(server.state$)) === 'open');
    const second = await Peer.spawn({ name, mode: 'client' });
    await reaches(server, 'connected');
    expect(second.isRunning).to.equal(true);
  });

  it('should make a server see peer-lost, then open, when its client is SIGKILLed', async function () {
    const name = uniqueName('killcli');
    const server = await openChannel(name, 'server');
    const states = recordStates(server);
    const peer = await Peer.spawn({ name, mode: 'client' });
    await reaches(server, 'connected');
    const lost = reaches(server, 'peer-lost');
    await peer.kill('SIGKILL');
    await lost;
    await waitUntil(async () => states.at(-1) === 'open');
    expect(states.slice(-2)).to.deep.equal(['peer-lost', 'open']);
    // And the slot is free again.
    await Peer.spawn({ name, mode: 'client' });
    await reaches(server, 'connected');
  });

  it('should go idle, connected, peer-lost, closed on a client whose server closes', async function () {
    const name = uniqueName('clistates');
    const peer = await Peer.spawn({ name, mode: 'server' });
    const client = channel(name, 'client');
    const states = recordStates(client);
    await client.open();
    const closed = reaches(client, 'closed');
    await peer.close();
    await closed;
    expect(states).to.deep.equal(['idle', 'connected', 'peer-lost', 'closed']);
    expect(client.isOpen).to.equal(false);
  });

  it('should make a client see peer-lost, then closed, when its server is SIGKILLed', async function () {
    const name = uniqueName('killsrv');
    unlinkLater(name); // a killed server cannot unlink its segment
    const peer = await Peer.spawn({ name, mode: 'server' });
    const client = channel(name, 'client');
    const states = recordStates(client);
    await client.open();
    const closed = reaches(client, 'closed');
    await peer.kill('SIGKILL');
    await closed;
    expect(states).to.deep.equal(['idle', 'connected', 'peer-lost', 'closed']);
  });
});

describe('Channel#unref()', function () {
  afterEach(releaseAll);

  it('should let the process exit while the channel is open', function () {
    this.timeout(60000);
    const name = uniqueName('unref');
    unlinkLater(name); // the process exits without close(): what happens to the segment is not specified
    const libIndex = path.resolve(__dirname, '../lib/index.js');
    const script = `
      const { Channel } = require(${JSON.stringify(libIndex)});
      const server = new Channel(${JSON.stringify(name)}, 'server');
      server.open().then(() => { server.unref(); process.stdout.write('open'); });`;
    // If unref() did not work, the child would run until spawnSync kills it at the timeout.
    const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30000 });
    expect(child.stdout).to.equal('open');
    expect(child.signal).to.equal(null);
    expect(child.status).to.equal(0);
  });
});
