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
