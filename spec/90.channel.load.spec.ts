import { expect } from 'chai';

import { checkFloodMessage } from './helpers/payload';
import { uniqueName } from './helpers/names';
import { Peer } from './helpers/peer';
import { openChannel, releaseAll } from './helpers/resources';
import { reaches } from './helpers/wait';

const COUNT = Number(process.env.LOAD_COUNT ?? 1_000_000);

/** Blocks the event loop, like a reader busy with something else. */
function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // spin
  }
}

describe('A fast writer and a slow reader', function () {
  afterEach(releaseAll);

  it(`should deliver ${COUNT} notifications complete and in order, with a bounded writer queue and every request answered`, async function () {
    this.timeout(180_000);
    const name = uniqueName('load');
    const queueBound = 256 * 1024;
    // A small ring and message limit, so the writer's queue bound can be small too.
    const reader = await openChannel(name, 'server', { ringCapacity: 64 * 1024, maxMessageSize: 64 * 1024 });
    reader.requests$.subscribe((req) => req.respond(req.data));
    let expected = 0;
    let corrupt = 0;
    let outOfOrder = 0;
    const done = new Promise<void>((resolve) => {
      reader.notifications$.subscribe((message) => {
        const seq = checkFloodMessage(message);
        if (seq < 0) corrupt++;
        else if (seq !== expected) outOfOrder++;
        expected = seq + 1;
        // Every 50 000 messages the reader stalls, so the writer must hold back.
        if (expected % 50_000 === 0) busy(20);
        if (expected === COUNT) resolve();
      });
    });
    const writer = await Peer.spawn({ name, mode: 'client', options: { maxQueuedBytes: queueBound } });
    await reaches(reader, 'connected');
    const started = Date.now();
    const result = await writer.flood(COUNT, 56, 200);
    await done;
    const seconds = (Date.now() - started) / 1000;
    console.log(
      `      ${COUNT} msgs in ${seconds.toFixed(1)} s; writer: ${result.queueFullRetries} ERR_QUEUE_FULL retries, ` +
        `peak queue ${result.maxQueuedBytes} B (bound ${queueBound}), peak RSS ${(result.maxRssBytes / 2 ** 20).toFixed(0)} MiB, ` +
        `${result.requestsAnswered} requests answered`,
    );
    expect(corrupt, 'messages with a bad checksum').to.equal(0);
    expect(outOfOrder, 'messages out of order or missing').to.equal(0);
    expect(expected).to.equal(COUNT);
    expect(result.maxQueuedBytes).to.be.at.most(queueBound);
    expect(result.queueFullRetries, 'the stalls must have pushed back on the writer').to.be.above(0);
    expect(result.requestErrors).to.deep.equal([]);
    expect(result.requestsAnswered).to.equal(200);
  });
});

describe('Channel#close() with messages still queued', function () {
  afterEach(releaseAll);

  it('should deliver everything queued before saying goodbye', async function () {
    const name = uniqueName('drain');
    const reader = await Peer.spawn({ name, mode: 'server', options: { ringCapacity: 4096 } });
    const writer = await openChannel(name, 'client');
    const count = 2000;
    for (let i = 0; i < count; i++) writer.notify(`${i}:`.padEnd(512, '.'));
    expect(writer.queuedBytes, 'most of it must wait in the queue for this test to mean anything').to.be.above(100_000);
    await writer.close();
    const received = await reader.collect(count);
    expect(received.length).to.equal(count);
    expect(received.map((r) => Number(r.text?.split(':')[0]))).to.deep.equal(
      Array.from({ length: count }, (_, i) => i),
    );
  });

  it('should warn with SHMCHANNEL_UNSENT, not drop silently, when the peer does not read within closeTimeout', async function () {
    const name = uniqueName('stalled');
    const reader = await Peer.spawn({ name, mode: 'server', options: { ringCapacity: 4096 } });
    const writer = await openChannel(name, 'client', { closeTimeout: 300 });
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      process.kill(reader.pid, 'SIGSTOP');
      for (let i = 0; i < 100; i++) writer.notify(Buffer.alloc(512));
      await writer.close();
      await new Promise((resolve) => setImmediate(resolve));
      const unsent = warnings.find((w) => (w as Error & { code?: string }).code === 'SHMCHANNEL_UNSENT');
      expect(unsent, 'a SHMCHANNEL_UNSENT warning').to.not.equal(undefined);
      expect(unsent?.message).to.match(/bytes its peer did not read/);
    } finally {
      process.removeListener('warning', onWarning);
      process.kill(reader.pid, 'SIGCONT');
    }
  });
});
