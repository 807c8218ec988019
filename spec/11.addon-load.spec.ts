import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { expect } from 'chai';

import { consumerEnv, describeResult, runCommand } from './helpers/commands';

const LIB = path.resolve(__dirname, '..', 'lib', 'index.js');

describe('Loading the native addon', function () {
  let dir: string;

  beforeEach(function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shmch-addon-'));
  });

  afterEach(function () {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Requires the library in a fresh process with SHMCHANNEL_ADDON pointing at `addon`. */
  async function loadWith(addon: string) {
    return runCommand(process.execPath, ['-e', `require(${JSON.stringify(LIB)}); console.log('loaded')`], {
      cwd: dir,
      env: consumerEnv({ SHMCHANNEL_ADDON: addon }),
      timeoutMs: 20000,
    });
  }

  it('should refuse a build for another version of the code, naming it and how to rebuild', async function () {
    // What an addon built before this code needed a new call looks like: the real one, minus
    // the revision it was built for (an older build has none, or another number).
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const real = (require('node-gyp-build') as { path(dir: string): string }).path(path.resolve(__dirname, '..', '..'));
    for (const revision of ['undefined', '1']) {
      const stale = path.join(dir, `stale-${revision}.js`);
      fs.writeFileSync(
        stale,
        `module.exports = { ...require(${JSON.stringify(real)}), bindingRevision: ${revision} };\n`,
      );
      const result = await loadWith(stale);
      expect(result.code, describeResult('require with a stale addon', result)).to.not.equal(0);
      expect(result.stdout).to.not.include('loaded');
      expect(result.stderr).to.include(`the native addon ${stale} was built from another version of shmchannel`);
      expect(result.stderr).to.include('npm rebuild shmchannel');
    }
  });

  it('should load the build next to the code', async function () {
    const result = await loadWith('');
    expect(result.code, describeResult('require', result)).to.equal(0);
    expect(result.stdout.trim()).to.equal('loaded');
  });
});
