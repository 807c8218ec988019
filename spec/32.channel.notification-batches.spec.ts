import { expect } from 'chai';
import { firstValueFrom, take, toArray } from 'rxjs';

import type { Channel, IncomingRequest, NotificationBatch } from '../lib/index';
import { expectThrowsCode } from './helpers/expect-error';
import { clientOfPeer, serverOfPeer } from './helpers/pairs';
import { patternBuffer, sha256 } from './helpers/payload';
import { uniqueName } from './helpers/names';
import { Peer } from './helpers/peer';
import { openChannel, releaseAll } from './helpers/resources';
import { waitUntil } from './helpers/wait';

/** Copies of every message of every batch, and how many batches brought them. */
function gatherBatches(ch: Channel): { messages: Buffer[]; batches: number[] } {
  const gathered = { messages: [] as Buffer[], batches: [] as number[] };
  ch.notificationBatches$.subscribe((batch) => {
    gathered.batches.push(batch.length);
    gathered.messages.push(...batch.copies());
  });
  return gathered;
}

describe('Channel#notificationBatches$', function () {
  afterEach(releaseAll);

  it('should deliver every notification of another process, in order, in far fewer emissions', async function () {
    const { server, peer } = await serverOfPeer('batches-order');
    const { messages, batches } = gatherBatches(server);
    const COUNT = 5000;
    await peer.notify({ text: 'n', count: COUNT });
    await waitUntil(() => messages.length >= COUNT);
    expect(messages.map(String)).to.deep.equal(Array.from({ length: COUNT }, (_, i) => `n#${i}`));
    expect(batches.reduce((a, b) => a + b, 0)).to.equal(COUNT);
    // The sender writes a burst in 64 KiB runs, and the reader takes what the ring holds.
    expect(batches.length).to.be.below(COUNT / 2);
  });

  it('should hand out views and places that agree, valid during the emission only', async function () {
    const { server, peer } = await serverOfPeer('batches-views');
    const seen: Array<{ kept: NotificationBatch; texts: string[]; placed: string[] }> = [];
    server.notificationBatches$.subscribe((batch) => {
      const texts = [...batch].map(String);
      const placed = Array.from({ length: batch.length }, (_, i) =>
        batch.bytes.toString('utf8', batch.offset(i), batch.offset(i) + batch.size(i)),
      );
      seen.push({ kept: batch, texts, placed });
    });
    await peer.notify({ text: 'v', count: 50 });
    await waitUntil(() => seen.reduce((n, s) => n + s.texts.length, 0) >= 50);
    for (const s of seen) expect(s.placed).to.deep.equal(s.texts);
    const { kept } = seen[0];
    expect(kept.length).to.equal(0);
    const err = expectThrowsCode(() => kept.at(0), 'ERR_INVALID_ARG_VALUE');
    expect(err.message).to.match(/has ended: read its messages during the emission/);
  });

  it('should keep the order with requests and with a large notification, which comes as a batch of its own', async function () {
    const { server, peer } = await serverOfPeer('batches-mixed');
    const log: string[] = [];
    let big: Buffer | undefined;
    server.notificationBatches$.subscribe((batch) => {
      for (const m of batch) {
        if (m.length > 1000) {
          big = Buffer.from(m);
          log.push(`big:${m.length}/${batch.length}`);
        } else {
          log.push(m.toString());
        }
      }
    });
    server.requests$.subscribe((req: IncomingRequest) => {
      log.push(`req:${req.data.toString()}`);
      req.respond('ok');
    });
    await peer.notify({ text: 'a' });
    await peer.notify({ sizes: [300_000] });
    const answered = peer.request({ text: 'r' });
    await peer.notify({ text: 'b' });
    expect((await answered).values.map((v) => v.text)).to.deep.equal(['ok']);
    await waitUntil(() => log.length >= 4);
    expect(log).to.deep.equal(['a', 'big:300000/1', 'req:r', 'b']);
    expect(sha256(big!)).to.equal(sha256(patternBuffer(300_000, 0)));
  });

  it('should give a large notification a batch of its own, empty once emitted', async function () {
    const { server, peer } = await serverOfPeer('batches-large');
    let kept: NotificationBatch | undefined;
    const sizes: number[] = [];
    server.notificationBatches$.subscribe((batch) => {
      kept = batch;
      sizes.push(...Array.from({ length: batch.length }, (_, i) => batch.size(i)));
    });
    await peer.notify({ sizes: [300_000] });
    await waitUntil(() => sizes.length >= 1);
    expect(sizes).to.deep.equal([300_000]);
    expect(kept!.length).to.equal(0);
    expect(kept!.bytes.length).to.equal(0);
  });

  it('should keep receiving when a subscriber tries to transfer the memory of a batch away', async function () {
    const { server, peer } = await serverOfPeer('batches-transfer');
    const { messages } = gatherBatches(server);
    const tried: string[] = [];
    const sub = server.notificationBatches$.subscribe((batch) => {
      try {
        structuredClone(batch.bytes, { transfer: [batch.bytes.buffer as ArrayBuffer] });
        tried.push('copied');
      } catch (err) {
        tried.push((err as Error).name);
      }
    });
    await peer.notify({ text: 'first' });
    await waitUntil(() => messages.length >= 1);
    sub.unsubscribe();
    await peer.notify({ text: 'second', count: 3 });
    await waitUntil(() => messages.length >= 4);
    expect(messages.map(String)).to.deep.equal(['first', 'second#0', 'second#1', 'second#2']);
    expect(tried.length).to.be.greaterThan(0);
  });

  it('should give a subscriber that comes during a read the notifications that follow in it', async function () {
    // Both ends in this process: the client's request and notifications leave in one write,
    // so the server reads them in one go, and its request handler subscribes in the middle.
    const name = uniqueName('batches-late');
    const server = await openChannel(name, 'server');
    const local = await openChannel(name, 'client');
    const late: string[] = [];
    server.requests$.subscribe((req) => {
      server.notifications$.subscribe((m) => late.push(`each:${String(m)}`));
      server.notificationBatches$.subscribe((b) => late.push(...[...b].map((m) => `batch:${String(m)}`)));
      req.respond('ok');
    });
    local.request('subscribe now').subscribe();
    local.notify('n1');
    local.notify('n2');
    await waitUntil(() => late.length >= 4);
    expect(late.sort()).to.deep.equal(['batch:n1', 'batch:n2', 'each:n1', 'each:n2']);
  });

  it('should feed notifications$ and notificationBatches$ alike when both are subscribed', async function () {
    const { server, peer } = await serverOfPeer('batches-both');
    const { messages } = gatherBatches(server);
    const each = firstValueFrom(server.notifications$.pipe(take(200), toArray()));
    await peer.notify({ text: 'x', count: 200 });
    const expected = Array.from({ length: 200 }, (_, i) => `x#${i}`);
    expect((await each).map(String)).to.deep.equal(expected);
    await waitUntil(() => messages.length >= 200);
    expect(messages.map(String)).to.deep.equal(expected);
  });

  it('should complete when the channel closes', async function () {
    const { server } = await serverOfPeer('batches-close');
    const ended = firstValueFrom(server.notificationBatches$.pipe(toArray()));
    await server.close();
    expect(await ended).to.deep.equal([]);
  });
});

describe('Channel#notifyMany()', function () {
  afterEach(releaseAll);

  it('should send every message, of any kind of data, in order, with one call', async function () {
    const { client, peer } = await clientOfPeer('many-order');
    const texts = Array.from({ length: 1000 }, (_, i) => `m${i}`);
    const inRing = client.notifyMany([...texts, new Uint8Array([104, 105]), new TextEncoder().encode('end').buffer]);
    expect(inRing).to.equal(true);
    const received = await peer.collect(1002);
    expect(received.map((r) => r.text)).to.deep.equal([...texts, 'hi', 'end']);
  });

  it('should send none of them when one is larger than maxMessageSize', async function () {
    const { client, peer } = await clientOfPeer('many-large', { maxMessageSize: 1024 });
    expectThrowsCode(() => client.notifyMany(['fits', Buffer.alloc(1025), 'after']), 'ERR_MESSAGE_TOO_LARGE');
    client.notify('probe');
    expect((await peer.collect(1)).map((r) => r.text)).to.deep.equal(['probe']);
  });

  it('should send none of a group that would not fit in the outgoing queue (ERR_QUEUE_FULL), and go on', async function () {
    const name = uniqueName('many-full');
    const peer = await Peer.spawn({ name, mode: 'server', options: { ringCapacity: 4096, maxMessageSize: 1024 } });
    const client = await openChannel(name, 'client', { maxQueuedBytes: 16 * 1024 });
    process.kill(peer.pid, 'SIGSTOP');
    let sentBefore = 0;
    try {
      // The ring full and a little waiting: the group of 20 000 bytes cannot all wait too.
      while (client.notify(Buffer.alloc(1000, 2))) sentBefore++;
      sentBefore++;
      const group = Array.from({ length: 20 }, () => Buffer.alloc(1000, 1));
      expectThrowsCode(() => client.notifyMany(group), 'ERR_QUEUE_FULL');
    } finally {
      process.kill(peer.pid, 'SIGCONT');
    }
    client.notify('probe');
    const received = await peer.collect(sentBefore + 1);
    const fill = sha256(Buffer.alloc(1000, 2));
    expect(received.slice(0, sentBefore).every((r) => r.sha256 === fill)).to.equal(true);
    expect(received[sentBefore].text).to.equal('probe');
  });

  it('should refuse what is not an iterable of messages with ERR_INVALID_ARG_TYPE', async function () {
    const { client } = await clientOfPeer('many-args');
    expectThrowsCode(() => client.notifyMany('abc'), 'ERR_INVALID_ARG_TYPE');
    expectThrowsCode(() => client.notifyMany(42 as unknown as string[]), 'ERR_INVALID_ARG_TYPE');
    const err = expectThrowsCode(() => client.notifyMany(['ok', {} as string]), 'ERR_INVALID_ARG_TYPE');
    expect(err.message).to.match(/got an instance of Object$/);
  });
});
