// The one error class and its factory: every error shmchannel throws or emits is a
// ShmChannelError with a Node-style `code`, and isShmChannelError tells them apart.
import { expect } from 'chai';

import { Channel, createError, isShmChannelError, SharedMemory, ShmChannelError } from '../lib/index';
import { uniqueName } from './helpers/names';

describe('createError()', function () {
  it('should make a ShmChannelError (an Error) with the code and message', function () {
    const err = createError('ERR_TIMEOUT', 'no answer in 5 ms');
    expect(err).to.be.instanceOf(ShmChannelError);
    expect(err).to.be.instanceOf(Error);
    expect(err.name).to.equal('ShmChannelError');
    expect(err.code).to.equal('ERR_TIMEOUT');
    expect(err.message).to.equal('no answer in 5 ms');
    expect(String(err)).to.equal('ShmChannelError: no answer in 5 ms');
    expect(err.stack)
      .to.be.a('string')
      .and.match(/^ShmChannelError: no answer in 5 ms\n/);
  });

  it('should carry errno, syscall, ownerPid, remoteCode and cause when given', function () {
    const cause = new Error('underneath');
    const err = createError('ERR_SHM_OPEN_FAILED', 'cannot open', {
      errno: 'EACCES',
      syscall: 'shm_open',
      ownerPid: 1234,
      remoteCode: 'E_REMOTE',
      cause,
    });
    expect(err).to.include({ errno: 'EACCES', syscall: 'shm_open', ownerPid: 1234, remoteCode: 'E_REMOTE' });
    expect(err.cause).to.equal(cause);
  });

  it('should leave out the details it was not given', function () {
    const err = createError('ERR_PROTOCOL', 'bad frame');
    expect([err.errno, err.syscall, err.ownerPid, err.remoteCode]).to.deep.equal([
      undefined,
      undefined,
      undefined,
      undefined,
    ]);
    expect('cause' in err).to.equal(false);
    // Not even as properties holding undefined: what a logger or an `in` check sees.
    for (const detail of ['errno', 'syscall', 'ownerPid', 'remoteCode']) expect(detail in err, detail).to.equal(false);
  });
});

describe('isShmChannelError()', function () {
  it('should be true for a ShmChannelError, of any code when no code is given', function () {
    expect(isShmChannelError(createError('ERR_TIMEOUT', 'x'))).to.equal(true);
    expect(isShmChannelError(new ShmChannelError('ERR_CODEC', 'x'))).to.equal(true);
  });

  it('should compare the code when one is given', function () {
    const err = createError('ERR_PEER_LOST', 'gone');
    expect(isShmChannelError(err, 'ERR_PEER_LOST')).to.equal(true);
    expect(isShmChannelError(err, 'ERR_TIMEOUT')).to.equal(false);
  });

  it('should be false for other errors, even with a code of ours, and for what is not an error', function () {
    const lookalike = Object.assign(new Error('x'), { code: 'ERR_TIMEOUT', name: 'ShmChannelError' });
    for (const other of [lookalike, new TypeError('x'), 'ERR_TIMEOUT', { code: 'ERR_TIMEOUT' }, null, undefined]) {
      expect(isShmChannelError(other), String(other)).to.equal(false);
      expect(isShmChannelError(other, 'ERR_TIMEOUT'), String(other)).to.equal(false);
    }
  });
});

describe('ShmChannelError from the API', function () {
  it('should be what an argument check throws', function () {
    let thrown: unknown;
    try {
      new Channel('no-slash', 'server');
    } catch (err) {
      thrown = err;
    }
    expect(isShmChannelError(thrown, 'ERR_INVALID_NAME')).to.equal(true);
  });

  it('should be what a failed system call becomes, with errno as a name and the syscall', function () {
    let thrown: unknown;
    try {
      SharedMemory.open(uniqueName('errors-missing'));
    } catch (err) {
      thrown = err;
    }
    expect(isShmChannelError(thrown, 'ERR_SHM_OPEN_FAILED')).to.equal(true);
    expect(thrown).to.include({ errno: 'ENOENT', syscall: 'shm_open' });
  });
});
