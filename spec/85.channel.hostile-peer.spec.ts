import { expect } from 'chai';
import { firstValueFrom, lastValueFrom } from 'rxjs';

import { SharedMemory, type Channel, type ShmChannelError } from '../lib/index';
import { expectRejectsCode, expectThrowsCode } from './helpers/expect-error';
import { shmExists, uniqueName } from './helpers/names';
import { Peer } from './helpers/peer';
import { openChannel, releaseAll } from './helpers/resources';
import { Layout, publishUnknownKindFrame, ringSegment, seededRandom, writeFrameHeader } from './helpers/segment-layout';
import { reaches, waitUntil } from './helpers/wait';

const CAPACITY = 64 * 1024;

/** A server here, an idle client peer, and the attacker's own mapping of their segment. */
async function victimServer(
  label: string,
): Promise<{ server: Channel; peer: Peer; seg: Buffer; memory: SharedMemory }> {
  const name = uniqueName(label);
  // One client: the attacker writes into the server's segment by name.
  const server = await openChannel(name, 'server', { ringCapacity: CAPACITY, pollWindowUs: 0, maxClients: 1 });
  const peer = await Peer.spawn({ name, mode: 'client' });
  await reaches(server, 'connected');
  const memory = SharedMemory.open(name);
  return { server, peer, seg: memory.buffer, memory };
}

/**
 * What a server must do about a client that broke the protocol: report it on clientErrors$,
 * tell the client (which leaves with ERR_PROTOCOL), stay open, and serve the next client.
 * Resolves with the server's error.
 */
async function expectClientDropped(server: Channel, client: Peer, attack: () => void): Promise<ShmChannelError> {
  const reported = firstValueFrom(server.clientErrors$);
  const told = client.waitFor('stream-error');
  attack();
  ringSegment(server.name);
  const err = await reported;
  expect(err.code, err.message).to.equal('ERR_PROTOCOL');
  const clientSide = await told;
  expect(clientSide.error.code).to.equal('ERR_PROTOCOL');
  expect(clientSide.error.message).to.match(/dropped this client/);
  await reaches(server, 'open');
  expect(server.isOpen).to.equal(true);
  const next = await Peer.spawn({ name: server.name, mode: 'client' });
  const got = firstValueFrom(server.notifications$);
  await next.notify({ text: 'the next client' });
  expect((await got).toString()).to.equal('the next client');
  return err;
}

function u32(seg: Buffer, at: number): number {
  return seg.readUInt32LE(at);
}

describe('A hostile peer writing into the segment', function () {
  afterEach(releaseAll);

  const inboundAttacks: Record<string, (seg: Buffer) => void> = {
    'a head that claims more bytes than the ring holds': (seg) => {
      const tail = u32(seg, Layout.c2s + Layout.tail);
      seg.writeUInt32LE((tail + CAPACITY + 8) >>> 0, Layout.c2s + Layout.head);
    },
    'a head that is not 8-byte aligned': (seg) => {
      const tail = u32(seg, Layout.c2s + Layout.tail);
      seg.writeUInt32LE((tail + 13) >>> 0, Layout.c2s + Layout.head);
    },
    'a frame of an unknown kind': (seg) => publishUnknownKindFrame(seg, 'c2s', CAPACITY),
    'a frame longer than the ring': (seg) => {
      const tail = u32(seg, Layout.c2s + Layout.tail);
      writeFrameHeader(seg, 'c2s', CAPACITY, tail, { length: CAPACITY * 2, kind: 3 });
      seg.writeUInt32LE((tail + 32) >>> 0, Layout.c2s + Layout.head);
    },
    'a torn frame (header says 4 KiB, head says 32 bytes)': (seg) => {
      const tail = u32(seg, Layout.c2s + Layout.tail);
      writeFrameHeader(seg, 'c2s', CAPACITY, tail, { length: 4096, kind: 3 });
      seg.writeUInt32LE((tail + 32) >>> 0, Layout.c2s + Layout.head);
    },
    'a message whose total exceeds maxMessageSize': (seg) => {
      const tail = u32(seg, Layout.c2s + Layout.tail);
      writeFrameHeader(seg, 'c2s', CAPACITY, tail, { length: 8, kind: 3, total: 0xfffffff0 });
      seg.writeUInt32LE((tail + 24) >>> 0, Layout.c2s + Layout.head);
    },
    'a fragment that does not continue its message': (seg) => {
      const tail = u32(seg, Layout.c2s + Layout.tail);
      writeFrameHeader(seg, 'c2s', CAPACITY, tail, { length: 8, kind: 3, total: 64 });
      writeFrameHeader(seg, 'c2s', CAPACITY, tail + 24, { length: 8, kind: 4, id: 9, total: 64 });
      seg.writeUInt32LE((tail + 48) >>> 0, Layout.c2s + Layout.head);
    },
    'frames after a goodbye': (seg) => {
      const tail = u32(seg, Layout.c2s + Layout.tail);
      writeFrameHeader(seg, 'c2s', CAPACITY, tail, { length: 0, kind: 2 });
      writeFrameHeader(seg, 'c2s', CAPACITY, tail + 16, { length: 8, kind: 3, total: 64 });
      writeFrameHeader(seg, 'c2s', CAPACITY, tail + 40, { length: 16, kind: 3, total: 64 });
      seg.writeUInt32LE((tail + 72) >>> 0, Layout.c2s + Layout.head);
    },
    'nonzero reserved flags': (seg) => {
      const tail = u32(seg, Layout.c2s + Layout.tail);
      writeFrameHeader(seg, 'c2s', CAPACITY, tail, { length: 0, kind: 3, flags: 0x80 });
      seg.writeUInt32LE((tail + 16) >>> 0, Layout.c2s + Layout.head);
    },
  };

  for (const [what, attack] of Object.entries(inboundAttacks)) {
    it(`should drop the client with ERR_PROTOCOL and serve the next one on ${what}`, async function () {
      const { server, peer, seg, memory } = await victimServer('inbound');
      await expectClientDropped(server, peer, () => attack(seg));
      memory.close();
    });
  }

  it('should fail a client with ERR_PROTOCOL, and close it, when its server writes an invalid frame', async function () {
    const name = uniqueName('bad-server');
    // One client: the attacker writes into the server's segment by name.
    const server = await Peer.spawn({ name, mode: 'server', options: { ringCapacity: CAPACITY, maxClients: 1 } });
    const client = await openChannel(name, 'client');
    const memory = SharedMemory.open(name);
    const seg = memory.buffer;
    const failed = lastValueFrom(client.notifications$).then(
      () => expect.fail('notifications$ completed instead of failing'),
      (err: ShmChannelError) => err,
    );
    publishUnknownKindFrame(seg, 's2c', CAPACITY);
    ringSegment(name);
    const error = await failed;
    expect(error.code).to.equal('ERR_PROTOCOL');
    await reaches(client, 'closed');
    // A subscriber that comes after the failure learns it too.
    await lastValueFrom(client.requests$).then(
      () => expect.fail('requests$ completed instead of failing'),
      (err: unknown) => expect(err).to.equal(error),
    );
    expect(server.isRunning).to.equal(true);
    memory.close();
  });

  // The rest of a fragmented message, and all of one of 64 KiB or more, is read straight into
  // it (shmch_read_continuation): fragments that arrive after its start was read get the same
  // checks.
  const lateFragments: Record<string, { total: number; length: number; id: number }> = {
    'another message': { total: 64, length: 8, id: 9 },
    'more bytes than the message lacks': { total: 64, length: 64, id: 0 },
    'another message, within a 128 KiB one': { total: 128 * 1024, length: 8, id: 9 },
  };
  for (const [what, { total, ...fragment }] of Object.entries(lateFragments)) {
    it(`should drop the client with ERR_PROTOCOL on a fragment of ${what}, arriving after the message's start was read`, async function () {
      const { server, peer, seg, memory } = await victimServer('late-fragment');
      const tail = u32(seg, Layout.c2s + Layout.tail);
      writeFrameHeader(seg, 'c2s', CAPACITY, tail, { length: 8, kind: 3, id: 0, total });
      seg.writeUInt32LE((tail + 24) >>> 0, Layout.c2s + Layout.head);
      ringSegment(server.name);
      await waitUntil(() => u32(seg, Layout.c2s + Layout.tail) === (tail + 24) >>> 0);
      await expectClientDropped(server, peer, () => {
        writeFrameHeader(seg, 'c2s', CAPACITY, tail + 24, { kind: 3, total, ...fragment });
        seg.writeUInt32LE((tail + 24 + 16 + fragment.length) >>> 0, Layout.c2s + Layout.head);
      });
      memory.close();
    });
  }

  it('should drop the client with ERR_PROTOCOL on a frame that arrives after a goodbye already read', async function () {
    const { server, peer, seg, memory } = await victimServer('after-bye');
    const tail = u32(seg, Layout.c2s + Layout.tail);
    writeFrameHeader(seg, 'c2s', CAPACITY, tail, { length: 0, kind: 2 });
    seg.writeUInt32LE((tail + 16) >>> 0, Layout.c2s + Layout.head);
    ringSegment(server.name);
    await waitUntil(() => u32(seg, Layout.c2s + Layout.tail) === (tail + 16) >>> 0);
    const err = await expectClientDropped(server, peer, () => {
      writeFrameHeader(seg, 'c2s', CAPACITY, tail + 16, { length: 8, kind: 3 });
      seg.writeUInt32LE((tail + 40) >>> 0, Layout.c2s + Layout.head);
    });
    expect(err.message).to.match(/goodbye/);
    memory.close();
  });

  it('should fail pending requests with ERR_PROTOCOL when the inbound ring is corrupted', async function () {
    const { server, peer, seg, memory } = await victimServer('pending');
    await peer.handle({ kind: 'never' });
    const pending = firstValueFrom(server.request('waits'));
    inboundAttacks['a frame of an unknown kind'](seg);
    ringSegment(server.name);
    await expectRejectsCode(pending, 'ERR_PROTOCOL');
    memory.close();
  });

  it('should deliver none of the frames read in the same batch after a handler ran into a bad client', async function () {
    const { server, peer, seg, memory } = await victimServer('batch');
    let dropped = false;
    let deliveredAfterDrop = 0;
    server.clientErrors$.subscribe(() => (dropped = true));
    server.notifications$.subscribe(() => {
      if (dropped) {
        deliveredAfterDrop++;
        return;
      }
      // The first one answers until its write finds the outbound ring corrupted: the drop.
      expectThrowsCode(() => {
        for (;;) server.notify(Buffer.alloc(1024));
      }, 'ERR_PROTOCOL');
    });
    // Five notifications land in the ring while this event loop is held, so that the server
    // reads them in one batch; then their sender stops, and its tail is corrupted.
    const tailBefore = u32(seg, Layout.c2s + Layout.tail);
    void peer.notify({ text: 'one of five', count: 5 });
    const until = Date.now() + 10_000;
    while ((u32(seg, Layout.c2s + Layout.head) - tailBefore) >>> 0 < 5 * 32 && Date.now() < until) {
      // Held: the server cannot read before all five are in.
    }
    process.kill(peer.pid, 'SIGSTOP');
    const head = u32(seg, Layout.s2c + Layout.head);
    seg.writeUInt32LE((head + 0x80000000) >>> 0, Layout.s2c + Layout.tail);

    await waitUntil(() => dropped);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(deliveredAfterDrop).to.equal(0);
    process.kill(peer.pid, 'SIGCONT');
    await reaches(server, 'open');
    memory.close();
  });

  it('should take the slot back at once when the bad bytes came with no client attached', async function () {
    const name = uniqueName('no-client');
    // One client: the attacker writes into the server's segment by name.
    const server = await openChannel(name, 'server', { ringCapacity: CAPACITY, maxClients: 1 });
    const memory = SharedMemory.open(name);
    const seg = memory.buffer;
    const reported = firstValueFrom(server.clientErrors$);
    inboundAttacks['a frame of an unknown kind'](seg);
    ringSegment(name);
    expect((await reported).code).to.equal('ERR_PROTOCOL');
    await reaches(server, 'open');
    // The next client is served, and is not taken for the dropped one.
    const client = await Peer.spawn({ name, mode: 'client' });
    await reaches(server, 'connected');
    const got = firstValueFrom(server.notifications$);
    await client.notify({ text: 'a new client' });
    expect((await got).toString()).to.equal('a new client');
    expect(client.events('stream-error')).to.deep.equal([]);
    memory.close();
  });

  it('should warn with SHMCHANNEL_CLIENT_DROPPED when nobody listens to clientErrors$', async function () {
    const { server, seg, memory } = await victimServer('unheard');
    const warned = new Promise<Error>((resolve) => {
      const onWarning = (warning: Error & { code?: string }): void => {
        if (warning.code !== 'SHMCHANNEL_CLIENT_DROPPED') return;
        process.off('warning', onWarning);
        resolve(warning);
      };
      process.on('warning', onWarning);
    });
    inboundAttacks['a frame of an unknown kind'](seg);
    ringSegment(server.name);
    expect((await warned).message).to.match(/dropped its client/);
    memory.close();
  });

  it('should refuse to write, with ERR_PROTOCOL, when the peer moves our outbound tail past our head', async function () {
    const { server, peer, seg, memory } = await victimServer('outbound');
    // Stop the real reader, or its honest tail would overwrite the attack.
    process.kill(peer.pid, 'SIGSTOP');
    const head = u32(seg, Layout.s2c + Layout.head);
    // A tail half the counter space ahead of our head: no amount of writing makes it plausible.
    seg.writeUInt32LE((head + 0x80000000) >>> 0, Layout.s2c + Layout.tail);
    // The writer trusts the tail it validated last until a frame does not fit by it (which
    // is safe: an older tail never lets it overwrite unread data); then it must notice.
    let written = 0;
    const err = expectThrowsCode(() => {
      for (;;) {
        server.notify(Buffer.alloc(1024));
        written += 1024;
      }
    }, 'ERR_PROTOCOL');
    // notify() batches small messages per tick (at most half the ring) before writing them.
    expect(written, `${written} bytes accepted past the corruption`).to.be.at.most(CAPACITY + CAPACITY / 2);
    expect(err.message).to.match(/corrupted|protocol/);
    // The client was dropped: nothing more is sent to it, and it leaves once it runs again.
    expectThrowsCode(() => server.notify(Buffer.alloc(8)), 'ERR_PEER_LOST');
    const left = reaches(server, 'open');
    process.kill(peer.pid, 'SIGCONT');
    await left;
    expect(server.isOpen).to.equal(true);
    memory.close();
  });

  it('should keep working when header fields it read at open are rewritten later', async function () {
    const { server, peer, seg, memory } = await victimServer('header');
    seg.writeUInt32LE(0xffffffff, Layout.ringCapacity);
    seg.writeUInt32LE(1, Layout.maxMessageSize);
    seg.writeBigUInt64LE(0n, Layout.magic);
    const got = firstValueFrom(server.notifications$);
    await peer.notify({ text: 'still here' });
    expect((await got).toString()).to.equal('still here');
    memory.close();
  });

  it('should refuse a client for a segment whose header is not a shmchannel header', async function () {
    const name = uniqueName('garbage');
    const memory = SharedMemory.create(name, 512 + 2 * 4096);
    memory.buffer.fill(0xab);
    try {
      const err = await expectRejectsCode(
        openChannel(name, 'client', { connectTimeout: 0 }),
        'ERR_INCOMPATIBLE_SEGMENT',
      );
      expect(err.message).to.match(/magic|shmchannel/);
    } finally {
      memory.close();
      memory.unlink();
    }
  });

  it('should survive random mutations under live traffic: no crash, no hang, only ERR_PROTOCOL', async function () {
    this.timeout(120_000);
    const rounds = Number(process.env.HOSTILE_ROUNDS ?? 6);
    const baseSeed = Number(process.env.HOSTILE_SEED ?? Date.now() % 1_000_000);
    let mutations = 0;
    let protocolErrors = 0;
    for (let round = 0; round < rounds; round++) {
      const seed = baseSeed + round;
      const random = seededRandom(seed);
      const name = uniqueName('fuzz');
      // One client: the fuzzer writes into the server's segment by name.
      const server = await Peer.spawn({ name, mode: 'server', options: { ringCapacity: 4096, maxClients: 1 } });
      await server.handle({ kind: 'ticks', ms: 1 });
      const client = await Peer.spawn({ name, mode: 'client' });
      const memory = SharedMemory.open(name);
      const seg = memory.buffer;
      void client.request({ text: 'tick' }).catch(() => undefined);
      const attackUntil = Date.now() + 500;
      while (Date.now() < attackUntil) {
        // Single frames, fragmented messages, and one read straight into its buffer (64 KiB+).
        await client.notify({ sizes: [200, 3000, 200, 70 * 1024, 200], seed }).catch(() => undefined);
        for (let i = 0; i < 8; i++) {
          const at = random() < 0.5 ? Math.floor(random() * 512) : Math.floor(random() * seg.length);
          seg[at] = Math.floor(random() * 256);
          mutations++;
        }
      }
      memory.close();
      // Both victims must still run and answer: a crash or a spinning event loop fails here.
      for (const victim of [server, client]) {
        expect(victim.isRunning, `victim of seed ${seed} died`).to.equal(true);
        await victim.stats();
        for (const e of victim.events('stream-error')) {
          expect(['ERR_PROTOCOL', 'ERR_PEER_LOST', 'ERR_CHANNEL_CLOSED'], `seed ${seed}`).to.include(e.error.code);
          if (e.error.code === 'ERR_PROTOCOL') protocolErrors++;
        }
      }
      await server.stop();
      await client.stop();
      if (shmExists(name)) SharedMemory.unlink(name);
    }
    console.log(
      `      hostile fuzz: ${rounds} rounds from seed ${baseSeed} (HOSTILE_SEED replays), ${mutations} mutations, ${protocolErrors} ERR_PROTOCOL reports, no crash, no hang`,
    );
    expect(mutations).to.be.above(0);
  });
});
