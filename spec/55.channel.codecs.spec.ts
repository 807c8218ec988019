import { fork } from 'node:child_process';
import * as path from 'node:path';

import { expect } from 'chai';
import { firstValueFrom, lastValueFrom, of, take, toArray } from 'rxjs';

import {
  codecs,
  handleTypedWith,
  jsonCodec,
  structuredCloneCodec,
  Channel,
  TypedChannel,
  type Codec,
  type JsonValue,
  type ShmChannelError,
  type TypedIncomingRequest,
} from '../lib/index';
import type { FuzzReport } from './helpers/codec-fuzz-process';
import { expectRejectsCode, expectThrowsCode } from './helpers/expect-error';
import { uniqueName } from './helpers/names';
import { clientOfPeer, serverOfPeer } from './helpers/pairs';
import { openChannel, releaseAll } from './helpers/resources';
import { TypedPeer } from './helpers/typed-peer';
import type { CodecName } from './helpers/typed-peer-messages';
import { reaches, waitUntil } from './helpers/wait';

const NESTED = { name: 'nested', list: [1, 2.5, -3, { deep: [true, false, null, 'ü€𝄞'] }], empty: {}, none: [] };

/** A TypedChannel server in this process (every kind of message through `codec`), and a typed peer client. */
async function typedServerOfPeer<T>(label: string, codecName: CodecName) {
  const name = uniqueName(label);
  const server = await openChannel(name, 'server');
  const codec = codecs[codecName] as unknown as Codec<T>;
  const typed = new TypedChannel<T, T, T>(server, { notification: codec, request: codec, response: codec });
  const peer = await TypedPeer.spawn({ name, mode: 'client', codec: codecName });
  await reaches(server, 'connected');
  return { typed, peer, server };
}

/** Every value of a typed request. */
function ask<T>(typed: TypedChannel<unknown, T, T>, value: T): Promise<T[]> {
  return lastValueFrom(typed.request(value).pipe(toArray()));
}

/** Collects what `typed.codecErrors$` reports. */
function recordCodecErrors(typed: TypedChannel<unknown, unknown, unknown>): ShmChannelError[] {
  const errors: ShmChannelError[] = [];
  typed.codecErrors$.subscribe((err) => errors.push(err));
  return errors;
}

async function releaseEverything(): Promise<void> {
  await TypedPeer.stopAll();
  await releaseAll();
}

describe('codecs', function () {
  it('raw should pass Buffers through and refuse anything else', function () {
    const data = Buffer.from([0, 1, 255]);
    expect(codecs.raw.decode(codecs.raw.encode(data) as Buffer)).to.equal(data);
    const err = expectThrowsCode(() => typedOver(codecs.raw).notify('text' as unknown as Buffer), 'ERR_CODEC');
    expect(err.message).to.match(/^raw codec could not encode the notification/);
  });

  it('raw should take typed arrays, DataViews and ArrayBuffers as their bytes, and refuse objects naming their type', function () {
    const floats = new Float64Array([1.5, -2]);
    expect(codecs.raw.encode(floats as unknown as Buffer).equals(Buffer.from(floats.buffer))).to.equal(true);
    const backing = new Uint8Array([1, 2, 3, 4, 5]).buffer;
    expect([...codecs.raw.encode(new DataView(backing, 1, 3) as unknown as Buffer)]).to.deep.equal([2, 3, 4]);
    expect([...codecs.raw.encode(backing as unknown as Buffer)]).to.deep.equal([1, 2, 3, 4, 5]);
    const err = expectThrowsCode(() => typedOver(codecs.raw).notify(new Map() as unknown as Buffer), 'ERR_CODEC');
    expect(err.message).to.match(/got an instance of Map$/);
  });

  it('utf8 should round-trip any well-formed string', function () {
    for (const text of ['', 'plain', 'ünïcödé €', '𝄞 astral', '\u0000nul']) {
      expect(codecs.utf8.decode(Buffer.from(codecs.utf8.encode(text)))).to.equal(text);
    }
  });

  it('json should round-trip nested values', function () {
    const point = jsonCodec<{ x: number; tags: string[] }>();
    expect(point.decode(Buffer.from(point.encode({ x: 1, tags: ['a'] })))).to.deep.equal({ x: 1, tags: ['a'] });
    expect(codecs.json.decode(Buffer.from(codecs.json.encode(NESTED)))).to.deep.equal(NESTED);
    expect(codecs.json.decode(Buffer.from(codecs.json.encode(null)))).to.equal(null);
  });

  it('structuredClone should round-trip Maps, Sets, Dates, BigInts, typed arrays, Buffers and cycles', function () {
    const cyclic: { self?: unknown; when: Date } = { when: new Date(1_700_000_000_000) };
    cyclic.self = cyclic;
    const value = {
      map: new Map<unknown, unknown>([
        ['a', 1],
        [2, { b: [new Date(0)] }],
      ]),
      set: new Set(['x', 'y']),
      big: 2n ** 100n,
      floats: new Float64Array([0.5, -1]),
      buffer: Buffer.from('bytes'),
      undef: undefined,
      cyclic,
    };
    const copy = structuredCloneCodec<typeof value>().decode(Buffer.from(codecs.structuredClone.encode(value)));
    expect(copy.map).to.be.instanceOf(Map);
    expect(copy.map.get(2)).to.deep.equal({ b: [new Date(0)] });
    expect([...copy.set]).to.deep.equal(['x', 'y']);
    expect(copy.big).to.equal(2n ** 100n);
    expect(copy.floats).to.be.instanceOf(Float64Array);
    expect([...copy.floats]).to.deep.equal([0.5, -1]);
    expect(Buffer.isBuffer(copy.buffer) && copy.buffer.toString()).to.equal('bytes');
    expect('undef' in copy).to.equal(true);
    expect(copy.cyclic.self).to.equal(copy.cyclic);
    expect(copy.cyclic.when.getTime()).to.equal(1_700_000_000_000);
  });
});

describe('TypedChannel across processes', function () {
  afterEach(releaseEverything);

  it('should carry utf8 strings both ways (notifications and requests)', async function () {
    const { typed, peer } = await typedServerOfPeer<string>('codec-utf8', 'utf8');
    await peer.handle('echo');
    expect(await ask(typed, 'héllo 𝄞')).to.deep.equal(['héllo 𝄞']);
    const received = firstValueFrom(typed.notifications$);
    await peer.notify('from the peer ✓');
    expect(await received).to.equal('from the peer ✓');
    typed.notify('to the peer ✓');
    expect(await peer.collect(1)).to.deep.equal(['to the peer ✓']);
  });

  it('should carry nested JSON values both ways', async function () {
    const { typed, peer } = await typedServerOfPeer<JsonValue>('codec-json', 'json');
    await peer.handle('echo');
    expect(await ask(typed, NESTED)).to.deep.equal([NESTED]);
    typed.notify(NESTED);
    typed.notify([1, 'two']);
    expect(await peer.collect(2)).to.deep.equal([NESTED, [1, 'two']]);
    const result = await peer.request({ question: 42 });
    expect(result.error?.code).to.equal('ERR_NO_HANDLER');
  });

  it('should carry structured clones (Map, Date, Set, BigInt, typed arrays) both ways', async function () {
    const { typed, peer } = await typedServerOfPeer<unknown>('codec-clone', 'structuredClone');
    await peer.handle('echo');
    const value = new Map<string, unknown>([
      ['when', new Date(86_400_000)],
      ['ids', new Set([1n, 2n ** 64n])],
      ['samples', new Int32Array([-1, 0, 1])],
      ['nested', { list: [new Map([[1, 'one']])] }],
    ]);
    const [echoed] = await ask(typed, value);
    expect(echoed).to.be.instanceOf(Map);
    const map = echoed as Map<string, unknown>;
    expect((map.get('when') as Date).toISOString()).to.equal('1970-01-02T00:00:00.000Z');
    expect([...(map.get('ids') as Set<bigint>)]).to.deep.equal([1n, 2n ** 64n]);
    expect(map.get('samples'))
      .to.be.instanceOf(Int32Array)
      .and.deep.equal(new Int32Array([-1, 0, 1]));
    expect((map.get('nested') as { list: Map<number, string>[] }).list[0].get(1)).to.equal('one');
    typed.notify(value);
    const [arrived] = await peer.collect(1);
    expect(arrived).to.be.instanceOf(Map).and.deep.equal(value);
  });

  it('should carry raw Buffers like the untyped Channel', async function () {
    const { typed, peer } = await typedServerOfPeer<Buffer>('codec-raw', 'raw');
    await peer.handle('echo');
    const [echoed] = await ask(typed, Buffer.from([0, 0xff, 0x80]));
    expect(Buffer.isBuffer(echoed)).to.equal(true);
    expect([...echoed]).to.deep.equal([0, 0xff, 0x80]);
  });

  it('should decode every value of a streamed response', async function () {
    const { typed, peer } = await typedServerOfPeer<JsonValue>('codec-stream', 'json');
    await peer.handle('stream');
    expect(await ask(typed, { q: 'x' })).to.deep.equal([0, 1, 2].map((index) => ({ index, value: { q: 'x' } })));
  });

  it('should give typed requests to requests$ and encode respond(), next() and complete()', async function () {
    const { typed, peer } = await typedServerOfPeer<JsonValue>('codec-requests', 'json');
    const seen: JsonValue[] = [];
    typed.requests$.subscribe((request: TypedIncomingRequest<JsonValue, JsonValue>) => {
      seen.push(request.data);
      if (request.data === 'one') {
        request.respond({ answer: 1 });
      } else {
        request.next({ part: 'a' });
        request.next(['b']);
        request.complete();
      }
    });
    expect(await peer.request('one')).to.deep.equal({ values: [{ answer: 1 }] });
    expect(await peer.request({ many: true })).to.deep.equal({ values: [{ part: 'a' }, ['b']] });
    expect(seen).to.deep.equal(['one', { many: true }]);
  });

  it('should answer with the values of a handleTypedWith() handler', async function () {
    const { typed, peer } = await typedServerOfPeer<JsonValue>('codec-handle', 'json');
    typed.requests$.pipe(handleTypedWith((value) => of({ got: value }, 'done'))).subscribe();
    expect(await peer.request([1, { two: 2 }])).to.deep.equal({ values: [{ got: [1, { two: 2 }] }, 'done'] });
  });

  it('should cancel a typed request at the handler when the caller unsubscribes', async function () {
    const { typed, peer } = await typedServerOfPeer<JsonValue>('codec-cancel', 'json');
    await peer.handle('ticks');
    expect(await lastValueFrom(typed.request('tick').pipe(take(2), toArray()))).to.deep.equal(['tick', 'tick']);
    await peer.waitFor((e) => e.event === 'cancelled');
  });

  it('should keep ERR_NO_HANDLER while nobody subscribes to requests$', async function () {
    const { typed, peer } = await typedServerOfPeer<string>('codec-nohandler', 'utf8');
    expect((await peer.request('anyone?')).error?.code).to.equal('ERR_NO_HANDLER');
    const subscription = typed.requests$.subscribe((request) => request.respond('here'));
    expect(await peer.request('anyone?')).to.deep.equal({ values: ['here'] });
    subscription.unsubscribe();
    expect((await peer.request('anyone?')).error?.code).to.equal('ERR_NO_HANDLER');
  });
});

describe('TypedChannel codec failures', function () {
  afterEach(releaseEverything);

  it('should report a notification that is not JSON on codecErrors$ and keep notifications$ going', async function () {
    const { client, peer } = await clientOfPeer('codec-bad-note');
    const typed = new TypedChannel(client, { notification: codecs.json });
    const errors = recordCodecErrors(typed);
    const values: JsonValue[] = [];
    let ended = false;
    typed.notifications$.subscribe({
      next: (v) => values.push(v),
      error: () => (ended = true),
      complete: () => (ended = true),
    });
    await peer.notify({ text: '{"broken": ' });
    await peer.notify({ text: '{"fine": true}' });
    await waitUntil(() => values.length === 1);
    expect(values).to.deep.equal([{ fine: true }]);
    expect(errors).to.have.length(1);
    expect(errors[0].code).to.equal('ERR_CODEC');
    expect(errors[0].message).to.match(/^json codec could not decode the notification: /);
    expect(errors[0].cause).to.be.instanceOf(SyntaxError);
    expect(ended).to.equal(false);
  });

  it('should emit a SHMCHANNEL_CODEC process warning when nobody subscribes to codecErrors$', async function () {
    const { client, peer } = await clientOfPeer('codec-warning');
    const typed = new TypedChannel(client, { notification: codecs.utf8 });
    const warnings: (Error & { code?: string })[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const values: string[] = [];
      typed.notifications$.subscribe((v) => values.push(v));
      await peer.notify({ text: 'ok before' });
      await peer.notify({ size: 64, seed: 1 }); // pseudo-random bytes: not UTF-8
      await peer.notify({ text: 'ok after' });
      await waitUntil(() => values.length === 2 && warnings.some((w) => w.code === 'SHMCHANNEL_CODEC'));
      expect(values).to.deep.equal(['ok before', 'ok after']);
      const warning = warnings.find((w) => w.code === 'SHMCHANNEL_CODEC');
      expect(warning?.message).to.include('utf8 codec could not decode the notification');
    } finally {
      process.removeListener('warning', onWarning);
    }
  });

  it('should fail a request whose response is not JSON with ERR_CODEC and cancel it at the handler', async function () {
    const { client, peer } = await clientOfPeer('codec-bad-response');
    await peer.handle({ kind: 'ticks', ms: 20 }); // answers `"x"#0`, `"x"#1`, ...: not JSON
    const typed = new TypedChannel(client, { request: codecs.json, response: codecs.json });
    const err = await expectRejectsCode(lastValueFrom(typed.request('x')), 'ERR_CODEC');
    expect(err.message).to.match(/^json codec could not decode the response value 0: /);
    await peer.waitFor('cancelled');
    expect(client.isOpen).to.equal(true);
  });

  it('should answer a request that is not JSON with an ERR_CODEC error, without calling the handler', async function () {
    const { server, peer } = await serverOfPeer('codec-bad-request');
    const typed = new TypedChannel(server, { request: codecs.json, response: codecs.json });
    const errors = recordCodecErrors(typed);
    const handled: JsonValue[] = [];
    typed.requests$
      .pipe(
        handleTypedWith((value) => {
          handled.push(value);
          return [value];
        }),
      )
      .subscribe();
    const bad = await peer.request({ text: 'not json' });
    expect(bad.error).to.include({ code: 'ERR_REMOTE', remoteCode: 'ERR_CODEC' });
    expect(bad.error?.message).to.match(/^json codec could not decode the request \d+: /);
    expect(errors.map((e) => e.code)).to.deep.equal(['ERR_CODEC']);
    const good = await peer.request({ text: '{"ok":1}' });
    expect(good.error).to.equal(undefined);
    expect(good.values.map((v) => v.text)).to.deep.equal(['{"ok":1}']);
    expect(handled).to.deep.equal([{ ok: 1 }]);
  });

  it('should report garbage structured-clone bytes from a raw peer as ERR_CODEC, not crash', async function () {
    const { server, peer } = await serverOfPeer('codec-bad-clone');
    const typed = new TypedChannel(server, { notification: codecs.structuredClone });
    const errors = recordCodecErrors(typed);
    const values: unknown[] = [];
    typed.notifications$.subscribe((v) => values.push(v));
    await peer.notify({ size: 64, seed: 1 }); // pseudo-random bytes
    await peer.notify({ text: 'plain text' });
    await waitUntil(() => errors.length === 2);
    expect(errors.every((e) => e.code === 'ERR_CODEC' && e.message.startsWith('structuredClone codec'))).to.equal(true);
    expect(values).to.deep.equal([]);
    expect(server.state).to.equal('connected');
  });

  it('should throw ERR_CODEC synchronously from notify() and request() for values the codec refuses, sending nothing', async function () {
    const { typed, peer } = await typedServerOfPeer<JsonValue>('codec-encode', 'json');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    let err = expectThrowsCode(() => typed.notify(10n as unknown as JsonValue), 'ERR_CODEC');
    expect(err.message).to.match(/^json codec could not encode the notification: /);
    err = expectThrowsCode(() => typed.request(cyclic as JsonValue), 'ERR_CODEC');
    expect(err.message).to.match(/^json codec could not encode the request: /);
    expectThrowsCode(() => typed.notify(undefined as unknown as JsonValue), 'ERR_CODEC');
    typed.notify('after');
    expect(await peer.collect(1)).to.deep.equal(['after']);
  });

  it('should refuse what structuredClone and utf8 cannot encode', function () {
    const clone = typedOver(codecs.structuredClone);
    expectThrowsCode(() => clone.notify(() => 1), 'ERR_CODEC');
    expectThrowsCode(() => clone.notify(Symbol('s')), 'ERR_CODEC');
    const text = typedOver(codecs.utf8);
    expectThrowsCode(() => text.notify(42 as unknown as string), 'ERR_CODEC');
    expectThrowsCode(() => text.notify('lone \ud800 surrogate'), 'ERR_CODEC');
  });

  it('should fail the caller with ERR_REMOTE (remoteCode ERR_CODEC) when a handler answers with an unencodable value', async function () {
    const { typed, peer } = await typedServerOfPeer<unknown>('codec-bad-answer', 'structuredClone');
    await peer.handle('unencodable');
    const err = await expectRejectsCode(ask(typed, 'give me a function'), 'ERR_REMOTE');
    expect(err.remoteCode).to.equal('ERR_CODEC');
    expect(err.message).to.match(/^structuredClone codec could not encode the response to request \d+: /);
    await peer.handle('echo');
    expect(await ask(typed, 'still works')).to.deep.equal(['still works']);
  });

  it('should throw ERR_CODEC from respond() and leave the request open for error()', async function () {
    const { typed, peer } = await typedServerOfPeer<JsonValue>('codec-respond', 'json');
    const thrown: string[] = [];
    typed.requests$.subscribe((request) => {
      try {
        request.respond(1n as unknown as JsonValue);
      } catch (err) {
        thrown.push((err as ShmChannelError).code);
        request.error(err);
      }
    });
    const result = await peer.request('q');
    expect(thrown).to.deep.equal(['ERR_CODEC']);
    expect(result.error).to.include({ code: 'ERR_REMOTE', remoteCode: 'ERR_CODEC' });
  });

  it('should wrap any error a custom codec throws as ERR_CODEC with the original as cause', async function () {
    const { client, peer } = await clientOfPeer('codec-custom');
    await peer.handle({ kind: 'echo' });
    const failure = new Error('odd numbers only');
    const odd: Codec<number> = {
      name: 'odd',
      encode: (n) => String(n),
      decode: (data) => {
        const n = Number(data.toString());
        if (n % 2 === 0) throw failure;
        return n;
      },
    };
    const typed = new TypedChannel(client, { request: odd, response: odd });
    expect(await lastValueFrom(typed.request(3))).to.equal(3);
    const err = await expectRejectsCode(lastValueFrom(typed.request(4)), 'ERR_CODEC');
    expect(err.message).to.equal('odd codec could not decode the response value 0: odd numbers only');
    expect(err.cause).to.equal(failure);
  });

  it('should complete codecErrors$ when the channel closes', async function () {
    const server = await openChannel(uniqueName('codec-close'), 'server');
    const typed = new TypedChannel(server, { notification: codecs.json });
    let completed = false;
    typed.codecErrors$.subscribe({ complete: () => (completed = true) });
    await server.close();
    expect(completed).to.equal(true);
  });

  it('should never crash on random or mutated bytes (v8.deserialize, JSON, UTF-8 fuzz)', async function () {
    this.timeout(120000);
    const seed = Date.now() % 100000;
    const rounds = 20000;
    const child = fork(path.join(__dirname, 'helpers', 'codec-fuzz-process.js'), [String(seed), String(rounds)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let report: FuzzReport | undefined;
    child.on('message', (message: FuzzReport) => (report = message));
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
      child.on('exit', (c, s) => resolve([c, s])),
    );
    expect({ code, signal }, `fuzz seed ${seed}`).to.deep.equal({ code: 0, signal: null });
    expect(report, `fuzz seed ${seed}: no report`).to.not.equal(undefined);
    expect(report?.otherErrors, `fuzz seed ${seed}`).to.deep.equal([]);
    expect(report?.attempts).to.equal(rounds * 3);
    // The mutations must reach past the header: some of them decode.
    expect(report?.decoded).to.be.greaterThan(0);
    expect(report?.codecErrors).to.be.greaterThan(rounds);
  });
});

/**
 * A TypedChannel over a Channel that is never opened (it holds no segment): a codec failure
 * must throw before the Channel is reached, which would throw ERR_CHANNEL_CLOSED.
 */
function typedOver<T>(codec: Codec<T>): TypedChannel<T, T, T> {
  const unopened = new Channel(uniqueName('unopened'), 'server');
  return new TypedChannel<T, T, T>(unopened, { notification: codec, request: codec, response: codec });
}
