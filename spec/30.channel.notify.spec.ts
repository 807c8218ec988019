import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';

import { expect } from 'chai';
import { firstValueFrom, of, config as rxjsConfig, take, timeout, toArray } from 'rxjs';

import type { Channel } from '../lib/index';
import { expectRejectsCode, expectThrowsCode } from './helpers/expect-error';
import { uniqueName } from './helpers/names';
import { sha256 } from './helpers/payload';
import { Peer } from './helpers/peer';
import { channel, openChannel, releaseAll } from './helpers/resources';
import { reaches, waitUntil } from './helpers/wait';

/** Subscribes now (notifications$ is hot) and resolves with the next `count` notifications. */
function nextNotifications(ch: Channel, count: number): Promise<Buffer[]> {
  return firstValueFrom(ch.notifications$.pipe(take(count), toArray()));
}

describe('Channel#notify()', function () {
  afterEach(releaseAll);

  describe('server to client', function () {
    let server: Channel;
    let peer: Peer;
    beforeEach(async function () {
      const name = uniqueName('notify-s2c');
      server = await openChannel(name, 'server');
      peer = await Peer.spawn({ name, mode: 'client' });
      await reaches(server, 'connected');
    });

    it('should deliver a notification to a client in another process', async function () {
      server.notify('hello client');
      const [received] = await peer.collect(1);
      expect(received.text).to.equal('hello client');
      expect(received.isBuffer).to.equal(true);
    });

    it('should accept a string (as UTF-8), a Buffer and a Uint8Array', async function () {
      const text = 'héllo ✓ 𝄞';
      const bytes = Buffer.from([0, 1, 2, 254, 255]);
      server.notify(text);
      server.notify(bytes);
      server.notify(new Uint8Array([7, 8, 9]));
      const received = await peer.collect(3);
      expect(received[0].length).to.equal(Buffer.byteLength(text, 'utf8'));
      expect(received[0].text).to.equal(text);
      expect(received[1].sha256).to.equal(sha256(bytes));
      expect(received[2].sha256).to.equal(sha256(Buffer.from([7, 8, 9])));
    });

    it('should accept an ArrayBuffer, a DataView and typed arrays of any element type, as their bytes', async function () {
      const floats = new Float64Array([1.5, -2, Math.PI]);
      const backing = new ArrayBuffer(16);
      new Uint8Array(backing).set(Array.from({ length: 16 }, (_, i) => i));
      const inputs = [
        floats,
        new Int16Array([-1, 2, 300]),
        new DataView(backing, 4, 8),
        backing,
        new BigUint64Array([2n ** 64n - 1n]),
      ];
      for (const input of inputs) server.notify(input);
      const received = await peer.collect(inputs.length);
      const bytesOf = (v: ArrayBufferView | ArrayBuffer) =>
        ArrayBuffer.isView(v) ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : Buffer.from(v);
      expect(received.map((r) => r.sha256)).to.deep.equal(inputs.map((v) => sha256(bytesOf(v))));
      expect(received.map((r) => r.length)).to.deep.equal([24, 6, 8, 16, 8]);
    });

    it('should refuse what is not bytes or a string with ERR_INVALID_ARG_TYPE naming what it got', function () {
      const cases: Array<[unknown, RegExp]> = [
        [{ a: 1 }, /got an instance of Object$/],
        [[1, 2], /got an instance of Array$/],
        [42, /got type number \(42\)$/],
        [null, /got null$/],
        [undefined, /got undefined$/],
        [new Map(), /got an instance of Map$/],
      ];
      for (const [value, shown] of cases) {
        const err = expectThrowsCode(() => server.notify(value as string), 'ERR_INVALID_ARG_TYPE');
        expect(err.message).to.match(shown);
        expect(err.message).to.match(/ArrayBufferView/);
      }
    });

    it('should send only the bytes a Uint8Array view covers', async function () {
      const backing = Buffer.from('0123456789');
      server.notify(new Uint8Array(backing.buffer, backing.byteOffset + 3, 4));
      const [received] = await peer.collect(1);
      expect(received.text).to.equal('3456');
    });

    it('should preserve the order of 10 000 notifications', async function () {
      this.timeout(60000);
      const expected = Array.from({ length: 10000 }, (_, i) => `seq#${i}`);
      for (const text of expected) server.notify(text);
      const received = await peer.collect(expected.length);
      expect(received.map((r) => r.text)).to.deep.equal(expected);
    });

    it('should deliver an empty notification', async function () {
      server.notify('');
      server.notify(Buffer.alloc(0));
      server.notify('after');
      const received = await peer.collect(3);
      expect(received.map((r) => r.length)).to.deep.equal([0, 0, 5]);
    });
  });

  describe('client to server', function () {
    let client: Channel;
    let peer: Peer;
    beforeEach(async function () {
      const name = uniqueName('notify-c2s');
      peer = await Peer.spawn({ name, mode: 'server' });
      client = await openChannel(name, 'client');
    });

    it('should deliver a notification to a server in another process', async function () {
      client.notify('hello server');
      const [received] = await peer.collect(1);
      expect(received.text).to.equal('hello server');
    });

    it('should preserve the order of 10 000 notifications', async function () {
      this.timeout(60000);
      const expected = Array.from({ length: 10000 }, (_, i) => `up#${i}`);
      for (const text of expected) client.notify(text);
      const received = await peer.collect(expected.length);
      expect(received.map((r) => r.text)).to.deep.equal(expected);
    });
  });

  describe('notifications$', function () {
    it('should emit what the peer sends as Buffers, in order', async function () {
      this.timeout(60000);
      const name = uniqueName('notify-recv');
      const peer = await Peer.spawn({ name, mode: 'server' });
      const client = await openChannel(name, 'client');
      const received = nextNotifications(client, 10000);
      await peer.notify({ text: 'n', count: 10000 });
      const buffers = await received;
      expect(buffers.every((b) => Buffer.isBuffer(b))).to.equal(true);
      // Decoded only now: each Buffer must still hold its own bytes after later ones arrived
      // (the receiver owns it; it is not a view of a reused read buffer).
      expect(buffers.map((b) => b.toString('utf8'))).to.deep.equal(Array.from({ length: 10000 }, (_, i) => `n#${i}`));
    });

    it('should emit an empty notification as an empty Buffer', async function () {
      const name = uniqueName('notify-empty');
      const server = await openChannel(name, 'server');
      const peer = await Peer.spawn({ name, mode: 'client' });
      await reaches(server, 'connected');
      const received = nextNotifications(server, 2);
      await peer.notify({ text: '' });
      await peer.notify({ text: 'x' });
      const [empty, x] = await received;
      expect(Buffer.isBuffer(empty)).to.equal(true);
      expect(empty.length).to.equal(0);
      expect(x.toString()).to.equal('x');
    });

    it('should hand every notification to every subscriber, in order', async function () {
      const name = uniqueName('notify-multi');
      const peer = await Peer.spawn({ name, mode: 'server' });
      const client = await openChannel(name, 'client');
      const first = nextNotifications(client, 100);
      const second = nextNotifications(client, 100);
      await peer.notify({ text: 'm', count: 100 });
      const expected = Array.from({ length: 100 }, (_, i) => `m#${i}`);
      expect((await first).map(String)).to.deep.equal(expected);
      expect((await second).map(String)).to.deep.equal(expected);
    });

    it('should give nothing more to a subscriber once unsubscribed, even by another one during the same batch', async function () {
      const name = uniqueName('notify-unsub');
      const peer = await Peer.spawn({ name, mode: 'server' });
      const client = await openChannel(name, 'client');
      const seenByLater: string[] = [];
      const seenByFirst: string[] = [];
      // Subscribed first, so it runs first for each notification: at the third it unsubscribes the later one.
      const firstSub = client.notifications$.subscribe((b) => {
        seenByFirst.push(String(b));
        if (seenByFirst.length === 3) laterSub.unsubscribe();
      });
      const laterSub = client.notifications$.subscribe((b) => seenByLater.push(String(b)));
      await peer.notify({ text: 'u', count: 10 });
      await waitUntil(() => seenByFirst.length === 10);
      firstSub.unsubscribe();
      expect(seenByLater).to.deep.equal(['u#0', 'u#1']);
    });

    it('should start a subscriber added by a handler with the next notification', async function () {
      const name = uniqueName('notify-sub-during');
      const peer = await Peer.spawn({ name, mode: 'server' });
      const client = await openChannel(name, 'client');
      const seenByAdded: string[] = [];
      const sub = client.notifications$.subscribe((b) => {
        if (String(b) === 'a#4') sub.add(client.notifications$.subscribe((c) => seenByAdded.push(String(c))));
      });
      await peer.notify({ text: 'a', count: 10 });
      await waitUntil(() => seenByAdded.length === 5);
      sub.unsubscribe();
      expect(seenByAdded).to.deep.equal(['a#5', 'a#6', 'a#7', 'a#8', 'a#9']);
    });

    // RxJS's deprecated synchronous error handling keeps a subscriber's error only inside its own
    // error context, and drops it outside one: with it on, the error must not be lost either.
    for (const synchronousErrors of [false, true]) {
      it(`should go on delivering to the other subscribers when one throws, and report the error${synchronousErrors ? " (with RxJS's deprecated synchronous error handling)" : ''}`, async function () {
        const name = uniqueName('notify-throw');
        const peer = await Peer.spawn({ name, mode: 'server' });
        const client = await openChannel(name, 'client');
        const reported: unknown[] = [];
        // RxJS reports an error thrown by a subscriber's next() asynchronously: to this hook if
        // set, else as an uncaught exception.
        rxjsConfig.onUnhandledError = (err: unknown) => reported.push(err);
        rxjsConfig.useDeprecatedSynchronousErrorHandling = synchronousErrors;
        try {
          const thrower = client.notifications$.subscribe((b) => {
            if (String(b) === 't#1') throw new Error('subscriber bug');
          });
          const all = nextNotifications(client, 3);
          await peer.notify({ text: 't', count: 3 });
          expect((await all).map(String)).to.deep.equal(['t#0', 't#1', 't#2']);
          await waitUntil(() => reported.length === 1);
          thrower.unsubscribe();
        } finally {
          rxjsConfig.useDeprecatedSynchronousErrorHandling = false;
          rxjsConfig.onUnhandledError = null;
        }
        expect((reported[0] as Error).message).to.equal('subscriber bug');
        expect(client.state).to.equal('connected');
        const after = nextNotifications(client, 1);
        await peer.notify({ text: 'after' });
        expect(String((await after)[0])).to.equal('after');
      });
    }
  });

  describe('batching', function () {
    it('should deliver what a process notified in the same tick as its process.exit()', async function () {
      this.timeout(60000);
      const name = uniqueName('exit-batch');
      // One client: spawnSync blocks this event loop, which a server of many makes connections on.
      const server = await openChannel(name, 'server', { maxClients: 1 });
      const arriving = firstValueFrom(
        server.notifications$.pipe(take(3), toArray(), timeout({ first: 10_000, with: () => of([] as Buffer[]) })),
      );
      const libIndex = path.resolve(__dirname, '../lib/index.js');
      // Small notifications wait in this tick's batch; exit must write it before detaching.
      const script = `
        const { Channel } = require(${JSON.stringify(libIndex)});
        const client = new Channel(${JSON.stringify(name)}, 'client');
        client.open().then(() => {
          client.notify('one'); client.notify('two'); client.notify('three');
          process.exit(0);
        });`;
      const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30000 });
      expect(child.status, child.stderr).to.equal(0);
      expect((await arriving).map(String)).to.deep.equal(['one', 'two', 'three']);
    });
  });

  describe('at process exit', function () {
    const libIndex = path.resolve(__dirname, '../lib/index.js');
    const BIG = 8 << 20;

    /** Runs a client of `name` that sends 5 small notifications, 8 MiB, then 'after-big', then `ending`. */
    function exitingClient(name: string, ending: string, options = {}): ChildProcess {
      const script = `
        const { Channel } = require(${JSON.stringify(libIndex)});
        const client = new Channel(${JSON.stringify(name)}, 'client', ${JSON.stringify(options)});
        client.open().then(() => {
          process.stdout.write('open\\n');
          process.stdin.once('data', () => {
            for (let i = 0; i < 5; i++) client.notify('small ' + i);
            if (client.notify(Buffer.alloc(${BIG}, 7)) !== false) {
              console.error('the 8 MiB message was not queued');
              process.exit(3);
            }
            client.notify('after-big');
            ${ending}
          });
        });`;
      return spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'pipe'] });
    }

    /** Lets the client send, and resolves with how it exited and what it wrote to stderr. */
    async function release(child: ChildProcess): Promise<{ status: number | null; stderr: string }> {
      let stderr = '';
      child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      await new Promise<void>((resolve, reject) => {
        child.stdout!.once('data', () => resolve());
        child.once('exit', () => reject(new Error(`the client exited before it was open: ${stderr}`)));
      });
      child.stdin!.write('go\n');
      return { status: await exited, stderr };
    }

    const endings: Array<[string, string, number]> = [
      ['process.exit(0)', 'process.exit(0);', 0],
      ['an uncaught exception', "process.nextTick(() => { throw new Error('boom'); });", 1],
      ['the end of its work after unref()', 'client.unref(); process.stdin.unref();', 0],
    ];
    for (const [what, ending, expectedStatus] of endings) {
      it(`should deliver everything queued when the process ends through ${what}`, async function () {
        this.timeout(60000);
        const name = uniqueName('exit-queue');
        const server = await openChannel(name, 'server');
        const arriving = firstValueFrom(
          server.notifications$.pipe(take(7), toArray(), timeout({ first: 30_000, with: () => of([] as Buffer[]) })),
        );
        const { status, stderr } = await release(exitingClient(name, ending));
        expect(status, stderr).to.equal(expectedStatus);
        expect(stderr).not.to.match(/SHMCHANNEL_UNSENT/);
        const received = await arriving;
        expect(received.length, 'notifications received').to.equal(7);
        expect(received.slice(0, 5).map(String)).to.deep.equal([0, 1, 2, 3, 4].map((i) => `small ${i}`));
        expect(received[5].length).to.equal(BIG);
        expect(received[5].every((b) => b === 7)).to.equal(true);
        expect(String(received[6])).to.equal('after-big');
      });
    }

    it('should warn with SHMCHANNEL_UNSENT of what its peer did not read within closeTimeout', async function () {
      this.timeout(60000);
      const name = uniqueName('exit-unsent');
      const peer = await Peer.spawn({ name, mode: 'server', options: { ringCapacity: 65536 } });
      const child = exitingClient(name, 'process.exit(0);', { closeTimeout: 200 });
      try {
        await peer.waitFor('state', (e) => e.state === 'connected');
        process.kill(peer.pid, 'SIGSTOP');
        const { status, stderr } = await release(child);
        expect(status, stderr).to.equal(0);
        expect(stderr).to.match(/SHMCHANNEL_UNSENT/);
        expect(stderr).to.match(/exited with \d+ bytes unsent/);
      } finally {
        process.kill(peer.pid, 'SIGCONT');
        child.kill('SIGKILL');
      }
    });
  });

  describe('back-pressure', function () {
    // A 4 KiB ring and 2 KiB batches. 1000 B: two messages per batch, and the ring takes whole
    // batches. 680 B: the ring takes one frame of the third batch, the other waits in the batch
    // (stalled), which takes one more message before the queue does. 20 B: ~50 per batch.
    for (const size of [1000, 680, 20]) {
      it(`should throw ERR_QUEUE_FULL once ring and queue are full, then deliver everything accepted, in order (${size} B)`, async function () {
        this.timeout(60000);
        const name = uniqueName('queue-full');
        // No client reads yet: a 4 KiB ring and a 16 KiB queue bound fill in this loop.
        const maxQueuedBytes = 16 * 1024;
        // One client: what the server sends before it connects waits in the ring for it.
        const server = await openChannel(name, 'server', {
          ringCapacity: 4096,
          maxMessageSize: 1024,
          maxQueuedBytes,
          maxClients: 1,
        });
        const accepted: string[] = [];
        const inRing: boolean[] = [];
        let refused: unknown;
        let mostQueued = 0;
        for (let i = 0; i < 10_000 && refused === undefined; i++) {
          const text = `${i}:`.padEnd(size, '.');
          try {
            inRing.push(server.notify(text));
            accepted.push(text);
          } catch (err) {
            refused = err;
          }
          mostQueued = Math.max(mostQueued, server.queuedBytes);
        }
        expect((refused as { code?: string } | undefined)?.code).to.equal('ERR_QUEUE_FULL');
        expect(mostQueued).to.be.within(maxQueuedBytes - size, maxQueuedBytes);
        // Every message notify() said waits is counted (and at most a batch more).
        const waiting = inRing.filter((v) => !v).length * size;
        expect(server.queuedBytes).to.be.within(waiting, waiting + 2048);
        // Once one waits, all later ones wait too (nothing overtakes).
        expect(inRing.slice(inRing.indexOf(false)).every((v) => !v)).to.equal(true);
        expect(inRing.indexOf(false)).to.be.greaterThan(0);
        const peer = await Peer.spawn({ name, mode: 'client' });
        const received = await peer.collect(accepted.length);
        expect(received.map((r) => r.text)).to.deep.equal(accepted);
        await server.drained();
        expect(server.queuedBytes).to.equal(0);
      });
    }

    it('should return false from notify() once the ring is full, and resolve drained() when the peer has read it', async function () {
      const name = uniqueName('drained');
      // One client: the ring fills before it connects, and it reads what waits there.
      const server = await openChannel(name, 'server', { ringCapacity: 4096, maxMessageSize: 1024, maxClients: 1 });
      await server.drained(); // nothing waits: resolves at once
      const sent: string[] = [];
      let inRing = true;
      while (inRing) {
        const text = `${sent.length}:`.padEnd(1000, '.');
        inRing = server.notify(text);
        sent.push(text);
      }
      expect(sent.length, 'a 4 KiB ring holds a few 1000-byte messages').to.be.within(2, 8);
      expect(server.queuedBytes).to.be.above(0);
      let drained = false;
      const draining = server.drained().then(() => (drained = true));
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(drained, 'nobody has read yet').to.equal(false);
      const peer = await Peer.spawn({ name, mode: 'client' });
      const received = peer.collect(sent.length);
      await draining;
      expect(server.queuedBytes).to.equal(0);
      expect((await received).map((r) => r.text)).to.deep.equal(sent);
    });

    it('should keep the queue short when the sender awaits drained() on false', async function () {
      this.timeout(60000);
      const name = uniqueName('drained-loop');
      const server = await openChannel(name, 'server', { ringCapacity: 4096, maxMessageSize: 1024 });
      const peer = await Peer.spawn({ name, mode: 'client' });
      await reaches(server, 'connected');
      const count = 5000;
      const received = peer.collect(count);
      let waits = 0;
      let maxQueued = 0;
      for (let i = 0; i < count; i++) {
        const inRing = server.notify(`${i}:`.padEnd(700, '.'));
        maxQueued = Math.max(maxQueued, server.queuedBytes);
        if (!inRing) {
          waits++;
          await server.drained();
        }
      }
      const texts = (await received).map((r) => r.text?.split(':')[0]);
      expect(texts).to.deep.equal(Array.from({ length: count }, (_, i) => String(i)));
      expect(waits, 'a 4 KiB ring must fill many times over').to.be.above(10);
      // At most this tick's batch of small messages (half the 4 KiB ring) and the one refused.
      expect(maxQueued).to.be.at.most(2048 + 700);
    });

    it('should reject drained() with ERR_PEER_LOST when the reader dies before reading', async function () {
      const name = uniqueName('drained-lost');
      // One client: a server of many's drained() no longer counts a client that left.
      const server = await openChannel(name, 'server', { ringCapacity: 4096, maxClients: 1 });
      const peer = await Peer.spawn({ name, mode: 'client' });
      await reaches(server, 'connected');
      process.kill(peer.pid, 'SIGSTOP');
      while (server.notify(Buffer.alloc(512)));
      const draining = server.drained();
      const lost = expectRejectsCode(draining, 'ERR_PEER_LOST');
      await peer.kill('SIGKILL');
      await lost;
      expect(server.isOpen, 'a server outlives its client').to.equal(true);
      await server.drained();
    });

    it('should refuse notify() and drained() before open() as not open, whatever the message size', async function () {
      const server = channel(uniqueName('notify-idle'), 'server');
      const err = expectThrowsCode(() => server.notify('x'), 'ERR_CHANNEL_CLOSED');
      expect(err.message).to.match(/not open: call open\(\) first/);
      const rejected = await expectRejectsCode(server.drained(), 'ERR_CHANNEL_CLOSED');
      expect(rejected.message).to.match(/not open: call open\(\) first/);
    });

    it('should reject drained() with ERR_CHANNEL_CLOSED when closed with data waiting, or not open', async function () {
      const name = uniqueName('drained-closed');
      // One client: with none connected, the ring fills for the one to come.
      const server = await openChannel(name, 'server', { ringCapacity: 4096, closeTimeout: 20, maxClients: 1 });
      while (server.notify(Buffer.alloc(512)));
      const draining = server.drained();
      const warned = new Promise((resolve) => process.once('warning', resolve));
      await server.close();
      await expectRejectsCode(draining, 'ERR_CHANNEL_CLOSED');
      expect(((await warned) as { code?: string }).code).to.equal('SHMCHANNEL_UNSENT');
      await expectRejectsCode(server.drained(), 'ERR_CHANNEL_CLOSED');
    });
  });
});
