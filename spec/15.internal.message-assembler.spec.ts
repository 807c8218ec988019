// MessageAssembler (lib/protocol.ts), where a channel joins the fragments of a message it
// reads, on its own: what it accepts, and the out-of-step fragments it refuses as ERR_PROTOCOL.
import { expect } from 'chai';

import { FrameKind, MessageAssembler } from '../lib/protocol';
import { expectThrowsCode } from './helpers/expect-error';
import { patternBuffer } from './helpers/payload';

/** An assembler whose messages are fresh Buffers, and the lengths it was asked for. */
function assembler(): { assembler: MessageAssembler; allocated: number[] } {
  const allocated: number[] = [];
  return {
    allocated,
    assembler: new MessageAssembler((length) => {
      allocated.push(length);
      return Buffer.alloc(length, 0xee);
    }),
  };
}

/** `message` cut into fragments of `size` bytes (the last one shorter). */
function fragments(message: Buffer, size: number): Buffer[] {
  const parts: Buffer[] = [];
  for (let at = 0; at < message.length; at += size) parts.push(message.subarray(at, at + size));
  return parts;
}

describe('MessageAssembler (lib/protocol.ts)', function () {
  describe('#push()', function () {
    it('should return a message of one fragment at once, copied into memory of its own, with its kind and id', function () {
      const { assembler: a, allocated } = assembler();
      const chunk = Buffer.from('whole');
      const message = a.push(FrameKind.NOTIFY, 0, 5, chunk);
      expect(message?.toString()).to.equal('whole');
      expect([a.kind, a.id]).to.deep.equal([FrameKind.NOTIFY, 0]);
      expect(allocated).to.deep.equal([5]);
      // The read batch the fragment came in is reused: the message must not be a view of it.
      chunk.write('reuse');
      expect(message?.toString()).to.equal('whole');
    });

    it('should join fragments in order, returning nothing until the last', function () {
      const { assembler: a, allocated } = assembler();
      const whole = patternBuffer(10_000, 1);
      const parts = fragments(whole, 3000);
      const results = parts.map((part) => a.push(FrameKind.RESPONSE, 42, whole.length, part));
      expect(results.slice(0, -1)).to.deep.equal([undefined, undefined, undefined]);
      expect(results.at(-1)?.equals(whole)).to.equal(true);
      expect([a.kind, a.id]).to.deep.equal([FrameKind.RESPONSE, 42]);
      expect(allocated).to.deep.equal([10_000]);
    });

    it('should complete an empty message at once', function () {
      const { assembler: a } = assembler();
      expect(a.push(FrameKind.COMPLETE, 3, 0, Buffer.alloc(0))).to.deep.equal(Buffer.alloc(0));
      expect(a.missing()).to.equal(undefined);
    });

    it('should take the messages one after the other, each in memory of its own', function () {
      const { assembler: a, allocated } = assembler();
      const first = a.push(FrameKind.NOTIFY, 0, 3, Buffer.from('one'));
      expect(a.push(FrameKind.REQUEST, 7, 7, Buffer.from('tw'))).to.equal(undefined);
      const second = a.push(FrameKind.REQUEST, 7, 7, Buffer.from('o two'));
      expect([first?.toString(), second?.toString()]).to.deep.equal(['one', 'two two']);
      expect([a.kind, a.id]).to.deep.equal([FrameKind.REQUEST, 7]);
      expect(allocated).to.deep.equal([3, 7]);
    });
  });

  describe('#missing() and #filledIn()', function () {
    it('should let the rest of a message be written in place, then complete it', function () {
      const { assembler: a } = assembler();
      const whole = patternBuffer(5000, 2);
      expect(a.missing()).to.equal(undefined);
      expect(a.push(FrameKind.NOTIFY, 0, whole.length, whole.subarray(0, 1000))).to.equal(undefined);
      const rest = a.missing();
      expect(rest?.length).to.equal(4000);
      whole.copy(rest!, 0, 1000, 3000);
      expect(a.filledIn(2000)).to.equal(undefined);
      expect(a.missing()?.length).to.equal(2000);
      whole.copy(a.missing()!, 0, 3000);
      expect(a.filledIn(2000)?.equals(whole)).to.equal(true);
      expect(a.missing()).to.equal(undefined);
    });
  });

  describe('out-of-step fragments', function () {
    it('should refuse a first fragment longer than its message with ERR_PROTOCOL', function () {
      const { assembler: a } = assembler();
      const err = expectThrowsCode(() => a.push(FrameKind.NOTIFY, 0, 4, Buffer.from('12345')), 'ERR_PROTOCOL');
      expect(err.message).to.equal('protocol violation by the peer: fragment longer than its message');
    });

    for (const [what, kind, id, total] of [
      ['another id', FrameKind.RESPONSE, 8, 6000],
      ['another kind', FrameKind.ERROR, 7, 6000],
      ['another total', FrameKind.RESPONSE, 7, 6001],
    ] as const) {
      it(`should refuse a fragment of ${what} while a message is in progress with ERR_PROTOCOL`, function () {
        const { assembler: a } = assembler();
        a.push(FrameKind.RESPONSE, 7, 6000, Buffer.alloc(1000));
        const err = expectThrowsCode(() => a.push(kind, id, total, Buffer.alloc(1000)), 'ERR_PROTOCOL');
        expect(err.message).to.equal(
          'protocol violation by the peer: fragment does not continue the message in progress',
        );
      });
    }

    it('should refuse a fragment that runs past the end of its message with ERR_PROTOCOL', function () {
      const { assembler: a } = assembler();
      a.push(FrameKind.NOTIFY, 0, 6000, Buffer.alloc(4000));
      const err = expectThrowsCode(() => a.push(FrameKind.NOTIFY, 0, 6000, Buffer.alloc(2001)), 'ERR_PROTOCOL');
      expect(err.message).to.equal('protocol violation by the peer: fragment overruns its message');
    });

    it('should refuse filledIn() past the end, or with no message in progress, with ERR_PROTOCOL', function () {
      const { assembler: a } = assembler();
      expectThrowsCode(() => a.filledIn(1), 'ERR_PROTOCOL');
      a.push(FrameKind.NOTIFY, 0, 100, Buffer.alloc(40));
      expectThrowsCode(() => a.filledIn(61), 'ERR_PROTOCOL');
      expect(a.filledIn(60)?.length).to.equal(100);
    });

    it('should start afresh after reset(): the message in progress is dropped', function () {
      const { assembler: a } = assembler();
      a.push(FrameKind.RESPONSE, 7, 6000, Buffer.alloc(1000));
      expectThrowsCode(() => a.push(FrameKind.NOTIFY, 0, 5, Buffer.from('fresh')), 'ERR_PROTOCOL');
      a.reset();
      expect(a.missing()).to.equal(undefined);
      expect(a.push(FrameKind.NOTIFY, 0, 5, Buffer.from('fresh'))?.toString()).to.equal('fresh');
    });
  });
});
