import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { expect } from 'chai';

import { binding } from '../lib/load-addon';
import * as native from '../lib/native';
import { constantMismatches, SHARED_CONSTANTS } from '../lib/native-constants';
import type { NativeConstants } from '../lib/native';
import * as protocol from '../lib/protocol';
import { consumerEnv, describeResult, runCommand } from './helpers/commands';

const LIB = path.resolve(__dirname, '..', 'lib', 'index.js');
const ROOT = path.resolve(__dirname, '..', '..');

/** Every number of a tree of constants by its dotted path (`FrameKind.HELLO`). */
function leaves(tree: NativeConstants, prefix = ''): [string, number][] {
  return Object.entries(tree).flatMap(([key, value]): [string, number][] =>
    typeof value === 'number' ? [[prefix + key, value]] : leaves(value, `${prefix}${key}.`),
  );
}

/** The first two groups of every match of `pattern` in `text`: a name and a number. */
function matches(text: string, pattern: RegExp): [string, number][] {
  return [...text.matchAll(pattern)].map((m) => [m[1], Number(m[2])]);
}

/** A deep copy of `tree` with the constant at `dotted` set to `value`. */
function withConstant(tree: NativeConstants, dotted: string, value: number): NativeConstants {
  const [head, ...rest] = dotted.split('.');
  const inner = tree[head];
  return {
    ...tree,
    [head]: rest.length === 0 || typeof inner === 'number' ? value : withConstant(inner, rest.join('.'), value),
  };
}

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

  it('should refuse a build whose constants differ from those of this code, naming each and both values', async function () {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const real = (require('node-gyp-build') as { path(dir: string): string }).path(ROOT);
    const stale = path.join(dir, 'stale-constants.js');
    // One changed, one that this code lacks (a native side changed alone).
    fs.writeFileSync(
      stale,
      `const real = require(${JSON.stringify(real)});\n` +
        'const c = real.constants;\n' +
        'module.exports = { ...real, constants: { ...c, FrameKind: { ...c.FrameKind, HELLO: 99 }, ' +
        'WakeEvent: { ...c.WakeEvent, SEGMENT_LOST: 4 } } };\n',
    );
    const result = await loadWith(stale);
    expect(result.code, describeResult('require with mismatched constants', result)).to.not.equal(0);
    expect(result.stdout).to.not.include('loaded');
    expect(result.stderr).to.include(`the native addon ${stale} was built from other definitions than this code`);
    expect(result.stderr).to.include('FrameKind.HELLO is 99 in the addon, 1 here');
    expect(result.stderr).to.include('WakeEvent.SEGMENT_LOST is 4 in the addon, missing here');
    expect(result.stderr).to.include('npm rebuild shmchannel');
  });

  it('should check every constant this code shares with the native code, whichever one differs', function () {
    const exported = binding.constants as NativeConstants;
    expect(constantMismatches(exported), 'the build next to the code').to.deep.equal([]);
    const all = leaves(SHARED_CONSTANTS);
    expect(all.map(([name]) => name)).to.include.members(['PROTOCOL_VERSION', 'FRAME_HEADER_SIZE', 'FrameKind.HELLO']);
    for (const [name, value] of all) {
      expect(constantMismatches(withConstant(exported, name, value + 1000)), name).to.deep.equal([
        `${name} is ${value + 1000} in the addon, ${value} here`,
      ]);
      const { [name.split('.')[0]]: _dropped, ...rest } = exported;
      expect(constantMismatches(rest), `without ${name}`).to.include(`${name} is missing in the addon, ${value} here`);
    }
  });

  it("should leave no numeric constant of protocol.ts or native.ts out of the check unless it is TypeScript's own", function () {
    // Limits of TypeScript's own making, with no native twin.
    const typeScriptOnly = new Set(['MAX_REMOTE_CODE_BYTES']);
    const isConstants = (value: unknown): boolean =>
      typeof value === 'number' ||
      (value !== null &&
        typeof value === 'object' &&
        Object.getPrototypeOf(value) === Object.prototype &&
        Object.keys(value).length > 0 &&
        Object.values(value).every((v) => typeof v === 'number'));
    const found: string[] = [];
    for (const module of [protocol, native]) {
      for (const [name, value] of Object.entries(module)) {
        if (!isConstants(value) || typeScriptOnly.has(name)) continue;
        found.push(name);
        expect(
          SHARED_CONSTANTS,
          `${name} is checked against the addon, or listed as TypeScript's own`,
        ).to.have.property(name, value);
      }
    }
    expect(found).to.have.members(Object.keys(SHARED_CONSTANTS));
  });

  it('should have the addon export every frame kind, state bit, peer state and wake event the C headers define', function () {
    const read = (file: string) => fs.readFileSync(path.join(ROOT, 'native', file), 'utf8');
    const header = read('core/shmchannel.h');
    const kinds = /enum shmch_kind \{([^}]*)\}/.exec(header)?.[1] ?? '';
    const groups: Record<string, [string, number][]> = {
      FrameKind: matches(kinds, /SHMCH_(\w+) = (\d+)/g),
      SegmentState: matches(header, /#define SHMCH_STATE_(\w+) (\d+)u/g),
      PeerState: matches(header, /#define SHMCH_PEER_(\w+) (\d+)/g),
      // kEventPeerLost is PEER_LOST.
      WakeEvent: matches(read('binding/waker.h'), /constexpr int kEvent(\w+) = (\d+);/g).map(([name, value]) => [
        name.replace(/(?<=.)([A-Z])/g, '_$1').toUpperCase(),
        value,
      ]),
    };
    const exported = binding.constants as NativeConstants;
    for (const [group, defined] of Object.entries(groups)) {
      expect(defined, `${group} in the C headers`).to.have.length.above(0);
      expect(exported[group], group).to.deep.equal(Object.fromEntries(defined));
    }
  });

  it('should load the build next to the code', async function () {
    const result = await loadWith('');
    expect(result.code, describeResult('require', result)).to.equal(0);
    expect(result.stdout.trim()).to.equal('loaded');
  });
});
