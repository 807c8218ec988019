import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import { delay, firstValueFrom, lastValueFrom, NEVER, of, take, toArray } from 'rxjs';

import { Channel, handleWith, SharedMemory, type Connection, type ShmChannelError } from '../lib/index';
import { recordClients } from './helpers/clients';
import { expectRejectsCode } from './helpers/expect-error';
import { shmEntries, uniqueName } from './helpers/names';
import { Peer } from './helpers/peer';
import { channel, openChannel, releaseAll, unlinkLater } from './helpers/resources';
import { Layout } from './helpers/segment-layout';
import { reaches, waitUntil } from './helpers/wait';

const SANITIZED = /asan/.test(process.env.LD_PRELOAD ?? '');

/** The /dev/shm entries of a server: its directory and its connections (`<name>~<slot>`). */
function entriesOf(name: string): string[] {
  const base = name.slice(1);
  return shmEntries(name).filter((e) => e === base || e.startsWith(`${base}~`));
}

function threadCount(): number {
  return readdirSync('/proc/self/task').length;
}

function fdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

function rssBytes(): number {
  const pages = Number(readFileSync('/proc/self/statm', 'utf8').split(' ')[1]);
  return pages * 4096;
}

/** Answers every request with `<client pid>:<request text>`, after `maxDelayMs` at most. */
function answerWithClientPid(server: Channel, maxDelayMs = 0): void {
  server.requests$
    .pipe(
      handleWith((data, request) => {
        const answer = `${request.client?.pid ?? 'none'}:${data.toString()}`;
        return maxDelayMs === 0 ? of(answer) : of(answer).pipe(delay(Math.floor(Math.random() * maxDelayMs)));
      }),
    )
    .subscribe();
}

async function spawnClients(name: string, count: number): Promise<Peer[]> {
  return Promise.all(Array.from({ length: count }, () => Peer.spawn({ name, mode: 'client' })));
}

describe('A server of many clients', function () {
  this.timeout(120_000);
  afterEach(releaseAll);

  it('serves several clients by default, each as a Connection of its own', async () => {
    const name = uniqueName('mc-default');
    const server = await openChannel(name, 'server');
    const clients = recordClients(server);
    const peers = await spawnClients(name, 3);
    await waitUntil(() => clients.length === 3);

    expect(new Set(clients.map((c) => c.id)).size).to.equal(3);
    expect(clients.map((c) => c.pid).sort()).to.deep.equal(peers.map((p) => p.pid).sort());
    expect(server.state).to.equal('connected');

    // Each client's notifications reach the server's stream and its own Connection's only.
    const perClient = clients.map((c) => lastValueFrom(c.notifications$.pipe(take(2), toArray())));
    const all = lastValueFrom(server.notifications$.pipe(take(6), toArray()));
    await Promise.all(peers.map((p, i) => p.notify({ text: `from ${p.pid}`, count: 2 }).then(() => i)));
    const got = await Promise.all(perClient);
    for (const [i, c] of clients.entries()) {
      expect(got[i].map((b) => b.toString())).to.deep.equal([`from ${c.pid}#0`, `from ${c.pid}#1`]);
    }
    expect((await all).length).to.equal(6);

    // Connection.request() asks that client alone.
    for (const p of peers) await p.handle({ kind: 'upper' });
    const answers = await Promise.all(clients.map((c) => lastValueFrom(c.request(`to ${c.pid}`))));
    expect(answers.map((a) => a.toString())).to.deep.equal(clients.map((c) => `TO ${c.pid}`));
  });

  it('answers 16 clients with 200 concurrent requests each, every answer to its own client and request', async () => {
    const name = uniqueName('mc-16x200');
    const server = await openChannel(name, 'server', { maxClients: 16 });
    answerWithClientPid(server);
    const peers = await spawnClients(name, 16);
    const results = await Promise.all(peers.map((p, i) => p.requestMany(200, `c${i}-`)));
    for (const [i, r] of results.entries()) {
      expect(r.errors.filter((e) => e !== undefined)).to.deep.equal([]);
      expect(r.answers).to.deep.equal(Array.from({ length: 200 }, (_, j) => `${peers[i].pid}:c${i}-${j}`));
    }
  });

  it('loses 3 clients SIGKILLed mid-flight while the other 13 finish untouched', async () => {
    const name = uniqueName('mc-kill');
    const server = await openChannel(name, 'server', { maxClients: 16 });
    const clients = recordClients(server);
    let victimRequests = 0;
    const cancelledFor = new Map<number, number>();
    server.requests$
      .pipe(
        handleWith((data, request) => {
          const text = data.toString();
          request.cancelled$.subscribe(() => {
            const pid = request.client?.pid ?? 0;
            cancelledFor.set(pid, (cancelledFor.get(pid) ?? 0) + 1);
          });
          // The victims' requests are still being handled when they die.
          if (text.startsWith('victim-')) {
            victimRequests += 1;
            return NEVER;
          }
          return of(`${request.client?.pid}:${text}`).pipe(delay(Math.floor(Math.random() * 40)));
        }),
      )
      .subscribe();
    const peers = await spawnClients(name, 16);
    await waitUntil(() => clients.length === 16);
    const victims = peers.slice(0, 3);
    const survivors = peers.slice(3);
    const victimConnections = clients.filter((c) => victims.some((v) => v.pid === c.pid));
    const ends = victimConnections.map((c) => c.closed);

    const running = survivors.map((p, i) => p.requestMany(200, `s${i}-`));
    for (const v of victims) void v.requestMany(200, 'victim-').catch(() => undefined);
    await waitUntil(() => victimRequests === 600);
    await Promise.all(victims.map((v) => v.kill('SIGKILL')));

    const reasons = (await Promise.all(ends)) as (ShmChannelError | undefined)[];
    expect(reasons.map((r) => r?.code)).to.deep.equal(['ERR_PEER_LOST', 'ERR_PEER_LOST', 'ERR_PEER_LOST']);
    const results = await Promise.all(running);
    for (const [i, r] of results.entries()) {
      expect(r.errors.filter((e) => e !== undefined)).to.deep.equal([]);
      expect(r.answers).to.deep.equal(Array.from({ length: 200 }, (_, j) => `${survivors[i].pid}:s${i}-${j}`));
    }
    // What the server was still handling for the dead clients was cancelled; nothing of the living.
    for (const s of survivors) expect(cancelledFor.get(s.pid) ?? 0).to.equal(0);
    expect(victims.map((v) => cancelledFor.get(v.pid) ?? 0)).to.deep.equal([200, 200, 200]);
    // Their slots and shared memory are free at once: the directory and 13 connections remain.
    await waitUntil(() => entriesOf(name).length === 1 + 13);
    for (const c of victimConnections) {
      expect(c.isOpen).to.equal(false);
      await expectRejectsCode(lastValueFrom(c.request('anyone?')), 'ERR_PEER_LOST');
    }
  });

  it('keeps serving the others while one client stops reading, and drops it from a broadcast it cannot take', async () => {
    const name = uniqueName('mc-slow');
    // The queue's bound is at least maxMessageSize: keep both small.
    const server = await openChannel(name, 'server', {
      ringCapacity: 64 * 1024,
      maxMessageSize: 128 * 1024,
      maxQueuedBytes: 256 * 1024,
      pollWindowUs: 0,
    });
    const clients = recordClients(server);
    answerWithClientPid(server);
    const slow = await Peer.spawn({ name, mode: 'client' });
    const fast = await Peer.spawn({ name, mode: 'client' });
    await waitUntil(() => clients.length === 2);
    const slowConnection = clients.find((c) => c.pid === slow.pid) as Connection;
    const fastConnection = clients.find((c) => c.pid === fast.pid) as Connection;

    process.kill(slow.pid, 'SIGSTOP');
    try {
      // Fill the stopped client's ring and then its queue: only its own.
      const chunk = Buffer.alloc(16 * 1024, 7);
      while (slowConnection.notify(chunk)) {
        /* until part of it waits in the queue */
      }
      expect(slowConnection.queuedBytes).to.be.greaterThan(0);
      expect(fastConnection.queuedBytes).to.equal(0);

      const answered = await fast.requestMany(200, 'f-');
      expect(answered.errors.filter((e) => e !== undefined)).to.deep.equal([]);
      expect(answered.answers[199]).to.equal(`${fast.pid}:f-199`);

      // Broadcasts the stopped client cannot take within its bound drop it, and reach the other.
      const reasons: string[] = [];
      server.clientErrors$.subscribe((err) => reasons.push(err.code));
      const big = Buffer.alloc(100 * 1024, 9);
      let sent = 0;
      while (reasons.length === 0 && sent < 10) {
        server.notify(big);
        sent += 1;
      }
      expect(reasons).to.deep.equal(['ERR_QUEUE_FULL']);
      expect((await slowConnection.closed)?.code).to.equal('ERR_QUEUE_FULL');
      const fastGot = await fast.collect(sent);
      expect(fastGot.map((m) => (m as { length: number }).length)).to.deep.equal(new Array(sent).fill(big.length));
    } finally {
      process.kill(slow.pid, 'SIGCONT');
    }
    const told = await slow.waitFor('stream-error');
    expect(told.error.message).to.match(/dropped this client/);
    expect(fastConnection.isOpen).to.equal(true);
  });

  it('broadcasts each notification to every connected client, in order', async () => {
    const name = uniqueName('mc-broadcast');
    const server = await openChannel(name, 'server');
    const clients = recordClients(server);
    const peers = await spawnClients(name, 4);
    await waitUntil(() => clients.length === 4);
    const texts = Array.from({ length: 300 }, (_, i) => `n${i}`);
    const collected = peers.map((p) => p.collect(texts.length));
    for (const t of texts) server.notify(t);
    await server.drained();
    for (const got of await Promise.all(collected)) {
      expect(got.map((s) => (s as { text?: string }).text)).to.deep.equal(texts);
    }
  });

  it('refuses client maxClients + 1 with ERR_CHANNEL_BUSY, and lets one in once a slot is free', async () => {
    const name = uniqueName('mc-busy');
    const server = await openChannel(name, 'server', { maxClients: 3 });
    const clients = recordClients(server);
    const inside = [];
    for (let i = 0; i < 3; i++) inside.push(await openChannel(name, 'client'));
    const refused = await expectRejectsCode(channel(name, 'client').open(), 'ERR_CHANNEL_BUSY');
    expect(refused.ownerPid).to.equal(process.pid);

    await inside[0].close();
    // The slot is free once the server ended that connection: its segment is gone.
    await waitUntil(() => entriesOf(name).length === 1 + 2);
    const late = channel(name, 'client', { connectTimeout: 5000 });
    await late.open();
    await waitUntil(() => clients.length === 4);
    expect(server.state).to.equal('connected');
  });

  it('sends server.request() to its one client, and with several says to use Connection.request()', async () => {
    const name = uniqueName('mc-request');
    const server = await openChannel(name, 'server');
    const clients = recordClients(server);
    const first = await Peer.spawn({ name, mode: 'client' });
    await first.handle({ kind: 'upper' });
    await waitUntil(() => clients.length === 1);
    expect((await lastValueFrom(server.request('one'))).toString()).to.equal('ONE');

    const second = await Peer.spawn({ name, mode: 'client' });
    await second.handle({ kind: 'upper' });
    await waitUntil(() => clients.length === 2);
    const err = await expectRejectsCode(lastValueFrom(server.request('which?')), 'ERR_AMBIGUOUS_CLIENT');
    expect(err.message).to.match(/Connection\.request\(\)/);
    // Cold: an unsubscribed request() reports nothing and sends nothing.
    server.request('never sent');
    expect((await second.stats()).arrivals.length).to.equal(0);

    await first.stop();
    await waitUntil(() => clients.filter((c) => c.isOpen).length === 1);
    expect((await lastValueFrom(server.request('two'))).toString()).to.equal('TWO');
  });

  it('drops a client that breaks the protocol while the others go on', async () => {
    const name = uniqueName('mc-hostile');
    const server = await openChannel(name, 'server', { ringCapacity: 64 * 1024, pollWindowUs: 0 });
    const clients = recordClients(server);
    answerWithClientPid(server);
    const hostile = await Peer.spawn({ name, mode: 'client' });
    await waitUntil(() => clients.length === 1);
    const honest = await Peer.spawn({ name, mode: 'client' });
    await waitUntil(() => clients.length === 2);

    // The first client has slot 0: write an unaligned head into its own ring to the server.
    const memory = SharedMemory.open(`${name}~0`);
    try {
      const seg = memory.buffer;
      const tail = seg.readUInt32LE(Layout.c2s + Layout.tail);
      seg.writeUInt32LE((tail + 13) >>> 0, Layout.c2s + Layout.head);
    } finally {
      memory.close();
    }
    const reported = firstValueFrom(server.clientErrors$);
    const told = hostile.waitFor('stream-error');
    // The honest client's request wakes the server, which looks at every connection.
    expect(await honest.ask('still there?')).to.equal(`${honest.pid}:still there?`);
    expect((await reported).code).to.equal('ERR_PROTOCOL');
    expect((await told).error.message).to.match(/dropped this client/);
    const hostileConnection = clients.find((c) => c.pid === hostile.pid) as Connection;
    expect((await hostileConnection.closed)?.code).to.equal('ERR_PROTOCOL');
    expect(await honest.ask('and now?')).to.equal(`${honest.pid}:and now?`);
    expect(server.isOpen).to.equal(true);
  });

  it('lets a new server reclaim the name, directory and connections, after a SIGKILL with clients connected', async () => {
    const name = uniqueName('mc-reclaim');
    const old = await Peer.spawn({ name, mode: 'server' });
    await old.handle({ kind: 'echo' });
    const inside = [];
    for (let i = 0; i < 3; i++) inside.push(await openChannel(name, 'client'));
    expect(entriesOf(name).length).to.equal(4);
    unlinkLater(name);
    await old.kill('SIGKILL');
    await Promise.all(inside.map((c) => reaches(c, 'closed')));

    const server = await openChannel(name, 'server');
    // The dead server's connections went with its directory.
    expect(entriesOf(name)).to.deep.equal([name.slice(1)]);
    server.requests$.pipe(handleWith((data) => of(data))).subscribe();
    const client = await openChannel(name, 'client');
    expect((await lastValueFrom(client.request('again'))).toString()).to.equal('again');
  });

  it('keeps answering its other clients while one churns connects as fast as it can', async () => {
    const name = uniqueName('mc-churn-others');
    const server = await openChannel(name, 'server', { maxClients: 4, ringCapacity: 16 * 1024 });
    answerWithClientPid(server);
    const steady = await Peer.spawn({ name, mode: 'client' });
    let churning = true;
    let cycles = 0;
    const churn = (async () => {
      while (churning) {
        const client = new Channel(name, 'client');
        await client.open();
        await client.close();
        cycles += 1;
      }
    })();
    try {
      for (let round = 0; round < 3; round++) {
        const r = await steady.requestMany(200, `r${round}-`);
        expect(r.errors.filter((e) => e !== undefined)).to.deep.equal([]);
        expect(r.answers[199]).to.equal(`${steady.pid}:r${round}-199`);
      }
    } finally {
      churning = false;
      await churn;
    }
    expect(cycles).to.be.greaterThan(0);
    await waitUntil(() => entriesOf(name).length === 1 + 1);
  });

  it('returns threads, descriptors, /dev/shm entries and memory to where they were after 1000 connects', async () => {
    const name = uniqueName('mc-churn');
    const server = await openChannel(name, 'server', { ringCapacity: 16 * 1024 });
    const cycle = async () => {
      const client = new Channel(name, 'client');
      await client.open();
      await client.close();
    };
    for (let i = 0; i < 20; i++) await cycle();
    await waitUntil(() => entriesOf(name).length === 1);
    global.gc?.();
    const before = { threads: threadCount(), fds: fdCount(), rss: rssBytes() };

    for (let i = 0; i < 1000; i++) await cycle();
    await waitUntil(() => entriesOf(name).length === 1);
    global.gc?.();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(threadCount()).to.equal(before.threads);
    expect(fdCount()).to.equal(before.fds);
    // AddressSanitizer (npm run test:sanitize) keeps freed memory in its quarantine (256 MiB).
    if (!SANITIZED) expect(rssBytes() - before.rss).to.be.lessThan(32 * 1024 * 1024);
    expect(server.isOpen).to.equal(true);
  });

  it('costs threads per server, not per client', async () => {
    const name = uniqueName('mc-threads');
    const before = threadCount();
    const server = await openChannel(name, 'server');
    const withServer = threadCount();
    const clients = recordClients(server);
    const peers = await spawnClients(name, 8);
    await waitUntil(() => clients.length === 8);
    expect(threadCount()).to.equal(withServer);
    expect(withServer - before).to.be.at.most(2);
    await Promise.all(peers.map((p) => p.stop()));
    await waitUntil(() => entriesOf(name).length === 1);
  });

  it('ends one client with Connection.close(): it reads what was queued, then leaves; the others stay', async () => {
    const name = uniqueName('mc-close-one');
    const server = await openChannel(name, 'server');
    const clients = recordClients(server);
    answerWithClientPid(server);
    const ended = await Peer.spawn({ name, mode: 'client' });
    const kept = await Peer.spawn({ name, mode: 'client' });
    await waitUntil(() => clients.length === 2);
    const connection = clients.find((c) => c.pid === ended.pid) as Connection;

    const heard = ended.collect(1);
    connection.notify('last words');
    await connection.close();
    expect((await heard).map((m) => (m as { text?: string }).text)).to.deep.equal(['last words']);
    await ended.waitFor('state', (e) => e.state === 'closed');
    expect((await connection.closed)?.code).to.equal('ERR_CHANNEL_CLOSED');
    expect(connection.isOpen).to.equal(false);
    expect(() => connection.notify('too late'))
      .to.throw()
      .with.property('code', 'ERR_CHANNEL_CLOSED');
    await waitUntil(() => entriesOf(name).length === 1 + 1);
    expect(await kept.ask('still served?')).to.equal(`${kept.pid}:still served?`);
    expect(server.state).to.equal('connected');
  });

  it('refuses a name that leaves no room for its connections (<name>~<slot>)', () => {
    const long = `/${'n'.repeat(251)}`;
    expect(() => new Channel(long, 'server'))
      .to.throw()
      .with.property('code', 'ERR_INVALID_NAME');
    expect(new Channel(long.slice(0, 251), 'server', { maxClients: 2 }).name).to.have.length(251);
    // A server of one client has no connections to name: the whole 255 bytes are its.
    expect(new Channel(`/${'n'.repeat(254)}`, 'server', { maxClients: 1 }).name).to.have.length(255);
  });

  it('keeps one-client behaviour with maxClients: 1', async () => {
    const name = uniqueName('mc-one');
    const server = await openChannel(name, 'server', { maxClients: 1 });
    const clients = recordClients(server);
    await openChannel(name, 'client');
    await expectRejectsCode(channel(name, 'client').open(), 'ERR_CHANNEL_BUSY');
    await reaches(server, 'connected');
    expect(entriesOf(name)).to.deep.equal([name.slice(1)]);
    expect(clients).to.deep.equal([]);
  });

  it('validates maxClients', () => {
    for (const bad of [0, 257, 1.5, -1, Number.NaN]) {
      expect(() => new Channel(uniqueName('mc-bad'), 'server', { maxClients: bad }))
        .to.throw()
        .with.property('code', 'ERR_INVALID_ARG_VALUE');
    }
  });
});
