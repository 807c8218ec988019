// TypedChannel and the TypedIncomingRequest its requests$ emits: typed values through codecs,
// across processes, and every way a codec can fail. The codecs themselves: 55.codecs.spec.ts.
import { expect } from 'chai';
import { firstValueFrom, lastValueFrom, take, toArray } from 'rxjs';

import {
  codecs,
  handleTypedWith,
  TypedChannel,
  type Codec,
  type JsonValue,
  type ShmChannelError,
  type TypedIncomingRequest,
} from '../lib/index';
import { expectRejectsCode, expectThrowsCode } from './helpers/expect-error';
import { uniqueName } from './helpers/names';
import { clientOfPeer, serverOfPeer, typedServerOfPeer } from './helpers/pairs';
import { openChannel, releaseAll } from './helpers/resources';
import { waitUntil } from './helpers/wait';

const NESTED = { name: 'nested', list: [1, 2.5, -3, { deep: [true, false, null, 'ü€𝄞'] }], empty: {}, none: [] };

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

describe('TypedChannel across processes', function () {
  afterEach(releaseAll);

  it('should carry utf8 strings both ways (notifications and requests)', async function () {
    const { typed, peer } = await typedServerOfPeer<string>('codec-utf8', 'utf8');
    await peer.handle({ kind: 'echo' });
    expect(await ask(typed, 'héllo 𝄞')).to.deep.equal(['héllo 𝄞']);
    const received = firstValueFrom(typed.notifications$);
    await peer.notify({ value: 'from the peer ✓' });
    expect(await received).to.equal('from the peer ✓');
    typed.notify('to the peer ✓');
    expect(await peer.collect(1)).to.deep.equal(['to the peer ✓']);
  });

  it('should carry nested JSON values both ways', async function () {
    const { typed, peer } = await typedServerOfPeer<JsonValue>('codec-json', 'json');
    await peer.handle({ kind: 'echo' });
    expect(await ask(typed, NESTED)).to.deep.equal([NESTED]);
    typed.notify(NESTED);
    typed.notify([1, 'two']);
    expect(await peer.collect(2)).to.deep.equal([NESTED, [1, 'two']]);
    const result = await peer.request({ value: { question: 42 } });
    expect(result.error?.code).to.equal('ERR_NO_HANDLER');
  });

  it('should carry structured clones (Map, Date, Set, BigInt, typed arrays) both ways', async function () {
    const { typed, peer } = await typedServerOfPeer<unknown>('codec-clone', 'structuredClone');
    await peer.handle({ kind: 'echo' });
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
    await peer.handle({ kind: 'echo' });
    const [echoed] = await ask(typed, Buffer.from([0, 0xff, 0x80]));
    expect(Buffer.isBuffer(echoed)).to.equal(true);
    expect([...echoed]).to.deep.equal([0, 0xff, 0x80]);
  });

  it('should decode every value of a streamed response', async function () {
    const { typed, peer } = await typedServerOfPeer<JsonValue>('codec-stream', 'json');
    await peer.handle({ kind: 'stream', count: 3 });
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
    expect(await peer.request({ value: 'one' })).to.deep.equal({ values: [{ answer: 1 }] });
    expect(await peer.request({ value: { many: true } })).to.deep.equal({ values: [{ part: 'a' }, ['b']] });
    expect(seen).to.deep.equal(['one', { many: true }]);
  });

  it('should cancel a typed request at the handler when the caller unsubscribes', async function () {
    const { typed, peer } = await typedServerOfPeer<JsonValue>('codec-cancel', 'json');
    await peer.handle({ kind: 'ticks', ms: 20 });
    expect(await lastValueFrom(typed.request('tick').pipe(take(2), toArray()))).to.deep.equal(['tick', 'tick']);
    await peer.waitFor('cancelled');
  });

  it('should keep ERR_NO_HANDLER while nobody subscribes to requests$', async function () {
    const { typed, peer } = await typedServerOfPeer<string>('codec-nohandler', 'utf8');
    expect((await peer.request({ value: 'anyone?' })).error?.code).to.equal('ERR_NO_HANDLER');
    const subscription = typed.requests$.subscribe((request) => request.respond('here'));
    expect(await peer.request({ value: 'anyone?' })).to.deep.equal({ values: ['here'] });
    subscription.unsubscribe();
    expect((await peer.request({ value: 'anyone?' })).error?.code).to.equal('ERR_NO_HANDLER');
  });
});

describe('TypedChannel codec failures', function () {
  afterEach(releaseAll);

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
    const result = await peer.request({ value: 'q' });
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
});
