import { isMainThread } from 'node:worker_threads';

import { expect } from 'chai';
import { lastValueFrom } from 'rxjs';

import { shmExists, uniqueName } from './helpers/names';
import { Peer } from './helpers/peer';
import { openChannel, releaseAll } from './helpers/resources';
import { reaches } from './helpers/wait';

// The addon is context-aware: each worker thread loads its own instance of it, with its own
// classes and waker threads, and a channel opened in a worker works like one on the main
// thread. The other side is a real process wherever the point is crossing processes.
describe('Channel in worker_threads', function () {
  afterEach(releaseAll);

  it('should let a client in a worker exchange requests and notifications with a server process', async function () {
    const name = uniqueName('wt-client');
    const peer = await Peer.spawn({ name, mode: 'server' });
    await peer.handle({ kind: 'upper' });
    const thread = await Peer.spawn({ name, mode: 'client', thread: true });
    expect(isMainThread).to.equal(true);
    expect(thread.threadId).to.be.greaterThan(0);

    expect(await thread.ask('asked from a worker')).to.equal('ASKED FROM A WORKER');

    await thread.handle({ kind: 'upper' });
    const answer = await peer.request({ text: 'asked from a process' });
    expect(answer.error).to.equal(undefined);
    expect(answer.values.map((v) => v.text)).to.deep.equal(['ASKED FROM A PROCESS']);

    await thread.notify({ text: 'note from a worker' });
    expect((await peer.collect(1)).map((n) => n.text)).to.deep.equal(['note from a worker']);

    await peer.notify({ text: 'note from a process' });
    expect((await thread.collect(1)).map((n) => n.text)).to.deep.equal(['note from a process']);
  });

  it('should let a server in a worker serve a client process, and unlink its segment on close()', async function () {
    const name = uniqueName('wt-server');
    const thread = await Peer.spawn({ name, mode: 'server', thread: true });
    await thread.handle({ kind: 'upper' });
    const peer = await Peer.spawn({ name, mode: 'client' });
    await peer.handle({ kind: 'upper' });

    const answer = await peer.request({ text: 'to the worker' });
    expect(answer.values.map((v) => v.text)).to.deep.equal(['TO THE WORKER']);
    expect(await thread.ask('from the worker')).to.equal('FROM THE WORKER');

    await peer.notify({ text: 'note to the worker' });
    await thread.notify({ text: 'note from the worker' });
    expect((await thread.collect(1)).map((n) => n.text)).to.deep.equal(['note to the worker']);
    expect((await peer.collect(1)).map((n) => n.text)).to.deep.equal(['note from the worker']);

    expect(shmExists(name)).to.equal(true);
    await thread.close();
    expect(shmExists(name)).to.equal(false);
    await peer.waitFor('state', (e) => e.state === 'closed');
  });

  it('should run several workers with a channel each and one on the main thread, all at once', async function () {
    const WORKERS = 3;
    const REQUESTS = 25;
    const names = Array.from({ length: WORKERS + 1 }, (_, i) => uniqueName(`wt-many${i}`));
    const peers = await Promise.all(names.map((name) => Peer.spawn({ name, mode: 'server' })));
    await Promise.all(peers.map((peer) => peer.handle({ kind: 'upper' })));
    const threads = await Promise.all(
      names.slice(0, WORKERS).map((name) => Peer.spawn({ name, mode: 'client', thread: true })),
    );
    const main = await openChannel(names[WORKERS], 'client');
    expect(new Set(threads.map((t) => t.threadId)).size).to.equal(WORKERS);

    // Every channel busy at the same time, each with its own words, so crossed wires show.
    const askAll = (ask: (text: string) => Promise<string>, who: string) =>
      Promise.all(Array.from({ length: REQUESTS }, (_, k) => ask(`${who} request ${k}`)));
    const answers = await Promise.all([
      ...threads.map((thread, i) => askAll((text) => thread.ask(text), `worker${i}`)),
      askAll(async (text) => (await lastValueFrom(main.request(text))).toString('utf8'), 'main'),
    ]);
    const expected = [...threads.map((_, i) => `worker${i}`), 'main'].map((who) =>
      Array.from({ length: REQUESTS }, (_, k) => `${who} request ${k}`.toUpperCase()),
    );
    expect(answers).to.deep.equal(expected);

    await Promise.all(peers.map((peer, i) => peer.notify({ text: `note for ${i}` })));
    const received = await Promise.all(threads.map((thread) => thread.collect(1)));
    expect(received.map((notes) => notes.map((n) => n.text))).to.deep.equal(threads.map((_, i) => [`note for ${i}`]));
  });

  it('should connect a server in a worker with a client on the main thread of the same process', async function () {
    const name = uniqueName('wt-local');
    const thread = await Peer.spawn({ name, mode: 'server', thread: true });
    await thread.handle({ kind: 'upper' });
    const client = await openChannel(name, 'client');
    expect((await lastValueFrom(client.request('between threads'))).toString('utf8')).to.equal('BETWEEN THREADS');
    const received = new Promise<string>((resolve) =>
      client.notifications$.subscribe((b) => resolve(b.toString('utf8'))),
    );
    await thread.notify({ text: 'from the worker thread' });
    expect(await received).to.equal('from the worker thread');
  });

  it('should unlink the segment of a server whose worker is terminated, and leave the process working', async function () {
    const name = uniqueName('wt-term');
    const thread = await Peer.spawn({ name, mode: 'server', thread: true });
    const peer = await Peer.spawn({ name, mode: 'client' });
    await thread.waitFor('state', (e) => e.state === 'connected');

    await thread.kill();
    expect(thread.isRunning).to.equal(false);
    expect(shmExists(name)).to.equal(false);
    await peer.waitFor('state', (e) => e.state === 'closed');

    // The name is free again, and this process still opens channels on it.
    const server = await openChannel(name, 'server');
    server.requests$.subscribe((req) => req.respond(req.data));
    const next = await Peer.spawn({ name, mode: 'client' });
    await reaches(server, 'connected');
    expect((await next.request({ text: 'after the worker' })).values.map((v) => v.text)).to.deep.equal([
      'after the worker',
    ]);
  });

  it('should survive workers terminated while their channels are busy (wake-ups in flight)', async function () {
    this.timeout(120000);
    // A wake-up delivered to a worker that is terminating cannot run JavaScript; the addon once
    // turned that into a C++ exception that aborted the whole process.
    for (let round = 0; round < 6; round++) {
      const name = uniqueName(`wt-busy-${round}`);
      const thread = await Peer.spawn({ name, mode: 'server', thread: true });
      const peer = await Peer.spawn({ name, mode: 'client' });
      await thread.waitFor('state', (e) => e.state === 'connected');
      // The flood fails once the server is gone; only this process surviving matters here.
      const flooding = peer.flood(1_000_000, 64, 100).catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 10 + 15 * round));
      await thread.kill();
      expect(shmExists(name)).to.equal(false);
      await flooding;
      await peer.stop();
    }
  });

  it('should let the server take the next client after a worker holding a client is terminated', async function () {
    const name = uniqueName('wt-term-client');
    const peer = await Peer.spawn({ name, mode: 'server' });
    await peer.handle({ kind: 'upper' });
    const first = await Peer.spawn({ name, mode: 'client', thread: true });
    expect(await first.ask('first')).to.equal('FIRST');

    await first.kill();
    await peer.waitFor('state', (e) => e.state === 'peer-lost');

    const second = await Peer.spawn({ name, mode: 'client', options: { connectTimeout: 10000 }, thread: true });
    expect(await second.ask('second')).to.equal('SECOND');
  });
});
