// validateName: the rule every segment name must pass (a POSIX shm name: '/' and at least one
// more character, no other '/', at most 255 bytes), the same check Channel and SharedMemory make.
import { expect } from 'chai';

import { validateName } from '../lib/index';
import { expectThrowsCode } from './helpers/expect-error';
import { shmExists, uniqueName } from './helpers/names';

describe('validateName()', function () {
  it('should accept POSIX shm names and return nothing', function () {
    const longest = `/${'x'.repeat(254)}`; // 255 bytes
    const longestInBytes = `/${'é'.repeat(127)}`; // 128 characters, 255 bytes
    for (const good of ['/a', '/my-channel', '/with space', '/dots.in.it', '/...', '/ü€𝄞', longest, longestInBytes]) {
      expect(validateName(good), good).to.equal(undefined);
    }
  });

  it('should only check the name: a valid one is not created', function () {
    const name = uniqueName('validate-only');
    validateName(name);
    expect(shmExists(name)).to.equal(false);
  });

  it("should refuse a name that does not start with '/' with ERR_INVALID_NAME", function () {
    for (const bad of ['', 'no-slash', 'a/', ' /a']) {
      const err = expectThrowsCode(() => validateName(bad), 'ERR_INVALID_NAME');
      expect(err.message, JSON.stringify(bad)).to.equal(`invalid name ${JSON.stringify(bad)}: must start with '/'`);
    }
  });

  it("should refuse '/' alone with ERR_INVALID_NAME", function () {
    const err = expectThrowsCode(() => validateName('/'), 'ERR_INVALID_NAME');
    expect(err.message).to.match(/must have a character after '\/'$/);
  });

  it("should refuse a '/' after the first with ERR_INVALID_NAME", function () {
    for (const bad of ['//', '/a/b', '/a/', '/dir/']) {
      const err = expectThrowsCode(() => validateName(bad), 'ERR_INVALID_NAME');
      expect(err.message, bad).to.match(/may not contain '\/' after the first$/);
    }
  });

  it("should refuse '/.' and '/..', the directory /dev/shm and its parent, with ERR_INVALID_NAME", function () {
    for (const bad of ['/.', '/..']) {
      const err = expectThrowsCode(() => validateName(bad), 'ERR_INVALID_NAME');
      expect(err.message, bad).to.match(/'\.' and '\.\.' name directories, not segments$/);
    }
  });

  it('should refuse a name longer than 255 bytes with ERR_INVALID_NAME, counting UTF-8 bytes', function () {
    const tooLong = `/${'x'.repeat(255)}`; // 256 bytes
    const tooLongInBytes = `/${'é'.repeat(128)}`; // 129 characters, 257 bytes
    for (const bad of [tooLong, tooLongInBytes]) {
      const err = expectThrowsCode(() => validateName(bad), 'ERR_INVALID_NAME');
      expect(err.message).to.match(/longer than 255 bytes$/);
    }
  });

  it('should refuse a name with a NUL character with ERR_INVALID_NAME', function () {
    for (const bad of ['/a\0b', '/\0', '/trailing\0']) {
      const err = expectThrowsCode(() => validateName(bad), 'ERR_INVALID_NAME');
      expect(err.message).to.equal('name must not contain NUL characters');
    }
  });

  it('should refuse what is not a string with ERR_INVALID_NAME, naming its type', function () {
    for (const [bad, type] of [
      [undefined, 'undefined'],
      [null, 'object'],
      [42, 'number'],
      [Buffer.from('/a'), 'object'],
      [Symbol('/a'), 'symbol'],
    ] as const) {
      const err = expectThrowsCode(() => validateName(bad), 'ERR_INVALID_NAME');
      expect(err.message).to.equal(`name must be a string like '/my-channel', got ${type}`);
    }
  });
});
