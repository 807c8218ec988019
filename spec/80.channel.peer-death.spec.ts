import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { expect } from 'chai';
import { firstValueFrom, lastValueFrom, toArray } from 'rxjs';

import { SharedMemory } from '../lib/index';
import { expectRejectsCode } from './helpers/expect-error';
import { shmExists, uniqueName } from './helpers/names';
import { Peer } from './helpers/peer';
import { openChannel, releaseAll } from './helpers/resources';
import { Layout } from './helpers/segment-layout';
import { reaches, waitUntil } from './helpers/wait';

// The requirement is "noticed within 1 s". Timing on a noisy 2-core VM is not asserted
// tightly; this bound only catches "never" or "at the next unrelated event".
const NOTICE_BOUND_MS = 3000;

/** LD_PRELOAD fault injector: the first poll() on an eventfd with no timeout fails (EINVAL). */
const POLL_SHIM_SOURCE = `
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static int failed;
int poll(struct pollfd* fds, nfds_t n, int timeout) {
  int (*real)(struct pollfd*, nfds_t, int) = (int (*)(struct pollfd*, nfds_t, int))dlsym(RTLD_NEXT, "poll");
  if (timeout == -1 && n >= 1 && n <= 2) {
    char path[64], link[64] = {0};
    snprintf(path, sizeof path, "/proc/self/fd/%d", fds[0].fd);
    if (readlink(path, link, sizeof link - 1) > 0 && strstr(link, "eventfd") != NULL &&
        !__atomic_exchange_n(&failed, 1, __ATOMIC_SEQ_CST)) {
      const char* mark = getenv("POLL_SHIM_MARK");
      if (mark != NULL) close(open(mark, O_CREAT | O_WRONLY, 0600));
      errno = EINVAL;
      return -1;
    }
  }
  return real(fds, n, timeout);
}
`;

describe('Peer death', function () {
  afterEach(releaseAll);

  it('should fail the requests pending at a client SIGKILLed mid-stream with ERR_PEER_LOST', async function () {
    const name = uniqueName('kill-client');
    const server = await openChannel(name, 'server');
    const peer = await Peer.spawn({ name, mode: 'client' });
    await reaches(server, 'connected');
    await peer.handle({ kind: 'ticks', ms: 5 });
    const values: Buffer[] = [];
    const stream = lastValueFrom(server.request('stream-until-killed').pipe(toArray()));
    server.request('stream-2').subscribe({ next: (v) => values.push(v), error: () => undefined });
    await waitUntil(() => values.length >= 3);
    const killedAt = Date.now();
    // Expected before the kill, which is awaited: the stream may fail meanwhile.
    const lost = expectRejectsCode(stream, 'ERR_PEER_LOST');
    await peer.kill('SIGKILL');
    const err = await lost;
    const noticedMs = Date.now() - killedAt;
    expect(noticedMs, `noticed after ${noticedMs} ms`).to.be.below(NOTICE_BOUND_MS);
    expect(err.message).to.include(name);
  });

  it('should notice a client that died but stays a zombie (its parent never reaps it)', async function () {
    const name = uniqueName('zombie');
    const server = await openChannel(name, 'server');
    const libIndex = path.resolve(__dirname, '../lib/index.js');
    const client = `
      const { Channel } = require(${JSON.stringify(libIndex)});
      new Channel(${JSON.stringify(name)}, 'client').open().then(() => console.log(process.pid));`;
    // The shell starts the client, then becomes `sleep`, which never waits for its children.
    const parent = spawn('sh', ['-c', `"$0" -e "$1" & exec sleep 60`, process.execPath, client], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const [line] = (await once(parent.stdout, 'data')) as [Buffer];
      const clientPid = Number(line.toString().trim());
      await reaches(server, 'connected');
      const lost = reaches(server, 'peer-lost');
      process.kill(clientPid, 'SIGKILL');
      await lost;
      expect(readFileSync(`/proc/${clientPid}/stat`, 'utf8'), 'the client must be a zombie').to.match(/\) Z /);
      await reaches(server, 'open');
    } finally {
      parent.kill('SIGKILL');
    }
  });

  it("should still notice a SIGKILLed client when the server's peer-watch thread cannot poll", async function () {
    this.timeout(60000);
    // A poll() that fails the first wait on an eventfd, i.e. the peer-watch thread's first
    // poll: the thread gives up, and the waker must go back to checking the peer itself.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'shmch-poll-shim-'));
    try {
      const shim = path.join(dir, 'poll-shim.so');
      const mark = path.join(dir, 'failed');
      writeFileSync(path.join(dir, 'poll-shim.c'), POLL_SHIM_SOURCE);
      const cc = spawnSync('cc', ['-shared', '-fPIC', '-o', shim, path.join(dir, 'poll-shim.c'), '-ldl'], {
        encoding: 'utf8',
      });
      if (cc.error !== undefined || cc.status !== 0) this.skip(); // no C compiler: nothing to inject with
      const name = uniqueName('watch-broken');
      // After any preload already there (the sanitizer runtime must stay first).
      const preload = [process.env.LD_PRELOAD, shim].filter((p) => p !== undefined && p !== '').join(' ');
      // One client: the peer-watch thread (poll on a pidfd) is a server of one client's.
      const server = await Peer.spawn({
        name,
        mode: 'server',
        options: { maxClients: 1 },
        env: { LD_PRELOAD: preload, POLL_SHIM_MARK: mark },
      });
      const client = await Peer.spawn({ name, mode: 'client' });
      await server.waitFor('state', (e) => e.state === 'connected');
      expect(existsSync(mark), 'the shim must have failed the watch thread').to.equal(true);
      const lost = server.waitFor('state', (e) => e.state === 'peer-lost');
      await client.kill('SIGKILL');
      await lost;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('should serve a new client after the previous one was SIGKILLed', async function () {
    const name = uniqueName('next-client');
    const server = await openChannel(name, 'server');
    server.requests$.subscribe((req) => req.respond(`served ${req.data.toString()}`));
    const first = await Peer.spawn({ name, mode: 'client' });
    await reaches(server, 'connected');
    await first.kill('SIGKILL');
    await reaches(server, 'open');
    const second = await Peer.spawn({ name, mode: 'client' });
    const result = await second.request({ text: 'again' });
    expect(result.error).to.equal(undefined);
    expect(result.values.map((v) => v.text)).to.deep.equal(['served again']);
  });

  it('should take back a slot left by a client that died between its attach and its pid store', async function () {
    const name = uniqueName('pidless');
    const server = await openChannel(name, 'server');
    server.requests$.subscribe((req) => req.respond(req.data));
    // What such a client leaves: the slot flagged taken, no pid to watch (PROTOCOL.md §5).
    const memory = SharedMemory.open(name);
    const seg = memory.buffer;
    seg.writeUInt32LE(seg.readUInt32LE(Layout.state) | 2, Layout.state);
    memory.close();
    // The server gives such a slot about 2 s once it looks: a client that finds the slot taken
    // knocks (rings the server), as nothing else would wake an idle server.
    const client = await openChannel(name, 'client', { connectTimeout: 15_000 });
    expect((await firstValueFrom(client.request('in'))).toString()).to.equal('in');
  });

  it('should let a client in right after its predecessor died, not refuse it as busy', async function () {
    const name = uniqueName('successor');
    const server = await openChannel(name, 'server');
    server.requests$.subscribe((req) => req.respond(req.data));
    for (let round = 0; round < 3; round++) {
      const before = await Peer.spawn({ name, mode: 'client' });
      await reaches(server, 'connected');
      await before.kill('SIGKILL');
      // At once: the server has not noticed the death yet, the slot is still marked taken.
      const after = await openChannel(name, 'client', { connectTimeout: 5000 });
      expect((await firstValueFrom(after.request('in'))).toString()).to.equal('in');
      await after.close();
      await reaches(server, 'open');
    }
  });

  it('should fail a server request with ERR_PEER_LOST at once while no client is connected', async function () {
    const name = uniqueName('no-client');
    const server = await openChannel(name, 'server');
    await expectRejectsCode(firstValueFrom(server.request('anyone?')), 'ERR_PEER_LOST');
    const client = await Peer.spawn({ name, mode: 'client' });
    await client.handle({ kind: 'upper' });
    expect((await firstValueFrom(server.request('now'))).toString()).to.equal('NOW');
    await client.kill('SIGKILL');
    await reaches(server, 'open');
    await expectRejectsCode(firstValueFrom(server.request('gone?')), 'ERR_PEER_LOST');
  });

  it('should make a client see a server restart as peer-lost, and reopen to the new server', async function () {
    const name = uniqueName('restart');
    const firstServer = await Peer.spawn({ name, mode: 'server' });
    await firstServer.handle({ kind: 'never' });
    const client = await openChannel(name, 'client');
    const pending = firstValueFrom(client.request('in flight'));
    await firstServer.handle({ kind: 'never' }); // a round trip: the request has reached it
    const lost = expectRejectsCode(pending, 'ERR_PEER_LOST');
    await firstServer.kill('SIGKILL');
    await lost;
    await reaches(client, 'closed');
    // The new server reclaims the dead one's segment.
    const secondServer = await Peer.spawn({ name, mode: 'server' });
    await secondServer.handle({ kind: 'upper' });
    const again = await openChannel(name, 'client');
    expect((await firstValueFrom(again.request('back'))).toString()).to.equal('BACK');
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`should unlink the segment of a server ended by ${signal}`, async function () {
      const name = uniqueName(signal.toLowerCase());
      const server = await Peer.spawn({ name, mode: 'server' });
      expect(shmExists(name)).to.equal(true);
      await server.kill(signal);
      expect(shmExists(name)).to.equal(false);
    });
  }

  it('should leave a SIGKILLed server segment that the next server reclaims', async function () {
    const name = uniqueName('stale');
    const dead = await Peer.spawn({ name, mode: 'server' });
    await dead.kill('SIGKILL');
    expect(shmExists(name)).to.equal(true);
    const server = await openChannel(name, 'server');
    expect(server.state).to.equal('open');
  });
});
