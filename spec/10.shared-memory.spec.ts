import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';

import { expect } from 'chai';

import { SharedMemory } from '../lib/index';
import { expectThrowsCode } from './helpers/expect-error';
import { shmExists, uniqueName } from './helpers/names';

describe('SharedMemory', function () {
  // Raw segments are the user's to unlink: every test's segments are closed and unlinked here.
  const opened: SharedMemory[] = [];
  const names: string[] = [];
  function create(size = 4096, label = 'mem'): SharedMemory {
    const name = uniqueName(label);
    names.push(name);
    const mem = SharedMemory.create(name, size);
    opened.push(mem);
    return mem;
  }
  function open(name: string): SharedMemory {
    const mem = SharedMemory.open(name);
    opened.push(mem);
    return mem;
  }
  afterEach(function () {
    for (const mem of opened.splice(0)) mem.close();
    for (const name of names.splice(0)) if (shmExists(name)) SharedMemory.unlink(name);
  });

  describe('SharedMemory.create()', function () {
    it('should create a segment of the given size in /dev/shm', function () {
      const mem = create(12288);
      expect(mem.size).to.equal(12288);
      expect(mem.buffer.length).to.equal(12288);
      expect(mem.isOpen).to.equal(true);
      expect(statSync(`/dev/shm${mem.name}`).size).to.equal(12288);
    });
    it('should expose the name it was created with', function () {
      const mem = create();
      expect(mem.name).to.equal(names[0]);
    });
    it('should create the segment with mode 0600 by default', function () {
      const mem = create();
      expect(statSync(`/dev/shm${mem.name}`).mode & 0o777).to.equal(0o600);
    });
    it('should create the segment with the given permissions', function () {
      const name = uniqueName('perm');
      names.push(name);
      opened.push(SharedMemory.create(name, 4096, { permissions: 0o640 }));
      expect(statSync(`/dev/shm${name}`).mode & 0o777).to.equal(0o640);
    });
    it('should refuse a name that already exists with ERR_ALREADY_OPEN', function () {
      const mem = create();
      mem.buffer.write('keep me');
      expectThrowsCode(() => SharedMemory.create(mem.name, 4096), 'ERR_ALREADY_OPEN');
      // The existing segment must be left alone.
      expect(open(mem.name).buffer.toString('utf8', 0, 7)).to.equal('keep me');
    });
    it('should refuse invalid names with ERR_INVALID_NAME', function () {
      for (const bad of ['no-slash', '/a/b', '', '/', `/${'x'.repeat(255)}`]) {
        expectThrowsCode(() => SharedMemory.create(bad, 4096), 'ERR_INVALID_NAME');
      }
    });
    it('should refuse a size of 0, a negative or a non-integer size with ERR_INVALID_SIZE', function () {
      const name = uniqueName('size');
      for (const bad of [0, -1, -4096, 1.5, NaN, Infinity]) {
        expectThrowsCode(() => SharedMemory.create(name, bad), 'ERR_INVALID_SIZE');
      }
      expect(shmExists(name)).to.equal(false);
    });
  });

  describe('SharedMemory.open()', function () {
    it('should open an existing segment with its size', function () {
      const mem = create(8192);
      const other = open(mem.name);
      expect(other.size).to.equal(8192);
      expect(other.name).to.equal(mem.name);
    });
    it('should share the bytes with another object, both ways (zero-copy)', function () {
      const mem = create();
      const other = open(mem.name);
      mem.buffer.write('written via mem', 10);
      expect(other.buffer.toString('utf8', 10, 25)).to.equal('written via mem');
      other.buffer.writeUInt32LE(0xdeadbeef, 100);
      expect(mem.buffer.readUInt32LE(100)).to.equal(0xdeadbeef);
    });
    it('should see the same bytes from a spawned process', function () {
      this.timeout(30000);
      const mem = create();
      mem.buffer.write('from-parent', 0);
      const libIndex = path.resolve(__dirname, '../lib/index.js');
      const script = `
        const { SharedMemory } = require(${JSON.stringify(libIndex)});
        const mem = SharedMemory.open(${JSON.stringify(mem.name)});
        process.stdout.write(mem.buffer.toString('utf8', 0, 11));
        mem.buffer.write('from-child', 100);
        mem.close();`;
      const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
      expect(child.stderr).to.equal('');
      expect(child.status).to.equal(0);
      expect(child.stdout).to.equal('from-parent');
      expect(mem.buffer.toString('utf8', 100, 110)).to.equal('from-child');
    });
    it('should fail for a missing name with ERR_SHM_OPEN_FAILED and errno ENOENT', function () {
      const err = expectThrowsCode(() => SharedMemory.open(uniqueName('missing')), 'ERR_SHM_OPEN_FAILED');
      expect(err.errno).to.equal('ENOENT');
    });
    it('should refuse invalid names with ERR_INVALID_NAME', function () {
      for (const bad of ['no-slash', '/a/b', '', `/${'x'.repeat(255)}`]) {
        expectThrowsCode(() => SharedMemory.open(bad), 'ERR_INVALID_NAME');
      }
    });
  });

  describe('SharedMemory#buffer', function () {
    it('should be the memory of the segment itself', function () {
      const mem = create();
      mem.buffer.write('in the file', 42);
      const file = readFileSync(`/dev/shm${mem.name}`);
      expect(file.toString('utf8', 42, 53)).to.equal('in the file');
    });
    it('should throw ERR_CHANNEL_CLOSED after close()', function () {
      const mem = create();
      mem.close();
      expectThrowsCode(() => mem.buffer, 'ERR_CHANNEL_CLOSED');
    });
  });

  describe('SharedMemory#close()', function () {
    it('should detach a buffer obtained before close (length 0, no crash)', function () {
      const mem = create();
      const kept = mem.buffer;
      kept.write('x');
      mem.close();
      expect(mem.isOpen).to.equal(false);
      expect(kept.length).to.equal(0);
      expect(kept[0]).to.equal(undefined);
      expect(kept.toString()).to.equal('');
    });
    it('should leave the segment and its bytes until unlink', function () {
      const mem = create();
      mem.buffer.write('still here');
      mem.close();
      expect(shmExists(mem.name)).to.equal(true);
      expect(open(mem.name).buffer.toString('utf8', 0, 10)).to.equal('still here');
    });
  });

  describe('SharedMemory#unlink()', function () {
    it('should remove the name from /dev/shm', function () {
      const mem = create();
      mem.unlink();
      expect(shmExists(mem.name)).to.equal(false);
      const err = expectThrowsCode(() => SharedMemory.open(mem.name), 'ERR_SHM_OPEN_FAILED');
      expect(err.errno).to.equal('ENOENT');
    });
    it('should keep existing mappings usable', function () {
      const mem = create();
      const other = open(mem.name);
      mem.unlink();
      mem.buffer.write('after unlink');
      expect(other.buffer.toString('utf8', 0, 12)).to.equal('after unlink');
    });
    it('should be available as static SharedMemory.unlink(name)', function () {
      const mem = create();
      mem.close();
      SharedMemory.unlink(mem.name);
      expect(shmExists(mem.name)).to.equal(false);
    });
    it('should fail with ERR_SHM_CLOSE_FAILED and errno ENOENT for a missing name', function () {
      const err = expectThrowsCode(() => SharedMemory.unlink(uniqueName('missing')), 'ERR_SHM_CLOSE_FAILED');
      expect(err.errno).to.equal('ENOENT');
    });
  });
});
