// Zero-copy loans across processes on real segments: loan(), waitForLoan(), release(), the
// borrow option, and what happens to loans and views when a peer dies or lies.
import { expect } from 'chai';
import { firstValueFrom, lastValueFrom, toArray } from 'rxjs';

import { SharedMemory, type Channel, type LoanedBuffer, type ShmChannelError } from '../lib/index';
import { binding } from '../lib/load-addon';
import { FrameKind } from '../lib/protocol';
import { expectThrowsCode } from './helpers/expect-error';
import { shmEntries, uniqueName } from './helpers/names';
import { patternBuffer, sha256, type Summary } from './helpers/payload';
import { Peer, type PeerConfig } from './helpers/peer';
import type { NotifyResult, RequestResult } from './helpers/peer-messages';
import { channel, openChannel, releaseAll } from './helpers/resources';
import {
  Layout,
  POOL_BLOCK,
  poolData,
  readRingBytes,
  releaseRing,
  releaseSlots,
  ringSegment,
  writeFrameHeader,
  writeRingBytes,
} from './helpers/segment-layout';
import { reaches, waitUntil } from './helpers/wait';

const POOL = 16 * POOL_BLOCK;
const LOANED = 1;

function loanNotify(peer: Peer, spec: { size: number; seed?: number; count?: number; slice?: [number, number] }) {
  return peer.command<NotifyResult>({ cmd: 'loan-notify', ...spec });
}

function expectSummary(got: Summary, expected: Buffer): void {
  expect(got.length).to.equal(expected.length);
  expect(got.sha256).to.equal(sha256(expected));
}

/** Asserts every byte of `got` is `expected` (one assertion, not one per byte). */
function expectBytes(got: Buffer, expected: Buffer): void {
  expect(got.length).to.equal(expected.length);
  expect(Buffer.compare(got, expected)).to.equal(0, 'bytes differ');
}

/** A server here with a pool, and a client peer (a process, or a worker thread). */
async function serverWithPeer(
  label: string,
  options: Parameters<typeof openChannel>[2] = {},
  peerOptions: PeerConfig['options'] = { borrow: true },
  thread = false,
): Promise<{ server: Channel; peer: Peer; name: string }> {
  const name = uniqueName(label);
  const server = await openChannel(name, 'server', { poolSize: POOL, borrow: true, ...options });
  const peer = await Peer.spawn({ name, mode: 'client', options: peerOptions, thread });
  await reaches(server, 'connected');
  return { server, peer, name };
}

/** Loans `data.length` bytes of `ch` and copies `data` in. */
function loanOf(ch: Channel, data: Buffer): Buffer {
  const loan = ch.loan(data.length);
  data.copy(loan);
  return loan;
}

describe('Channel zero-copy loans', function () {
  afterEach(async function () {
    await releaseAll();
    // Loans, views, dead and dropped peers: no segment of this run may be left behind.
    expect(shmEntries()).to.deep.equal([]);
  });

  describe('loan -> send -> borrow -> release', function () {
    it('should carry notifications by reference both ways, as views with borrow, detached once released', async function () {
      const { server, peer } = await serverWithPeer('zc-notify');
      // Server to client: the client (borrow) checks every byte through its summary.
      const outbound = patternBuffer(10_000, 1);
      const loan = loanOf(server, outbound);
      server.notify(loan);
      expect(loan.length, 'the sender view is detached at once').to.equal(0);
      const [got] = await peer.collect(1);
      expectSummary(got, outbound);
      // Client to server.
      const arriving = firstValueFrom(server.notifications$);
      const sent = await loanNotify(peer, { size: 9000, seed: 2 });
      expect(sent.lengthsAfter).to.deep.equal([0]);
      const view = await arriving;
      expectBytes(view, patternBuffer(9000, 2));
      server.release(view);
      expect(view.length, 'a released view is detached').to.equal(0);
      expect(() => server.release(view), 'release is idempotent').not.to.throw();
    });

    it('should hand out a view of the peer pool itself, and recycle the pool once messages are released', async function () {
      // One client: its pool is in the server's segment, read here by name.
      const { server, peer, name } = await serverWithPeer('zc-view', { maxClients: 1 });
      const memory = SharedMemory.open(name);
      try {
        const arriving = firstValueFrom(server.notifications$);
        await loanNotify(peer, { size: 5000, seed: 3 });
        const view = await arriving;
        // The bytes live in the client's pool: a write there shows through the view.
        const pool = memory.buffer.subarray(poolData('c2s', 1 << 20, POOL), poolData('c2s', 1 << 20, POOL) + POOL);
        const at = pool.indexOf(view.subarray(0, 64));
        expect(at, 'the message is in the client pool').to.be.at.least(0);
        pool[at + 10] ^= 0xff;
        expect(view[10]).to.equal(pool[at + 10]);
        server.release(view);
        expect(view.length).to.equal(0);
        // 12 messages of 3 blocks through a pool of 16 blocks: only if each release frees its blocks.
        for (let round = 0; round < 12; round++) {
          const next = firstValueFrom(server.notifications$);
          await loanNotify(peer, { size: 3 * POOL_BLOCK, seed: 100 + round });
          const message = await next;
          expectBytes(message, patternBuffer(3 * POOL_BLOCK, 100 + round));
          server.release(message);
        }
      } finally {
        memory.close();
      }
    });

    it('should answer a client request with a streamed response of loans (client loans to server, server loans back)', async function () {
      const { server, peer } = await serverWithPeer('zc-stream');
      const seen: { data: Buffer; length: number }[] = [];
      server.requests$.subscribe((request) => {
        const data = Buffer.from(request.data);
        seen.push({ data, length: request.data.length });
        for (let i = 0; i < 3; i++) {
          const value = server.loan(data.length + 1);
          value[0] = i;
          data.copy(value, 1);
          request.next(value);
          expect(value.length, 'detached by next()').to.equal(0);
        }
        server.release(request.data);
        expect(request.data.length).to.equal(0);
        request.complete();
      });
      const data = patternBuffer(20_000, 4);
      const result = await peer.command<RequestResult>({ cmd: 'loan-request', size: 20_000, seed: 4 });
      expect(result.error).to.equal(undefined);
      expectBytes(seen[0].data, data);
      expect(result.values).to.have.length(3);
      result.values.forEach((v, i) => expectSummary(v, Buffer.concat([Buffer.from([i]), data])));
      // Every loan came back: the whole pool can be loaned again, both sides.
      server.release(await server.waitForLoan(POOL));
      await peer.command({ cmd: 'loan-once', size: POOL });
    });

    it('should carry a request, a response and a stream by reference from a server peer to a borrowing client', async function () {
      const name = uniqueName('zc-client');
      const peer = await Peer.spawn({ name, mode: 'server', options: { poolSize: POOL, borrow: true } });
      const client = await openChannel(name, 'client', { borrow: true });
      await peer.handle({ kind: 'loan-echo' });
      const data = patternBuffer(30_000, 5);
      const request = loanOf(client, data);
      const response$ = client.request(request);
      expect(request.length, 'not sent before subscription').to.equal(30_000);
      const values: Buffer[] = [];
      const done = lastValueFrom(response$.pipe(toArray()));
      expect(request.length, 'detached by the subscription').to.equal(0);
      values.push(...(await done));
      expect(values).to.have.length(1);
      expectBytes(values[0], data);
      client.release(values[0]);
      expect(values[0].length).to.equal(0);

      // Four values held at once by the client: 4 x 3 blocks of the server's 16.
      await peer.handle({ kind: 'loan-stream', count: 4 });
      const small = data.subarray(0, 10_000);
      const streamed = await lastValueFrom(client.request(loanOf(client, small)).pipe(toArray()));
      expect(streamed).to.have.length(4);
      streamed.forEach((v, i) => expectBytes(v, Buffer.concat([Buffer.from(`${i}:`), small])));
      for (const v of streamed) client.release(v);
      expect(streamed.every((v) => v.length === 0)).to.equal(true);
      // Server to client notifications, and the client's pool is whole again.
      const arriving = firstValueFrom(client.notifications$);
      await loanNotify(peer, { size: 7000, seed: 6 });
      const note = await arriving;
      expectBytes(note, patternBuffer(7000, 6));
      client.release(note);
      client.release(client.loan(POOL));
      await peer.command({ cmd: 'loan-once', size: POOL });
    });
  });

  describe('the sender view', function () {
    it('should be detached at once also when the ring is full and the descriptor waits in the queue', async function () {
      const { server, peer } = await serverWithPeer('zc-queued', { ringCapacity: 4096, poolSize: 256 * POOL_BLOCK });
      // The client cannot read while stopped: the ring (128 descriptors) fills for sure.
      process.kill(peer.pid, 'SIGSTOP');
      const results: boolean[] = [];
      const loans: Buffer[] = [];
      try {
        for (let i = 0; i < 200; i++) {
          const loan = loanOf(server, patternBuffer(100 + i, i));
          loans.push(loan);
          results.push(server.notify(loan));
          expect(loan.length).to.equal(0);
        }
      } finally {
        process.kill(peer.pid, 'SIGCONT');
      }
      expect(results.includes(false), 'some descriptors waited in the queue').to.equal(true);
      await server.drained();
      const got = await peer.collect(200);
      got.forEach((g, i) => expectSummary(g, patternBuffer(100 + i, i)));
      // Each one released by the client: the pool is whole again.
      server.release(await server.waitForLoan(256 * POOL_BLOCK));
    });

    it('should deliver exactly the bytes of a subarray of a loan, both ways', async function () {
      const { server, peer } = await serverWithPeer('zc-slice');
      const loan = loanOf(server, patternBuffer(8192, 7));
      const part = loan.subarray(10, 4111);
      const expected = Buffer.from(part);
      server.notify(part);
      expect(loan.length).to.equal(0);
      expect(part.length).to.equal(0);
      expectSummary((await peer.collect(1))[0], expected);

      const arriving = firstValueFrom(server.notifications$);
      const sent = await loanNotify(peer, { size: 9000, seed: 8, slice: [100, 5000] });
      const view = await arriving;
      expectBytes(view, patternBuffer(9000, 8).subarray(100, 5000));
      expectSummary(sent.sent[0], patternBuffer(9000, 8).subarray(100, 5000));
      server.release(view);
    });
  });

  describe('pool exhaustion and recovery', function () {
    it('should throw ERR_POOL_EXHAUSTED when full, and resolve waitForLoan() in FIFO order once the peer releases', async function () {
      const { server, peer } = await serverWithPeer('zc-exhaust', { poolSize: 4 * POOL_BLOCK });
      await peer.command({ cmd: 'hold-views' });
      server.notify(loanOf(server, patternBuffer(4 * POOL_BLOCK, 9)));
      expectThrowsCode(() => server.loan(1), 'ERR_POOL_EXHAUSTED');
      await peer.collect(1);
      const order: string[] = [];
      const first = server.waitForLoan(4 * POOL_BLOCK).then((b) => (order.push('first'), b));
      // Would fit as soon as anything comes back, but must not pass the first waiter.
      const second = server.waitForLoan(POOL_BLOCK).then((b) => (order.push('second'), b));
      await peer.command({ cmd: 'release-held' });
      const whole = await first;
      expect(whole.length).to.equal(4 * POOL_BLOCK);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(order).to.deep.equal(['first']);
      server.release(whole);
      const small = await second;
      expect(order).to.deep.equal(['first', 'second']);
      expect(small.length).to.equal(POOL_BLOCK);
      server.release(small);
    });

    it('should refuse loan() while waitForLoan() calls wait, and serve them first', async function () {
      const { server, peer } = await serverWithPeer('zc-queue', { poolSize: 2 * POOL_BLOCK });
      await peer.command({ cmd: 'hold-views' });
      server.notify(loanOf(server, patternBuffer(2 * POOL_BLOCK, 11)));
      await peer.collect(1);
      const waiting = server.waitForLoan(2 * POOL_BLOCK);
      await peer.command({ cmd: 'release-held' });
      // Whatever came back is the waiter's, even before it ran.
      expectThrowsCode(() => server.loan(1), 'ERR_POOL_EXHAUSTED');
      const got = await waiting;
      expect(got.length).to.equal(2 * POOL_BLOCK);
      server.release(got);
      server.release(server.loan(2 * POOL_BLOCK));
    });

    it('should give back a loan passed to respond() or next() of a request the caller cancelled', async function () {
      const name = uniqueName('zc-cancelled');
      const server = await openChannel(name, 'server', { poolSize: 2 * POOL_BLOCK });
      const client = await openChannel(name, 'client');
      const arrived = firstValueFrom(server.requests$);
      const subscription = client.request('x').subscribe({ error: () => undefined });
      const request = await arrived;
      subscription.unsubscribe();
      await waitUntil(() => request.cancelled);
      const answer = server.loan(POOL_BLOCK);
      request.next(answer);
      expect(answer.length, 'next() of a cancelled request detaches the loan').to.equal(0);
      const last = server.loan(POOL_BLOCK);
      request.respond(last);
      expect(last.length, 'respond() too').to.equal(0);
      server.release(server.loan(2 * POOL_BLOCK));
    });

    it('should refuse to send the detached Buffer of a loan already sent, with notify() and notifyMany()', async function () {
      const name = uniqueName('zc-resend');
      const server = await openChannel(name, 'server', { poolSize: 2 * POOL_BLOCK });
      await openChannel(name, 'client');
      await reaches(server, 'connected');
      const loan = loanOf(server, patternBuffer(100, 12));
      server.notify(loan);
      expectThrowsCode(() => server.notify(loan), 'ERR_INVALID_ARG_VALUE');
      expectThrowsCode(() => server.notifyMany([Buffer.from('a'), loan]), 'ERR_INVALID_ARG_VALUE');
    });

    it('should refuse with ERR_MESSAGE_TOO_LARGE what no pool could ever hold', async function () {
      const { server, peer } = await serverWithPeer('zc-large', { maxMessageSize: POOL - 1 });
      expectThrowsCode(() => server.loan(POOL), 'ERR_MESSAGE_TOO_LARGE');
      await server.waitForLoan(POOL).then(
        () => expect.fail('resolved'),
        (err: ShmChannelError) => expect(err.code).to.equal('ERR_MESSAGE_TOO_LARGE'),
      );
      server.release(server.loan(POOL - 1));
      await peer.command({ cmd: 'loan-once', size: POOL }).then(
        () => expect.fail('loaned'),
        (err: { code?: string }) => expect(err.code).to.equal('ERR_MESSAGE_TOO_LARGE'),
      );

      const name = uniqueName('zc-nopool');
      const bare = await openChannel(name, 'server');
      const client = await openChannel(name, 'client');
      expect(expectThrowsCode(() => bare.loan(1), 'ERR_MESSAGE_TOO_LARGE').message).to.match(/no loan pool/);
      expectThrowsCode(() => client.loan(1), 'ERR_MESSAGE_TOO_LARGE');
    });

    it('should refuse a poolSize that is not a multiple of 4096 with ERR_INVALID_SIZE', function () {
      for (const poolSize of [1000, POOL_BLOCK + 1, -POOL_BLOCK, 2 ** 31]) {
        expectThrowsCode(() => channel(uniqueName('zc-size'), 'server', { poolSize }), 'ERR_INVALID_SIZE');
      }
    });
  });

  describe('release by `using`', function () {
    it('should give back a loan and a borrowed view at the end of their block', async function () {
      const { server, peer } = await serverWithPeer('zc-using');
      let escaped: Buffer;
      {
        using loan = server.loan(POOL);
        escaped = loan;
        expect(escaped.length).to.equal(POOL);
      }
      expect(escaped.length, 'disposed').to.equal(0);
      server.release(server.loan(POOL));
      const arriving = firstValueFrom(server.notifications$);
      await loanNotify(peer, { size: POOL, seed: 10 });
      {
        // notifications$ is typed Buffer: only a message that came by reference is disposable.
        using view = (await arriving) as LoanedBuffer;
        escaped = view;
        expectBytes(view, patternBuffer(POOL, 10));
      }
      expect(escaped.length, 'disposed').to.equal(0);
      // The client's pool came back: it can loan all of it again.
      await peer.command({ cmd: 'loan-once', size: POOL });
    });
  });

  describe('a forgotten view', function () {
    it('should be reported with SHMCHANNEL_LEAKED_LOAN once collected, and given back to its owner', async function () {
      if (typeof global.gc !== 'function') this.skip();
      const { server, peer } = await serverWithPeer('zc-leak');
      const warned = new Promise<Error & { code?: string }>((resolve) => {
        const onWarning = (w: Error & { code?: string }) => {
          if (w.code !== 'SHMCHANNEL_LEAKED_LOAN') return;
          process.off('warning', onWarning);
          resolve(w);
        };
        process.on('warning', onWarning);
      });
      // Received and dropped inside a function of its own, so no frame of ours keeps it.
      const receiveAndDrop = async () => {
        const arriving = firstValueFrom(server.notifications$);
        await loanNotify(peer, { size: POOL, seed: 11 });
        return (await arriving).length;
      };
      expect(await receiveAndDrop()).to.equal(POOL);
      await expectLoanRefused(peer, POOL);
      let warning: (Error & { code?: string }) | undefined;
      void warned.then((w) => (warning = w));
      await waitUntil(async () => {
        global.gc!();
        await new Promise((resolve) => setImmediate(resolve));
        return warning !== undefined;
      });
      expect(warning!.message).to.match(/borrowed message/);
      await peer.command({ cmd: 'loan-once', size: POOL });
    });
  });

  describe('peer death', function () {
    it('should detach the views of a SIGKILLed client, take back the loans it held, and serve the next client', async function () {
      // One client: the server's pool outlives its client (a server of many has one per client).
      const { server, peer, name } = await serverWithPeer('zc-kill', { maxClients: 1 });
      await peer.command({ cmd: 'hold-views' });
      server.notify(loanOf(server, patternBuffer(3 * POOL_BLOCK, 12)));
      server.notify(loanOf(server, patternBuffer(5 * POOL_BLOCK, 13)));
      await peer.collect(2);
      await peer.command({ cmd: 'hold-loans', count: 2, size: 2 * POOL_BLOCK });
      const views: Buffer[] = [];
      const sub = server.notifications$.subscribe((v) => views.push(v));
      await loanNotify(peer, { size: 3000, seed: 14, count: 2 });
      await waitUntil(() => views.length === 2);
      sub.unsubscribe();
      expectBytes(views[1], patternBuffer(3000, 15));
      expectThrowsCode(() => server.loan(POOL), 'ERR_POOL_EXHAUSTED');

      await peer.kill('SIGKILL');
      await reaches(server, 'open');
      expect(views.map((v) => v.length)).to.deep.equal([0, 0]);
      for (const v of views) expect(() => server.release(v)).not.to.throw();
      server.release(server.loan(POOL));

      const next = await Peer.spawn({ name, mode: 'client', options: { borrow: true } });
      await reaches(server, 'connected');
      const arriving = firstValueFrom(server.notifications$);
      await loanNotify(next, { size: POOL, seed: 16 });
      const view = await arriving;
      expectBytes(view, patternBuffer(POOL, 16));
      server.release(view);
      server.notify(loanOf(server, patternBuffer(POOL, 17)));
      expectSummary((await next.collect(1))[0], patternBuffer(POOL, 17));
      server.release(await server.waitForLoan(POOL));
    });
  });

  describe('a non-borrowing receiver', function () {
    it('should get owned copies that outlive the reuse of the pool, and give the loans back at once', async function () {
      const { server, peer } = await serverWithPeer('zc-copy', { borrow: false }, {});
      const copies: Buffer[] = [];
      const sub = server.notifications$.subscribe((m) => copies.push(m));
      for (let round = 0; round < 4; round++) {
        // Each round needs the whole client pool: the previous message must be back.
        await waitUntil(() => copies.length === round);
        await loanNotify(peer, { size: POOL, seed: 20 + round });
      }
      await waitUntil(() => copies.length === 4);
      sub.unsubscribe();
      copies.forEach((c, round) => expectBytes(c, patternBuffer(POOL, 20 + round)));
      // A copy is no loan: release() leaves it as it is.
      server.release(copies[0]);
      expectBytes(copies[0], patternBuffer(POOL, 20));
      await peer.command({ cmd: 'loan-once', size: POOL });

      // The client does not borrow either: the server's pool comes back after each message.
      for (let round = 0; round < 4; round++) {
        server.notify(loanOf(server, patternBuffer(POOL, 30 + round)));
        server.release(await server.waitForLoan(POOL));
      }
      const got = await peer.collect(4);
      got.forEach((g, round) => expectSummary(g, patternBuffer(POOL, 30 + round)));
    });
  });

  describe('worker threads', function () {
    it('should carry loans from a worker thread channel to the main thread and back', async function () {
      const { server, peer } = await serverWithPeer('zc-worker', {}, { borrow: true }, true);
      const arriving = firstValueFrom(server.notifications$);
      await loanNotify(peer, { size: 12_000, seed: 40 });
      const view = await arriving;
      expectBytes(view, patternBuffer(12_000, 40));
      server.release(view);
      server.notify(loanOf(server, patternBuffer(12_000, 41)));
      expectSummary((await peer.collect(1))[0], patternBuffer(12_000, 41));
      server.release(await server.waitForLoan(POOL));
      await peer.command({ cmd: 'loan-once', size: POOL });
    });

    it('should reclaim what a terminated worker held, and keep the process working', async function () {
      // One client: the server's pool outlives its client (a server of many has one per client).
      const { server, peer, name } = await serverWithPeer('zc-worker-kill', { maxClients: 1 }, { borrow: true }, true);
      await peer.command({ cmd: 'hold-views' });
      server.notify(loanOf(server, patternBuffer(6 * POOL_BLOCK, 42)));
      await peer.collect(1);
      await peer.command({ cmd: 'hold-loans', count: 3, size: POOL_BLOCK });
      const arriving = firstValueFrom(server.notifications$);
      await loanNotify(peer, { size: 2 * POOL_BLOCK, seed: 43 });
      const view = await arriving;
      await peer.kill();
      await reaches(server, 'open');
      expect(view.length).to.equal(0);
      server.release(server.loan(POOL));
      const next = await Peer.spawn({ name, mode: 'client', options: { borrow: true }, thread: true });
      await reaches(server, 'connected');
      const again = firstValueFrom(server.notifications$);
      await loanNotify(next, { size: POOL, seed: 44 });
      const message = await again;
      expectBytes(message, patternBuffer(POOL, 44));
      server.release(message);
    });
  });

  describe("without external memory (Electron's V8 sandbox)", function () {
    it('should fall back to copies: ordinary Buffers sent by copy, copies received, and release() takes both', async function () {
      const { server, peer } = await serverWithPeer('zc-no-external');
      binding.refuseExternalMemory(true);
      try {
        const arriving = firstValueFrom(server.notifications$);
        await loanNotify(peer, { size: 3 * POOL_BLOCK, seed: 60 });
        const received = await arriving;
        expectBytes(received, patternBuffer(3 * POOL_BLOCK, 60));
        server.release(received);
        expect(received.length, 'a copy: release() leaves it whole').to.equal(3 * POOL_BLOCK);
        // The peer's loan came back at once: it can lend its whole pool.
        await peer.command({ cmd: 'loan-once', size: POOL });

        const loan = server.loan(POOL_BLOCK);
        patternBuffer(POOL_BLOCK, 61).copy(loan);
        server.notify(loan);
        expect(loan.length, 'an ordinary Buffer: sent by copy, still ours').to.equal(POOL_BLOCK);
        expectSummary((await peer.collect(1))[0], patternBuffer(POOL_BLOCK, 61));
        server.release(loan);
        loan[Symbol.dispose]();
        server.release(server.loan(POOL));
      } finally {
        binding.refuseExternalMemory(false);
      }
    });
  });

  describe('hostile descriptors and releases', function () {
    const CAP = 64 * 1024;

    async function victim(label: string) {
      const name = uniqueName(label);
      // One client: the attacks write into the server's segment by name, and the server's pool
      // outlives the client it drops.
      const server = await openChannel(name, 'server', {
        ringCapacity: CAP,
        poolSize: POOL,
        borrow: true,
        pollWindowUs: 0,
        maxClients: 1,
      });
      const peer = await Peer.spawn({ name, mode: 'client', options: { borrow: true } });
      await reaches(server, 'connected');
      const memory = SharedMemory.open(name);
      return { server, peer, memory, seg: memory.buffer, name };
    }

    /** The server reports ERR_PROTOCOL, tells the client, and exchanges loans with the next client. */
    async function expectDropped(server: Channel, client: Peer, attack: () => void): Promise<ShmChannelError> {
      const reported = firstValueFrom(server.clientErrors$);
      const told = client.waitFor('stream-error');
      attack();
      ringSegment(server.name);
      const err = await reported;
      expect(err.code, err.message).to.equal('ERR_PROTOCOL');
      expect((await told).error.code).to.equal('ERR_PROTOCOL');
      await reaches(server, 'open');
      const next = await Peer.spawn({ name: server.name, mode: 'client', options: { borrow: true } });
      await reaches(server, 'connected');
      const arriving = firstValueFrom(server.notifications$);
      await loanNotify(next, { size: POOL, seed: 50 });
      const view = await arriving;
      expectBytes(view, patternBuffer(POOL, 50));
      server.release(view);
      server.notify(loanOf(server, patternBuffer(POOL, 51)));
      expectSummary((await next.collect(1))[0], patternBuffer(POOL, 51));
      server.release(await server.waitForLoan(POOL));
      return err;
    }

    /** Publishes a LOANED frame of `kind` with descriptor words [offset, extent, generation, start]. */
    function publishDescriptor(seg: Buffer, kind: number, total: number, d: number[]): void {
      const tail = seg.readUInt32LE(Layout.c2s + Layout.tail);
      writeFrameHeader(seg, 'c2s', CAP, tail, {
        length: 16,
        kind,
        flags: LOANED,
        id: kind === FrameKind.NOTIFY ? 0 : 1,
        total,
      });
      const body = Buffer.alloc(16);
      d.forEach((w, i) => body.writeUInt32LE(w >>> 0, 4 * i));
      writeRingBytes(seg, 'c2s', CAP, tail + 16, body);
      seg.writeUInt32LE((tail + 32) >>> 0, Layout.c2s + Layout.head);
    }

    const descriptors: Record<string, [kind: number, total: number, d: number[]]> = {
      'an offset out of the pool': [FrameKind.NOTIFY, 16, [POOL, POOL_BLOCK, 1, 0]],
      'an extent of 0': [FrameKind.NOTIFY, 0, [0, 0, 1, 0]],
      'a misaligned offset': [FrameKind.NOTIFY, 16, [100, POOL_BLOCK, 1, 0]],
      'an extent past the end of the pool': [FrameKind.NOTIFY, 16, [POOL - POOL_BLOCK, 2 * POOL_BLOCK, 1, 0]],
      'start + total beyond the extent': [FrameKind.NOTIFY, POOL_BLOCK, [0, POOL_BLOCK, 1, 1]],
      'the LOANED flag on a CANCEL frame': [FrameKind.CANCEL, 16, [0, POOL_BLOCK, 1, 0]],
    };

    for (const [what, [kind, total, d]] of Object.entries(descriptors)) {
      it(`should drop the client with ERR_PROTOCOL on a descriptor with ${what}`, async function () {
        const { server, peer, memory, seg } = await victim('zc-hostile');
        try {
          await expectDropped(server, peer, () => publishDescriptor(seg, kind, total, d));
        } finally {
          memory.close();
        }
      });
    }

    it('should drop the client with ERR_PROTOCOL on a descriptor overlapping a loan the server still holds', async function () {
      const { server, peer, memory, seg } = await victim('zc-overlap');
      try {
        const arriving = firstValueFrom(server.notifications$);
        await loanNotify(peer, { size: 2 * POOL_BLOCK, seed: 52 });
        const held = await arriving;
        await expectDropped(server, peer, () =>
          publishDescriptor(seg, FrameKind.NOTIFY, 16, [POOL_BLOCK, POOL_BLOCK, 9, 0]),
        );
        expect(held.length, 'the dropped client view is detached').to.equal(0);
      } finally {
        memory.close();
      }
    });

    /**
     * The server lends block 0 to the client (held there), keeps the rest of its pool loaned
     * and unsent, and returns the generation of block 0 (read from the descriptor in the ring).
     */
    async function fullServerPool(
      server: Channel,
      peer: Peer,
      seg: Buffer,
    ): Promise<{ generation: number; rest: Buffer }> {
      await peer.command({ cmd: 'hold-views' });
      const head = seg.readUInt32LE(Layout.s2c + Layout.head);
      server.notify(loanOf(server, patternBuffer(POOL_BLOCK, 53)));
      await peer.collect(1);
      const descriptor = readRingBytes(seg, 's2c', CAP, head + 16, 16);
      expect(descriptor.readUInt32LE(0), 'block 0 was lent').to.equal(0);
      const rest = server.loan(POOL - POOL_BLOCK);
      expectThrowsCode(() => server.loan(1), 'ERR_POOL_EXHAUSTED');
      return { generation: descriptor.readUInt32LE(8), rest };
    }

    function publishRelease(seg: Buffer, entries: [offset: number, generation: number][], jump = entries.length): void {
      const ring = releaseRing('s2c', CAP, POOL);
      const slots = releaseSlots(POOL);
      const head = seg.readUInt32LE(Layout.s2c + Layout.releaseHead);
      entries.forEach(([offset, generation], i) => {
        seg.writeUInt32LE(offset >>> 0, ring + ((head + i) % slots) * 8);
        seg.writeUInt32LE(generation >>> 0, ring + ((head + i) % slots) * 8 + 4);
      });
      seg.writeUInt32LE((head + jump) >>> 0, Layout.s2c + Layout.releaseHead);
    }

    const releases: Record<string, (seg: Buffer, generation: number) => void> = {
      'a block it was not sent': (seg, g) => publishRelease(seg, [[POOL_BLOCK, g + 1]]),
      'a block not at the start of a loan': (seg, g) => publishRelease(seg, [[2 * POOL_BLOCK, g]]),
      'a double release': (seg, g) =>
        publishRelease(seg, [
          [0, g],
          [0, g],
        ]),
      'a wrong generation': (seg, g) => publishRelease(seg, [[0, g + 7]]),
      'a release head moved past the slots': (seg, g) => publishRelease(seg, [[0, g]], releaseSlots(POOL) + 1),
    };

    it('should keep its waiters, and release quietly, while it drops a client that forged a release', async function () {
      const { server, peer, memory, seg } = await victim('zc-forged-wait');
      try {
        const arriving = firstValueFrom(server.notifications$);
        await loanNotify(peer, { size: POOL_BLOCK, seed: 54 });
        const held = await arriving;
        const { generation, rest } = await fullServerPool(server, peer, seg);
        const waiting = server.waitForLoan(POOL_BLOCK);
        const reported = firstValueFrom(server.clientErrors$);
        publishRelease(seg, [[0, generation + 7]]);
        ringSegment(server.name);
        expect((await reported).code).to.equal('ERR_PROTOCOL');
        expectThrowsCode(() => server.loan(POOL_BLOCK), 'ERR_POOL_EXHAUSTED');
        server.release(held);
        expect(held.length, 'the view of the dropped client is detached').to.equal(0);
        server.release(rest);
        await reaches(server, 'open');
        const got = await waiting;
        expect(got.length, 'served once the client was gone').to.equal(POOL_BLOCK);
        server.release(got);
      } finally {
        memory.close();
      }
    });

    for (const [what, attack] of Object.entries(releases)) {
      it(`should drop the client with ERR_PROTOCOL on a release of ${what}`, async function () {
        const { server, peer, memory, seg } = await victim('zc-release');
        try {
          const { generation, rest } = await fullServerPool(server, peer, seg);
          await expectDropped(server, peer, () => {
            attack(seg, generation);
            // The owner reads releases when a loan does not fit.
            expectThrowsCode(() => server.loan(POOL_BLOCK), 'ERR_PROTOCOL');
            // Its own unsent loan stays its own: given back, the pool is whole for the next client.
            server.release(rest);
          });
        } finally {
          memory.close();
        }
      });
    }
  });
});

async function expectLoanRefused(peer: Peer, size: number): Promise<void> {
  await peer.command({ cmd: 'loan-once', size }).then(
    () => expect.fail('the pool should still be lent'),
    (err: { code?: string }) => expect(err.code).to.equal('ERR_POOL_EXHAUSTED'),
  );
}
