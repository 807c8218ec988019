import * as path from 'node:path';

import type { NativeBinding } from './native';

// dist/lib/load-addon.js -> the package root, where prebuilds/ and build/ live.
const packageRoot = path.resolve(__dirname, '..', '..');

function load(): NativeBinding {
  // A specific build, e.g. the sanitized one of `npm run test:sanitize`.
  const override = process.env.SHMCHANNEL_ADDON;
  if (override !== undefined && override !== '') {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(override) as NativeBinding;
  }
  try {
    // node-gyp-build looks in prebuilds/<platform>-<arch>/ first, then build/Release.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
    return nodeGypBuild(packageRoot) as NativeBinding;
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new Error(
      `shmchannel: could not load its native addon (looked in ${path.join(packageRoot, 'prebuilds')} ` +
        `and ${path.join(packageRoot, 'build', 'Release')}): ${reason}\n` +
        'shmchannel needs Linux and Node.js >= 20. To build the addon from source run ' +
        '`npm rebuild shmchannel` (needs python3, make and g++).',
      { cause: err },
    );
  }
}

/** The native binding, loaded once per context (the addon is context-aware). */
export const binding: NativeBinding = load();
