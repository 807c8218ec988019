// codecs, jsonCodec and structuredCloneCodec: what each codec makes of a value and of bytes.
// A TypedChannel carries them across processes: 56.typed-channel.spec.ts.
import { fork } from 'node:child_process';
import * as path from 'node:path';

import { expect } from 'chai';

import { codecs, jsonCodec, structuredCloneCodec, Channel, TypedChannel, type Codec } from '../lib/index';
import type { FuzzReport } from './helpers/codec-fuzz-process';
import { expectThrowsCode } from './helpers/expect-error';
import { uniqueName } from './helpers/names';

const NESTED = { name: 'nested', list: [1, 2.5, -3, { deep: [true, false, null, 'ü€𝄞'] }], empty: {}, none: [] };

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

  it('should refuse what structuredClone and utf8 cannot encode', function () {
    const clone = typedOver(codecs.structuredClone);
    expectThrowsCode(() => clone.notify(() => 1), 'ERR_CODEC');
    expectThrowsCode(() => clone.notify(Symbol('s')), 'ERR_CODEC');
    const text = typedOver(codecs.utf8);
    expectThrowsCode(() => text.notify(42 as unknown as string), 'ERR_CODEC');
    expectThrowsCode(() => text.notify('lone \ud800 surrogate'), 'ERR_CODEC');
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
