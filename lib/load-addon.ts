import * as path from 'node:path';

import type { NativeBinding } from './native';
import { constantMismatches } from './native-constants';

// dist/lib/load-addon.js -> the package root, where prebuilds/ and build/ live.
const packageRoot = path.resolve(__dirname, '..', '..');

// The addon's interface this code calls (native/binding/addon.cc sets the same number).
const BINDING_REVISION = 7;

function load(): NativeBinding {
  // A specific build, e.g. the sanitized one of `npm run test:sanitize`.
  const override = process.env.SHMCHANNEL_ADDON;
  if (override !== undefined && override !== '') {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return checked(require(override) as NativeBinding, override);
  }
  let file: string;
  let addon: NativeBinding;
  try {
    // node-gyp-build takes a local build (build/Release) first, then prebuilds/<platform>-<arch>/.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const nodeGypBuild = require('node-gyp-build') as { path(dir: string): string };
    file = nodeGypBuild.path(packageRoot);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    addon = require(file) as NativeBinding;
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
  return checked(addon, file);
}

const REBUILD = 'Rebuild it: `npm rebuild shmchannel` (in a checkout: `npm run build:native`).';

/** The addon, if it serves this code: its interface revision first, then the constants both copy. */
function checked(addon: NativeBinding, file: string): NativeBinding {
  if (addon.bindingRevision !== BINDING_REVISION) {
    throw new Error(
      `shmchannel: the native addon ${file} was built from another version of shmchannel ` +
        `(interface revision ${addon.bindingRevision ?? 'none, older still'}; this code needs ${BINDING_REVISION}). ` +
        REBUILD,
    );
  }
  const mismatches = constantMismatches(addon.constants);
  if (mismatches.length > 0) {
    throw new Error(
      `shmchannel: the native addon ${file} was built from other definitions than this code ` +
        `(a stale build, or one side changed without the other): ${mismatches.join('; ')}. ${REBUILD}`,
    );
  }
  return addon;
}

/** The native binding, loaded once per context (the addon is context-aware). */
export const binding: NativeBinding = load();
