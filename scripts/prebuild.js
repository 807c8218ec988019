#!/usr/bin/env node
// npm run build:prebuild (and so npm pack / npm publish, through prepack): builds the addon with
// prebuildify into prebuilds/<platform>-<arch>/shmchannel.<libc>.node, the binary that
// node-gyp-build loads for consumers without compiling anything (docs/INSTALL.md).
// (Not an npm script named "prebuild": npm would run that as the pre-hook of every
// `npm run build`, and so of `npm test` and of `npm ci`'s prepare.)
//
// Why a wrapper rather than `prebuildify --napi --strip` in package.json:
// - Headers. With --napi and no target, prebuildify asks node-gyp for the newest Node
//   release it knows, and node-gyp downloads that release's headers. N-API needs no
//   particular version, so we build against the running Node, with the headers installed
//   beside it (<prefix>/include/node) when they are there: no download at all. npm 11 no
//   longer passes a user's `nodedir` setting on to scripts, so that has to be found here.
// - A staging copy. prebuildify runs `node-gyp rebuild` and then moves the .node file out of
//   build/Release; done in the working tree, that would wipe a developer's build/ (which
//   node-gyp-build prefers to prebuilds/) under running tests. The build runs in a
//   temporary copy of binding.gyp and native/ instead.
// - The libc tag. The file is named shmchannel.glibc.node, so node-gyp-build skips it on
//   musl (Alpine) and the install script builds from source there.
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const prebuildify = require('prebuildify');

const root = path.resolve(__dirname, '..');
const pkg = require(path.join(root, 'package.json'));

/** The directory holding include/node/node_api.h for the running Node, if any. */
function localNodeDir() {
  const configured = process.env.npm_config_nodedir;
  if (configured) return configured;
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  return fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) ? prefix : undefined;
}

function main() {
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'shmchannel-prebuild-'));
  const cleanup = () => fs.rmSync(stage, { recursive: true, force: true });
  fs.copyFileSync(path.join(root, 'binding.gyp'), path.join(stage, 'binding.gyp'));
  fs.cpSync(path.join(root, 'native'), path.join(stage, 'native'), { recursive: true });
  // binding.gyp finds node-addon-api with require() from its own directory; node-gyp is
  // found through node_modules/.bin.
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(stage, 'node_modules'), 'dir');

  const nodeDir = localNodeDir();
  if (nodeDir !== undefined) process.env.npm_config_nodedir = nodeDir;
  else console.warn('prebuild: no local Node headers found; node-gyp will download them');

  const platformArch = `${os.platform()}-${os.arch()}`;
  const out = path.join(root, 'prebuilds', platformArch);
  // A stale binary from an earlier build must not ship beside the new one.
  fs.rmSync(out, { recursive: true, force: true });

  prebuildify(
    {
      cwd: stage,
      out: root,
      name: pkg.name,
      napi: true,
      strip: true,
      tagLibc: true,
      targets: [`node@${process.versions.node}`],
    },
    (err) => {
      cleanup();
      if (err) {
        console.error(`prebuild: ${err.message ?? err}`);
        process.exit(1);
      }
      for (const file of fs.readdirSync(out)) console.log(`prebuild: ${path.relative(root, path.join(out, file))}`);
    },
  );
}

main();
