import { readdirSync } from 'node:fs';

import { expect } from 'chai';
import { firstValueFrom, lastValueFrom } from 'rxjs';

import { patternBuffer, sha256 } from './helpers/payload';
import { shmEntries, uniqueName } from './helpers/names';
import { Peer } from './helpers/peer';
import { openChannel, releaseAll } from './helpers/resources';
import { reaches } from './helpers/wait';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 60);

interface Sample {
  rssMiB: number;
  fds: number;
  threads: number;
}

function sample(): Sample {
  // With --expose-gc (.mocharc.json) RSS reflects what is live, not when V8 last collected.
  (globalThis as { gc?: () => void }).gc?.();
  return {
    rssMiB: process.memoryUsage.rss() / 2 ** 20,
    fds: readdirSync('/proc/self/fd').length,
    threads: readdirSync('/proc/self/task').length,
  };
}

describe('Soak', function () {
  afterEach(releaseAll);

  it(`should carry mixed traffic with peer restarts for ${SECONDS} s with flat RSS, fds and threads`, async function () {
    this.timeout((SECONDS + 120) * 1000);
    const before = sample();
    const name = uniqueName('soak');
    const server = await openChannel(name, 'server', { ringCapacity: 256 * 1024 });
    server.requests$.subscribe((req) => req.respond(req.data));
    const big = patternBuffer(1 << 20, 42);
    const bigHash = sha256(big);
    const totals = { cycles: 0, notificationsIn: 0, notificationsOut: 0, requests: 0, bigMessages: 0, kills: 0 };
    const samples: Sample[] = [];
    server.notifications$.subscribe(() => totals.notificationsIn++);
    const deadline = Date.now() + SECONDS * 1000;
    while (Date.now() < deadline) {
      const peer = await Peer.spawn({ name, mode: 'client' });
      await reaches(server, 'connected');
      await peer.handle({ kind: 'sha256' });
      const cycleEnd = Math.min(deadline, Date.now() + 5000);
      while (Date.now() < cycleEnd) {
        for (let i = 0; i < 200; i++) server.notify(`note ${i}`);
        totals.notificationsOut += 200;
        const echoes = await Promise.all(
          Array.from({ length: 50 }, (_, i) => lastValueFrom(server.request(`req ${i}`)).then((b) => b.toString())),
        );
        // The peer's sha256 handler answers "<length>:<sha256>" of what it got.
        echoes.forEach((echo, i) => expect(echo).to.equal(`${`req ${i}`.length}:${sha256(Buffer.from(`req ${i}`))}`));
        totals.requests += 50;
        await peer.notify({ text: 'from peer', count: 100 });
        const fromPeer = await peer.request({ text: 'ping' });
        expect(fromPeer.values.map((v) => v.text)).to.deep.equal(['ping']);
        const answer = await firstValueFrom(server.request(big));
        expect(answer.toString()).to.equal(`${big.length}:${bigHash}`);
        totals.requests += 2;
        totals.bigMessages++;
      }
      // Alternate a polite goodbye and a SIGKILL mid-traffic.
      if (totals.cycles % 2 === 0) {
        await peer.stop();
      } else {
        server.notify('in flight while the peer dies');
        await peer.kill('SIGKILL');
        totals.kills++;
      }
      await reaches(server, 'open');
      totals.cycles++;
      samples.push(sample());
    }
    await server.close();
    const after = sample();
    const first = samples[0];
    const last = samples[samples.length - 1];
    console.log(
      `      soak ${SECONDS} s: ${totals.cycles} peer cycles (${totals.kills} SIGKILLed), ${totals.notificationsOut} notifications out, ` +
        `${totals.notificationsIn} in, ${totals.requests} requests, ${totals.bigMessages} x 1 MiB`,
    );
    console.log(
      `      RSS MiB: start ${before.rssMiB.toFixed(0)}, after cycle 1 ${first.rssMiB.toFixed(0)}, last cycle ${last.rssMiB.toFixed(0)}, end ${after.rssMiB.toFixed(0)}; ` +
        `fds ${before.fds} -> ${after.fds}; threads ${before.threads} -> ${after.threads}`,
    );
    expect(totals.cycles).to.be.at.least(2);
    expect(after.fds, 'open file descriptors').to.equal(before.fds);
    expect(after.threads, 'threads (each open channel has a waker and a peer watch)').to.equal(before.threads);
    // Flat, with room for GC timing: growth from the first cycle to the last stays small.
    expect(last.rssMiB - first.rssMiB, 'RSS growth over the soak').to.be.below(64);
    expect(shmEntries(name)).to.deep.equal([]);
  });
});
