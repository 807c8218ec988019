// OutboundPool (lib/outbound-pool.ts), the memory the outgoing queue copies unsent large messages
// into, on its own: what it copies, which blocks it keeps for the next copy, and how many.
import { expect } from 'chai';

import { OutboundPool } from '../lib/outbound-pool';
import { KiB, MiB, patternBuffer } from './helpers/payload';

describe('OutboundPool (lib/outbound-pool.ts)', function () {
  describe('#copy()', function () {
    it('should return a copy of the bytes, not a view of them, small or large', function () {
      const pool = new OutboundPool();
      for (const length of [0, 1, 1000, OutboundPool.MIN_BLOCK - 1, OutboundPool.MIN_BLOCK, 300 * KiB]) {
        const data = patternBuffer(length, length);
        const copy = pool.copy(data);
        expect(copy.equals(data), `${length} B`).to.equal(true);
        data.fill(0);
        expect(copy.equals(patternBuffer(length, length)), `${length} B, after the original changed`).to.equal(true);
      }
    });

    it('should take a large copy from a block of its size class: four to each power of two, wasting at most a quarter', function () {
      const pool = new OutboundPool();
      const classOf = (length: number) => pool.copy(Buffer.alloc(length)).buffer.byteLength;
      expect(
        [64 * KiB, 64 * KiB + 1, 80 * KiB, 100 * KiB, 128 * KiB, 128 * KiB + 1, MiB, MiB + 1].map(classOf),
      ).to.deep.equal([64 * KiB, 80 * KiB, 80 * KiB, 112 * KiB, 128 * KiB, 160 * KiB, MiB, 1.25 * MiB]);
      for (let length = OutboundPool.MIN_BLOCK; length < 4 * MiB; length = Math.ceil(length * 1.13)) {
        const block = classOf(length);
        expect(block - length, `${length} B in a block of ${block}`)
          .to.be.at.least(0)
          .and.at.most(block / 4);
      }
    });
  });

  describe('#release()', function () {
    it('should give a released block to the next copy of its size class', function () {
      const pool = new OutboundPool();
      const first = pool.copy(patternBuffer(100 * KiB, 1));
      pool.release(first);
      const second = pool.copy(patternBuffer(110 * KiB, 2)); // the same class, 112 KiB
      expect(second.buffer).to.equal(first.buffer);
      expect(second.equals(patternBuffer(110 * KiB, 2))).to.equal(true);
    });

    it('should not give a block that is in use to another copy', function () {
      const pool = new OutboundPool();
      const first = pool.copy(Buffer.alloc(100 * KiB));
      const second = pool.copy(Buffer.alloc(100 * KiB));
      expect(second.buffer).to.not.equal(first.buffer);
      pool.release(first);
      expect(pool.copy(Buffer.alloc(90 * KiB)).buffer).to.not.equal(first.buffer); // another class, 96 KiB
    });

    it('should keep no small copies: each comes from the Node allocator', function () {
      const pool = new OutboundPool();
      const small = pool.copy(Buffer.alloc(OutboundPool.MIN_BLOCK - 1));
      pool.release(small);
      expect(pool.copy(Buffer.alloc(OutboundPool.MIN_BLOCK - 1)).buffer).to.not.equal(small.buffer);
    });

    it(`should keep idle blocks up to ${OutboundPool.MAX_IDLE_BYTES / MiB} MiB, and let the rest go`, function () {
      const pool = new OutboundPool();
      const blocks = Array.from({ length: 20 }, () => pool.copy(Buffer.alloc(2 * MiB)));
      for (const block of blocks) pool.release(block);
      const again = Array.from({ length: 20 }, () => pool.copy(Buffer.alloc(2 * MiB)));
      const reused = again.filter((copy) => blocks.some((block) => block.buffer === copy.buffer));
      expect(reused).to.have.length(OutboundPool.MAX_IDLE_BYTES / (2 * MiB));
    });
  });

  describe('#clear()', function () {
    it('should drop every idle block', function () {
      const pool = new OutboundPool();
      const block = pool.copy(Buffer.alloc(100 * KiB));
      pool.release(block);
      pool.clear();
      expect(pool.copy(Buffer.alloc(100 * KiB)).buffer).to.not.equal(block.buffer);
    });
  });
});
