import { expect } from 'chai';

import { NAME_PREFIX, shmEntries } from './helpers/names';

// Every test closes its channels and stops its peers, so at any point between tests no
// segment of this run may remain. Checked by a test (last by file name) and, in case the
// files run in another order, once more by a root hook after everything.
describe('/dev/shm after the suite', function () {
  it('should hold no segment of this test run', function () {
    expect(shmEntries(NAME_PREFIX)).to.deep.equal([]);
  });
});

after('no segment of this test run is left in /dev/shm', function () {
  expect(shmEntries(NAME_PREFIX)).to.deep.equal([]);
});
