import { expect } from 'chai';
import { firstValueFrom } from 'rxjs';

import { binding } from '../lib/load-addon';
import { FrameKind } from '../lib/protocol';
import { expectRejectsCode } from './helpers/expect-error';
import { uniqueName } from './helpers/names';
import { Peer } from './helpers/peer';
import { openChannel, releaseAll } from './helpers/resources';
import { reaches } from './helpers/wait';

// Regressions of a review: each of these hung, spun or failed a channel before it was fixed.
describe('Flow control at the edges', function () {
  afterEach(releaseAll);

  it('should keep a writer going through a full ring with pollWindowUs 0 (space wake-up not lost)', async function () {
    const name = uniqueName('space-wake');
    const writer = await openChannel(name, 'server', { ringCapacity: 4096, pollWindowUs: 0 });
    const reader = await Peer.spawn({ name, mode: 'client', options: { pollWindowUs: 0 } });
    await reaches(writer, 'connected');
    const count = 20_000;
    let sent = 0;
    const payload = Buffer.alloc(200);
    while (sent < count) {
      // Keep a little queued at all times, so nearly every write finds the ring full.
      while (sent < count && writer.queuedBytes < 16_384) {
        writer.notify(payload);
        sent++;
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    const received = await reader.collect(count);
    expect(received).to.have.lengthOf(count);
  });

  it("should notice a client that dies while the server's queue waits for it, and take the next", async function () {
    const name = uniqueName('dead-reader');
    const server = await openChannel(name, 'server', { ringCapacity: 4096 });
    const first = await Peer.spawn({ name, mode: 'client' });
    await reaches(server, 'connected');
    process.kill(first.pid, 'SIGSTOP');
    for (let i = 0; i < 50; i++) server.notify(Buffer.alloc(512));
    expect(server.queuedBytes, 'the ring must be full for this test to mean anything').to.be.above(0);
    const pending = firstValueFrom(server.request('never answered'));
    const lost = expectRejectsCode(pending, 'ERR_PEER_LOST');
    await first.kill('SIGKILL');
    await lost;
    await reaches(server, 'open');
    expect(server.queuedBytes).to.equal(0);
    const second = await Peer.spawn({ name, mode: 'client' });
    await second.handle({ kind: 'upper' });
    expect((await firstValueFrom(server.request('next'))).toString()).to.equal('NEXT');
  });

  it('should end a request whose error text is larger than maxMessageSize', async function () {
    const name = uniqueName('big-error');
    const server = await openChannel(name, 'server', { maxMessageSize: 256 });
    server.requests$.subscribe((req) => req.error(new Error('x'.repeat(300))));
    const client = await Peer.spawn({ name, mode: 'client' });
    const result = await client.request({ text: 'fail me' });
    expect(result.error?.code).to.equal('ERR_REMOTE');
    expect(result.error?.message).to.match(/^x+… \(truncated, 300 bytes\)$/);
    expect(server.isOpen).to.equal(true);
  });

  it('should answer ERR_NO_HANDLER even when maxMessageSize is tiny, and stay open', async function () {
    const name = uniqueName('tiny-max');
    const server = await openChannel(name, 'server', { maxMessageSize: 64 });
    const client = await Peer.spawn({ name, mode: 'client' });
    const result = await client.request({ text: 'anyone?' });
    expect(['ERR_NO_HANDLER', 'ERR_REMOTE']).to.include(result.error?.code);
    expect(server.isOpen).to.equal(true);
  });

  it('should still answer requests that arrive while close() delivers its queue', async function () {
    const name = uniqueName('close-answers');
    // A raw server on the native binding: it never reads, so the client's close() has to wait.
    const rawServer = new binding.Channel(0, name, 4096, 1 << 20, 0o600, () => undefined, 0);
    try {
      const client = await openChannel(name, 'client', { closeTimeout: 500 });
      const answered: number[] = [];
      const failures: unknown[] = [];
      client.requests$.subscribe({
        next: (req) => {
          req.respond('ok');
          answered.push(req.id);
        },
        error: (err: unknown) => failures.push(err),
      });
      client.notifications$.subscribe({ error: (err: unknown) => failures.push(err) });
      for (let i = 0; i < 10; i++) client.notify(Buffer.alloc(900));
      expect(client.queuedBytes).to.be.above(0);
      const closing = client.close();
      rawServer.write(FrameKind.REQUEST, 7, 0, new Uint8Array(0));
      await closing;
      expect(failures, 'the streams must complete, not fail').to.deep.equal([]);
      expect(answered).to.deep.equal([7]);
      expect(client.state).to.equal('closed');
    } finally {
      rawServer.close();
    }
  });
});
