import { expect } from 'chai';
import { firstValueFrom, lastValueFrom, toArray } from 'rxjs';

import type { Channel } from '../lib/index';
import { expectErrorsWhenSubscribed, expectRejectsCode, expectThrowsCode } from './helpers/expect-error';
import { uniqueName } from './helpers/names';
import { Peer } from './helpers/peer';
import { clientOfPeer, serverOfPeer } from './helpers/pairs';
import { channel, openChannel, releaseAll, unlinkLater } from './helpers/resources';
import { reaches, waitUntil } from './helpers/wait';

/** All values of one request, as UTF-8 strings. */
async function ask(ch: Channel, data: string, options?: { timeout?: number }): Promise<string[]> {
  const values = await lastValueFrom(ch.request(data, options).pipe(toArray()));
  return values.map((v) => v.toString('utf8'));
}

describe('Channel#request()', function () {
  afterEach(releaseAll);

  it('should get the response of a server in another process', async function () {
    const { client, peer } = await clientOfPeer('req-c2s');
    await peer.handle({ kind: 'upper' });
    expect(await ask(client, 'shout')).to.deep.equal(['SHOUT']);
  });

  it('should get the response of a client in another process (server to client)', async function () {
    const { server, peer } = await serverOfPeer('req-s2c');
    await peer.handle({ kind: 'upper' });
    expect(await ask(server, 'down here')).to.deep.equal(['DOWN HERE']);
  });

  it('should deliver the responses as Buffers', async function () {
    const { client, peer } = await clientOfPeer('req-buf');
    await peer.handle({ kind: 'echo' });
    const [value] = await lastValueFrom(client.request(Buffer.from([1, 2, 3])).pipe(toArray()));
    expect(Buffer.isBuffer(value)).to.equal(true);
    expect([...value]).to.deep.equal([1, 2, 3]);
  });

  it('should give each of 500 concurrent requests its own answer when answers come out of order', async function () {
    this.timeout(120000);
    const { client, peer } = await clientOfPeer('req-many');
    await peer.handle({ kind: 'random-delay', maxMs: 200 });
    const texts = Array.from({ length: 500 }, (_, i) => `question ${i}`);
    const answers = await Promise.all(texts.map((text) => ask(client, text)));
    expect(answers).to.deep.equal(texts.map((text) => [text]));
    const stats = await peer.stats();
    // Make sure the test tested what it says: many in flight at once, answered out of order.
    expect(stats.maxInFlight).to.be.greaterThan(1);
    expect(stats.completions).to.not.deep.equal(stats.arrivals);
  });

  it('should never use an id that is still in flight', async function () {
    this.timeout(120000);
    const { client, peer } = await clientOfPeer('req-ids');
    await peer.handle({ kind: 'random-delay', maxMs: 100 });
    // Waves of overlapping requests, so ids are allocated while others are still pending.
    for (let wave = 0; wave < 5; wave++) {
      await Promise.all(Array.from({ length: 100 }, (_, i) => ask(client, `w${wave}-${i}`)));
    }
    const stats = await peer.stats();
    expect(stats.arrivals).to.have.length(500);
    expect(stats.idCollisions).to.equal(0);
    for (const id of stats.arrivals) {
      expect(Number.isInteger(id) && id >= 0 && id <= 0xffffffff, `id ${id} is a 32-bit unsigned integer`).to.equal(
        true,
      );
    }
  });

  it('should fail with ERR_NO_HANDLER when nobody handles requests on the other side', async function () {
    const { client } = await clientOfPeer('req-nohandler');
    await expectRejectsCode(ask(client, 'anyone?'), 'ERR_NO_HANDLER');
  });

  it('should fail with ERR_NO_HANDLER once the handler unsubscribed', async function () {
    const { client, peer } = await clientOfPeer('req-unhandled');
    await peer.handle({ kind: 'echo' });
    expect(await ask(client, 'first')).to.deep.equal(['first']);
    await peer.unhandle();
    await expectRejectsCode(ask(client, 'second'), 'ERR_NO_HANDLER');
  });

  it('should tell a peer that requests with no handler here ERR_NO_HANDLER', async function () {
    const { peer } = await serverOfPeer('req-nohandler-here');
    const result = await peer.request({ text: 'anyone?' });
    expect(result.error?.code).to.equal('ERR_NO_HANDLER');
  });

  it('should fail with ERR_REMOTE carrying the remote message and remoteCode', async function () {
    const { client, peer } = await clientOfPeer('req-remote');
    await peer.handle({ kind: 'error', message: 'disk on fire', code: 'E_FIRE' });
    const err = await expectRejectsCode(ask(client, 'save'), 'ERR_REMOTE');
    expect(err.message).to.equal('disk on fire');
    expect(err.remoteCode).to.equal('E_FIRE');
  });

  it('should keep the remote code and mark a message cut to fit maxMessageSize', async function () {
    const { client, peer } = await clientOfPeer('req-remote-cut', { maxMessageSize: 256 });
    const message = 'x'.repeat(5000);
    await peer.handle({ kind: 'error', message, code: 'E_LONG' });
    const err = await expectRejectsCode(ask(client, 'save'), 'ERR_REMOTE');
    expect(err.remoteCode).to.equal('E_LONG');
    expect(err.message).to.match(/^x+… \(truncated, 5000 bytes\)$/);
    // As much of the start as fits: the JSON around it takes well under half of 256 bytes.
    expect(err.message.length).to.be.greaterThan(128);
  });

  it('should bound a remote code to 128 bytes and still carry the message', async function () {
    const { client, peer } = await clientOfPeer('req-remote-code', { maxMessageSize: 512 });
    await peer.handle({ kind: 'error', message: 'short and whole', code: 'C'.repeat(500) });
    const err = await expectRejectsCode(ask(client, 'save'), 'ERR_REMOTE');
    expect(err.remoteCode).to.equal('C'.repeat(128));
    expect(err.message).to.equal('short and whole');
  });

  it('should keep working after a remote error', async function () {
    const { client, peer } = await clientOfPeer('req-after-error');
    await peer.handle({ kind: 'fail-on', match: 'bad', message: 'bad input' });
    await expectRejectsCode(ask(client, 'bad'), 'ERR_REMOTE');
    expect(await ask(client, 'good')).to.deep.equal(['good']);
  });

  it('should send nothing until subscribed (cold)', async function () {
    const { client, peer } = await clientOfPeer('req-cold');
    await peer.handle({ kind: 'echo' });
    const cold = client.request('cold');
    // Frames are delivered in order: had `cold` sent its request, it would arrive before this.
    expect(await ask(client, 'probe')).to.deep.equal(['probe']);
    expect((await peer.stats()).texts).to.deep.equal(['probe']);
    expect((await firstValueFrom(cold)).toString()).to.equal('cold');
    expect((await peer.stats()).texts).to.deep.equal(['probe', 'cold']);
  });

  it('should send one request per subscription, each with its own id', async function () {
    const { client, peer } = await clientOfPeer('req-twice');
    await peer.handle({ kind: 'echo' });
    const cold = client.request('again');
    const [a, b] = await Promise.all([firstValueFrom(cold), firstValueFrom(cold)]);
    expect([a.toString(), b.toString()]).to.deep.equal(['again', 'again']);
    const stats = await peer.stats();
    expect(stats.texts).to.deep.equal(['again', 'again']);
    expect(new Set(stats.arrivals).size).to.equal(2);
  });

  it('should fail with ERR_TIMEOUT after options.timeout, and the handler sees the cancellation', async function () {
    const { client, peer } = await clientOfPeer('req-timeout');
    await peer.handle({ kind: 'never' });
    await expectRejectsCode(ask(client, 'too slow', { timeout: 300 }), 'ERR_TIMEOUT');
    const [id] = (await peer.stats()).arrivals;
    const cancelled = await peer.waitFor('cancelled', (e) => e.requestId === id);
    expect(cancelled.text).to.equal('too slow');
    await peer.waitFor('unsubscribed', (e) => e.requestId === id);
  });

  it('should apply the requestTimeout option to every request', async function () {
    const name = uniqueName('req-deftimeout');
    const peer = await Peer.spawn({ name, mode: 'server' });
    await peer.handle({ kind: 'never' });
    const client = await openChannel(name, 'client', { requestTimeout: 300 });
    await expectRejectsCode(ask(client, 'default timeout'), 'ERR_TIMEOUT');
    await peer.waitFor('cancelled');
  });

  it('should not time out a request answered in time', async function () {
    const { client, peer } = await clientOfPeer('req-intime');
    await peer.handle({ kind: 'echo' });
    // Generous: the machine is slow and noisy; the point is that success is not an error.
    expect(await ask(client, 'quick', { timeout: 20000 })).to.deep.equal(['quick']);
  });

  it('should fail a pending request with ERR_PEER_LOST when the server closes', async function () {
    const { client, peer } = await clientOfPeer('req-lost');
    await peer.handle({ kind: 'never' });
    const failed = expectRejectsCode(ask(client, 'left hanging'), 'ERR_PEER_LOST');
    await waitUntil(async () => (await peer.stats()).arrivals.length === 1);
    await peer.close();
    await failed;
  });

  it('should fail a pending request with ERR_PEER_LOST when the server is SIGKILLed', async function () {
    const { client, peer } = await clientOfPeer('req-killed');
    unlinkLater(client.name); // a killed server cannot unlink its segment
    await peer.handle({ kind: 'never' });
    const failed = expectRejectsCode(ask(client, 'left hanging'), 'ERR_PEER_LOST');
    await waitUntil(async () => (await peer.stats()).arrivals.length === 1);
    await peer.kill('SIGKILL');
    await failed;
  });

  it('should fail a pending request with ERR_PEER_LOST when the client is SIGKILLed (server side)', async function () {
    const { server, peer } = await serverOfPeer('req-cli-killed');
    await peer.handle({ kind: 'never' });
    const failed = expectRejectsCode(ask(server, 'left hanging'), 'ERR_PEER_LOST');
    await waitUntil(async () => (await peer.stats()).arrivals.length === 1);
    await peer.kill('SIGKILL');
    await failed;
  });
});

describe('Channel#requests$', function () {
  afterEach(releaseAll);

  it('should emit IncomingRequests with the id and data the peer sent', async function () {
    const { server, peer } = await serverOfPeer('in-req');
    const incoming = firstValueFrom(server.requests$);
    const answer = peer.request({ text: 'what time is it' });
    const request = await incoming;
    expect(request.data.toString()).to.equal('what time is it');
    expect(Buffer.isBuffer(request.data)).to.equal(true);
    expect(Number.isInteger(request.id)).to.equal(true);
    expect(request.cancelled).to.equal(false);
    request.respond('noon');
    expect((await answer).values.map((v) => v.text)).to.deep.equal(['noon']);
  });
});

// The contract of a method that returns an Observable: argument errors throw at call time;
// whatever depends on the channel's state reaches the subscriber, and only once subscribed.
describe('Channel#request() state errors', function () {
  afterEach(releaseAll);

  it('should error the subscriber, not throw, once the server went away and the client closed', async function () {
    const { client, peer } = await clientOfPeer('req-state-gone');
    await peer.close();
    await reaches(client, 'closed');
    // What a client that asks on a timer does: an error handler, and nothing uncaught.
    const failed = new Promise<unknown>((resolve) => {
      setTimeout(() => client.request('on a timer').subscribe({ error: resolve }), 1);
    });
    const err = await failed;
    expect((err as { code?: string }).code).to.equal('ERR_CHANNEL_CLOSED');
    await expectErrorsWhenSubscribed(() => client.request('again'), 'ERR_CHANNEL_CLOSED');
  });

  it('should error the subscriber with ERR_CHANNEL_CLOSED before open()', async function () {
    const client = channel(uniqueName('req-state-idle'), 'client');
    const err = await expectErrorsWhenSubscribed(() => client.request('early'), 'ERR_CHANNEL_CLOSED');
    expect(err.message).to.match(/not open: call open\(\) first/);
  });

  it('should error the subscriber with ERR_MESSAGE_TOO_LARGE', async function () {
    const { server } = await serverOfPeer('req-state-large', { maxMessageSize: 1024 });
    await expectErrorsWhenSubscribed(() => server.request(Buffer.alloc(1025)), 'ERR_MESSAGE_TOO_LARGE');
  });

  it('should error the subscriber with ERR_PEER_LOST on a server with no client', async function () {
    const server = await openChannel(uniqueName('req-state-alone'), 'server');
    await expectErrorsWhenSubscribed(() => server.request('anyone?'), 'ERR_PEER_LOST');
  });

  it('should error the subscriber with ERR_QUEUE_FULL when the queue is full', async function () {
    const name = uniqueName('req-state-full');
    const peer = await Peer.spawn({ name, mode: 'server', options: { ringCapacity: 4096, maxMessageSize: 1024 } });
    const client = await openChannel(name, 'client', { maxQueuedBytes: 8192 });
    process.kill(peer.pid, 'SIGSTOP');
    try {
      expectThrowsCode(() => {
        for (;;) client.notify(Buffer.alloc(1000));
      }, 'ERR_QUEUE_FULL');
      await expectErrorsWhenSubscribed(() => client.request(Buffer.alloc(1000)), 'ERR_QUEUE_FULL');
    } finally {
      process.kill(peer.pid, 'SIGCONT');
    }
  });

  it('should still throw at call time for arguments of the wrong type or value', function () {
    const client = channel(uniqueName('req-state-args'), 'client');
    expectThrowsCode(() => client.request(42 as unknown as string), 'ERR_INVALID_ARG_TYPE');
    expectThrowsCode(() => client.request('x', { timeout: -1 }), 'ERR_INVALID_ARG_VALUE');
  });
});
