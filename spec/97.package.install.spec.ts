import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { expect } from 'chai';

import { SharedMemory } from '../lib/index';
import { consumerEnv, describeResult, runCommand, type CommandResult } from './helpers/commands';
import { shmExists, uniqueName } from './helpers/names';
import { waitUntil } from './helpers/wait';

// The package as a consumer gets it: `npm pack` (which runs prepack: the TypeScript build and
// the prebuilt binary), then `npm install <tarball>` into a fresh project with npm's default
// settings, under which npm 11 skips the install scripts of dependencies nobody approved. So
// the package must work from what the tarball carries. rxjs is a peer dependency: the
// application's own copy, the one npm installs beside the package (the projects below that
// already have one: theirs). The README's quick start runs there as the README has it.
// SKIP_PACKAGE_TEST=1 skips this file (it compiles the addon once more and takes about a
// minute).

const repoRoot = path.resolve(__dirname, '..', '..');
const typescriptBin = path.join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc');
const COMMAND_TIMEOUT_MS = 5 * 60 * 1000;
const SCRIPT_TIMEOUT_MS = 60 * 1000;

// A consumer's script in each module system: it forks itself as the server, then as the
// client sends one request and prints the answer, and the code of an error it provokes.
const cjsScript = `'use strict';
const { fork } = require('node:child_process');
const { Channel, ShmChannelError } = require('shmchannel');
${exchangeBody('__filename')}
main().catch((err) => { console.error(err); process.exit(1); });
`;

const esmScript = `import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Channel, ShmChannelError } from 'shmchannel';
${exchangeBody('fileURLToPath(import.meta.url)')}
await main();
`;

function exchangeBody(selfPath: string): string {
  return `
const [name, role] = process.argv.slice(2);

async function serve() {
  const server = new Channel(name, 'server');
  await server.open();
  server.requests$.subscribe((req) => req.respond('pong to ' + req.data.toString()));
  process.on('disconnect', () => void server.close());
  process.send('ready');
}

async function ask(question) {
  const child = fork(${selfPath}, [name, 'server']);
  const exited = new Promise((resolve) => child.on('exit', resolve));
  await new Promise((resolve) => child.once('message', resolve));
  const client = new Channel(name, 'client');
  await client.open();
  const answer = await new Promise((resolve, reject) =>
    client.request(question).subscribe({ next: resolve, error: reject }),
  );
  console.log('answer: ' + answer.toString());
  try {
    new Channel('no-slash', 'client');
  } catch (err) {
    console.log('error: ' + (err instanceof ShmChannelError) + ' ' + err.code);
  }
  await client.close();
  child.disconnect();
  console.log('server exit: ' + (await exited));
}

function main() {
  return role === 'server' ? serve() : ask(process.argv[4]);
}
`;
}

// Every name either entry exports, and whether the values are the very same objects.
const exportsScript = `import * as esm from 'shmchannel';
import { createRequire } from 'node:module';
const cjs = createRequire(import.meta.url)('shmchannel');
const visible = (keys) => keys.filter((k) => k !== 'default' && k !== 'module.exports' && k !== '__esModule').sort();
console.log(JSON.stringify({
  esm: visible(Object.keys(esm)),
  cjs: visible(Object.keys(cjs)),
  identical: visible(Object.keys(cjs)).every((k) => esm[k] === cjs[k]),
}));
`;

// Types through the exports map: "import" conditions from a .mts, "require" from a .cts.
// The @ts-expect-error lines fail the compile if the types resolved to `any`.
const typeCheckSource = (importLine: string) => `${importLine}
const channel: Channel = new Channel('/types', Mode.SERVER);
const mode: 'server' | 'client' = channel.mode;
const ok: boolean = isShmChannelError(new Error('x'), 'ERR_TIMEOUT');
// @ts-expect-error not a mode
new Channel('/types', 'sideways');
// @ts-expect-error not an error code
isShmChannelError(new Error('x'), 'ERR_NOT_A_CODE');
export { mode, ok };
`;

// Whether the library's streams are Observables of the consumer's own rxjs, reached from
// ESM and from CommonJS. A channel that is not opened holds nothing, so the script ends.
const observableScript = `import { createRequire } from 'node:module';
import { Observable } from 'rxjs';
import { Channel } from 'shmchannel';
const require = createRequire(import.meta.url);
const channel = new Channel('/observable-check', 'client');
const streams = {
  notifications$: channel.notifications$,
  requests$: channel.requests$,
  state$: channel.state$,
  request: channel.request('x'),
};
console.log(JSON.stringify({
  rxjs: require('rxjs/package.json').version,
  sameFromRequire: require('rxjs').Observable === Observable,
  instances: Object.fromEntries(Object.entries(streams).map(([key, value]) => [key, value instanceof Observable])),
}));
`;

/**
 * The code blocks of the README's "Quick start", on channel `name` instead of /demo: its
 * server, its client and the streamed answer. ES modules with top-level await, valid
 * JavaScript as they stand.
 */
function quickStartBlocks(name: string): { server: string; client: string; stream: string } {
  const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  const section = /^## Quick start\n([\s\S]*?)^## /m.exec(readme)?.[1] ?? '';
  const [server = '', client = '', stream = ''] = [...section.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) =>
    m[1].replaceAll("'/demo'", `'${name}'`),
  );
  expect(server, 'the first code block of the Quick start').to.include('.open()');
  expect(client, 'the second code block of the Quick start').to.include('.open()');
  return { server, client, stream };
}

/**
 * The quick start's pair with the third block in it, as the README says: its server part in
 * place of the echo, its client part before the client's close().
 */
function quickStartStreamed(name: string): { server: string; client: string } {
  const { server, client, stream } = quickStartBlocks(name);
  const echoLine = /^server\.requests\$\.subscribe\(.*\/\/ echo\n/m;
  const close = 'await client.close();\n';
  const [imports = '', serverPart = '', clientPart = ''] = stream.split(/^\/\/ (?=Server|Client)/m);
  expect(server, 'the first code block').to.match(echoLine);
  expect(client, 'the second code block').to.include(close);
  expect(serverPart, 'the third code block').to.include('server.requests$');
  expect(clientPart, 'the third code block').to.include("client.request('tick')");
  return {
    server: imports + server.replace(echoLine, `// ${serverPart}`),
    client: imports + client.replace(close, `// ${clientPart}${close}`),
  };
}

/** Every copy of package `name` in a project's node_modules tree, nested ones included. */
function installedCopies(projectDir: string, name: string): { dir: string; version: string }[] {
  const copies: { dir: string; version: string }[] = [];
  const visit = (modules: string) => {
    if (!existsSync(modules)) return;
    for (const entry of readdirSync(modules)) {
      if (entry.startsWith('.')) continue;
      const dirs = entry.startsWith('@')
        ? readdirSync(path.join(modules, entry)).map((sub) => path.join(modules, entry, sub))
        : [path.join(modules, entry)];
      for (const dir of dirs) {
        const manifest = path.join(dir, 'package.json');
        if (!existsSync(manifest)) continue;
        const pkg = JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string; version: string };
        if (pkg.name === name) copies.push({ dir: path.relative(projectDir, dir), version: pkg.version });
        visit(path.join(dir, 'node_modules'));
      }
    }
  };
  visit(path.join(projectDir, 'node_modules'));
  return copies;
}

interface ObservableReport {
  rxjs: string;
  sameFromRequire: boolean;
  instances: Record<string, boolean>;
}

const ALL_INSTANCES = { notifications$: true, requests$: true, state$: true, request: true };

describe('The packed package, installed in a new project', function () {
  this.timeout(2 * COMMAND_TIMEOUT_MS);

  let work: string;
  let project: string;
  let tarballFiles: string[];
  let packageDir: string;
  let installOutput: CommandResult;
  let tarball: string;
  const names: string[] = [];

  /** A new npm project in `work`, with `packages` installed as a user would (none: empty). */
  async function createProject(dirName: string, packages: string[]): Promise<string> {
    const dir = path.join(work, dirName);
    mkdirSync(dir);
    const init = await runCommand('npm', ['init', '-y'], { cwd: dir, env: consumerEnv() });
    expect(init.code, describeResult('npm init', init)).to.equal(0);
    if (packages.length > 0) {
      const install = await npmInstall(dir, packages);
      expect(install.code, describeResult(`npm install ${packages.join(' ')}`, install)).to.equal(0);
    }
    return dir;
  }

  function npmInstall(dir: string, args: string[]): Promise<CommandResult> {
    return runCommand('npm', ['install', ...args, '--prefer-offline', '--no-audit', '--no-fund'], {
      cwd: dir,
      env: consumerEnv(),
      timeoutMs: COMMAND_TIMEOUT_MS,
    });
  }

  before(async function () {
    if (process.env.SKIP_PACKAGE_TEST === '1') this.skip();
    work = mkdtempSync(path.join(tmpdir(), 'shmchannel-package-'));

    const pack = await runCommand('npm', ['pack', '--pack-destination', work], {
      cwd: repoRoot,
      env: consumerEnv(),
      timeoutMs: COMMAND_TIMEOUT_MS,
    });
    expect(pack.code, describeResult('npm pack', pack)).to.equal(0);
    const tarballs = readdirSync(work).filter((f) => f.endsWith('.tgz'));
    expect(tarballs, describeResult('npm pack', pack)).to.have.lengthOf(1);
    tarball = path.join(work, tarballs[0]);
    const list = await runCommand('tar', ['-tzf', tarball], { cwd: work });
    tarballFiles = list.stdout
      .split('\n')
      .filter(Boolean)
      .map((f) => f.replace(/^package\//, ''));

    project = await createProject('consumer', []);
    installOutput = await npmInstall(project, [tarball]);
    expect(installOutput.code, describeResult('npm install', installOutput)).to.equal(0);
    packageDir = path.join(project, 'node_modules', 'shmchannel');
  });

  after(function () {
    for (const name of names) if (shmExists(name)) SharedMemory.unlink(name);
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });

  /** Runs a script of the consumer project (or of `dir`) with node, as its user would. */
  async function runInProject(file: string, args: string[] = [], dir = project): Promise<CommandResult> {
    return runCommand(process.execPath, [file, ...args], {
      cwd: dir,
      env: consumerEnv(),
      timeoutMs: SCRIPT_TIMEOUT_MS,
    });
  }

  async function checkObservables(dir: string): Promise<ObservableReport> {
    writeFileSync(path.join(dir, 'observable.mjs'), observableScript);
    const result = await runInProject('observable.mjs', [], dir);
    expect(result.code, describeResult('observable.mjs', result)).to.equal(0);
    return JSON.parse(result.stdout) as ObservableReport;
  }

  it('should carry a prebuilt linux-x64 binary, both entries with their types, and the docs', function () {
    expect(tarballFiles.filter((f) => /^prebuilds\/linux-x64\/[^/]+\.node$/.test(f))).to.have.lengthOf(1);
    expect(tarballFiles).to.include.members([
      'package.json',
      'README.md',
      'LICENSE',
      'dist/lib/index.js',
      'dist/lib/index.d.ts',
      'dist/lib/index.mjs',
      'dist/lib/index.d.mts',
      'dist/lib/load-addon.js',
      'docs/API.md',
      'docs/INSTALL.md',
    ]);
  });

  it('should carry binding.gyp and the native sources for a build from source', function () {
    expect(tarballFiles).to.include('binding.gyp');
    expect(tarballFiles.filter((f) => /^native\/binding\/.*\.cc$/.test(f))).to.have.length.above(0);
    expect(tarballFiles.filter((f) => /^native\/core\/.*\.(cc|h)$/.test(f))).to.have.length.above(0);
    expect(tarballFiles).to.include('native/core/shmchannel.h');
  });

  it('should carry nothing from spec/, bench/, examples/, build/ or dist/ outside dist/lib', function () {
    const stray = tarballFiles.filter(
      (f) =>
        /^(spec|bench|examples|build|build-sanitize|node_modules|scripts)\//.test(f) ||
        (f.startsWith('dist/') && !f.startsWith('dist/lib/')),
    );
    expect(stray).to.deep.equal([]);
  });

  it('should install without compiling anything (no build/ in the installed package)', function () {
    expect(existsSync(path.join(packageDir, 'build')), describeResult('npm install', installOutput)).to.equal(false);
    const prebuilds = readdirSync(path.join(packageDir, 'prebuilds', 'linux-x64'));
    expect(prebuilds.filter((f) => f.endsWith('.node'))).to.have.lengthOf(1);
  });

  it('should have been installed with its install script not approved (npm 11 default)', async function () {
    const ls = await runCommand('npm', ['install-scripts', 'ls'], { cwd: project, env: consumerEnv() });
    if (/unknown command/i.test(ls.stdout + ls.stderr)) this.skip(); // npm before 11 runs install scripts
    const { version } = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    expect(ls.stdout, describeResult('npm install-scripts ls', ls)).to.include(`shmchannel@${version}`);
  });

  it('should load the addon from prebuilds/', async function () {
    const result = await runCommand(
      process.execPath,
      ['-p', "require('node-gyp-build').resolve(require('path').dirname(require.resolve('shmchannel/package.json')))"],
      { cwd: project, env: consumerEnv() },
    );
    expect(result.code, describeResult('node-gyp-build', result)).to.equal(0);
    expect(result.stdout.trim()).to.match(/node_modules\/shmchannel\/prebuilds\/linux-x64\/[^/]+\.node$/);
  });

  it('should give the consumer a working shmchannel command (package bin)', async function () {
    const bin = path.join(project, 'node_modules', '.bin', 'shmchannel');
    const { version } = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    const versionRun = await runCommand(bin, ['--version'], { cwd: project, env: consumerEnv() });
    expect(versionRun.code, describeResult('shmchannel --version', versionRun)).to.equal(0);
    expect(versionRun.stdout.trim()).to.include(version);
    const ls = await runCommand(bin, ['ls', '--json'], { cwd: project, env: consumerEnv() });
    expect(ls.code, describeResult('shmchannel ls --json', ls)).to.equal(0);
  });

  it('should install rxjs once, beside it, as its peer: no copy of its own inside the package', function () {
    const installed = JSON.parse(readFileSync(path.join(packageDir, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
      peerDependencies?: Record<string, string>;
    };
    expect(installed.peerDependencies?.rxjs, 'peerDependencies.rxjs').to.be.a('string');
    expect(installed.dependencies?.rxjs, 'dependencies.rxjs').to.equal(undefined);
    // npm 7 and later install a missing peer on their own, at the top of the tree.
    expect(installedCopies(project, 'rxjs').map((c) => c.dir)).to.deep.equal([path.join('node_modules', 'rxjs')]);
  });

  it("should hand out streams that are instances of the consumer's own rxjs Observable", async function () {
    const report = await checkObservables(project);
    expect(report.sameFromRequire).to.equal(true);
    expect(report.instances).to.deep.equal(ALL_INSTANCES);
  });

  it('should answer a request between two processes from CommonJS (require)', async function () {
    writeFileSync(path.join(project, 'exchange.cjs'), cjsScript);
    const name = uniqueName('pkg-cjs');
    names.push(name);
    const result = await runInProject('exchange.cjs', [name, 'client', 'ping from cjs']);
    expect(result.code, describeResult('exchange.cjs', result)).to.equal(0);
    expect(result.stdout.split('\n')).to.include.members([
      'answer: pong to ping from cjs',
      'error: true ERR_INVALID_NAME',
      'server exit: 0',
    ]);
    expect(shmExists(name)).to.equal(false);
  });

  it('should answer a request between two processes from ESM (import)', async function () {
    writeFileSync(path.join(project, 'exchange.mjs'), esmScript);
    const name = uniqueName('pkg-esm');
    names.push(name);
    const result = await runInProject('exchange.mjs', [name, 'client', 'ping from esm']);
    expect(result.code, describeResult('exchange.mjs', result)).to.equal(0);
    expect(result.stdout.split('\n')).to.include.members([
      'answer: pong to ping from esm',
      'error: true ERR_INVALID_NAME',
      'server exit: 0',
    ]);
    expect(shmExists(name)).to.equal(false);
  });

  /**
   * Runs a server and then a client program in the consumer project; resolves when the
   * client has ended (killed if it does not end on its own) and the server, stopped by
   * SIGTERM then, too.
   */
  async function runPair(
    name: string,
    serverCode: string,
    clientCode: string,
  ): Promise<{ client: CommandResult; serverOutput: string; serverEnd: string }> {
    writeFileSync(path.join(project, 'server.mjs'), serverCode);
    writeFileSync(path.join(project, 'client.mjs'), clientCode);
    const server = spawn(process.execPath, ['server.mjs'], {
      cwd: project,
      env: consumerEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let serverOutput = '';
    server.stdout.setEncoding('utf8').on('data', (chunk: string) => (serverOutput += chunk));
    server.stderr.setEncoding('utf8').on('data', (chunk: string) => (serverOutput += chunk));
    // 'close': the process has ended and its output is all read.
    const serverEnd = new Promise<string>((resolve) =>
      server.on('close', (code, signal) => resolve(signal ?? `status ${String(code)}`)),
    );
    try {
      await waitUntil(() => shmExists(name) || server.exitCode !== null);
      expect(server.exitCode, serverOutput).to.equal(null);
      const client = await runInProject('client.mjs');
      server.kill('SIGTERM');
      const end = await serverEnd;
      return { client, serverOutput, serverEnd: end };
    } finally {
      server.kill('SIGTERM');
    }
  }

  it("should run the README's quick start, whose client ends by itself with status 0", async function () {
    const name = uniqueName('pkg-readme');
    names.push(name);
    const { server, client } = quickStartBlocks(name);
    const run = await runPair(name, server, client);
    // A client that does not end on its own is killed at the timeout (a signal, no status).
    expect(run.client.signal, describeResult('the client', run.client)).to.equal(null);
    expect(run.client.code, describeResult('the client', run.client)).to.equal(0);
    expect(run.client.stdout).to.equal('ping\n');
    expect(run.serverOutput).to.equal('note hello\n');
    // The server ends by SIGTERM, as the README says, having closed its channel, which
    // removes the segment.
    expect(run.serverEnd, run.serverOutput).to.equal('SIGTERM');
    expect(shmExists(name)).to.equal(false);
  });

  it("should run the README's quick start with the streamed answer in place of the echo", async function () {
    const name = uniqueName('pkg-readme-stream');
    names.push(name);
    const { server, client } = quickStartStreamed(name);
    const run = await runPair(name, server, client);
    expect(run.client.code, describeResult('the client', run.client)).to.equal(0);
    // 'ping' is answered by a stream now too, of which firstValueFrom takes the first value.
    expect(run.client.stdout).to.equal('ping #0\ntick #0\ntick #1\ntick #2\n');
    expect(run.serverOutput).to.equal('note hello\n');
    expect(run.serverEnd, run.serverOutput).to.equal('SIGTERM');
    expect(shmExists(name)).to.equal(false);
  });

  it('should export the same names, as the same objects, to import and require', async function () {
    writeFileSync(path.join(project, 'exports.mjs'), exportsScript);
    const result = await runInProject('exports.mjs');
    expect(result.code, describeResult('exports.mjs', result)).to.equal(0);
    const report = JSON.parse(result.stdout) as { esm: string[]; cjs: string[]; identical: boolean };
    expect(report.cjs).to.include.members([
      'Channel',
      'Mode',
      'ShmChannelError',
      'isShmChannelError',
      'handleWith',
      'SharedMemory',
    ]);
    expect(report.esm).to.deep.equal(report.cjs);
    expect(report.identical).to.equal(true);
  });

  it('should give TypeScript the types for import (.mts) and require (.cts)', async function () {
    writeFileSync(
      path.join(project, 'esm.mts'),
      typeCheckSource("import { Channel, Mode, isShmChannelError } from 'shmchannel';"),
    );
    // In a .cts file this import compiles to require() and resolves with the "require" condition.
    writeFileSync(
      path.join(project, 'cjs.cts'),
      typeCheckSource("import { Channel, Mode, isShmChannelError } from 'shmchannel';"),
    );
    writeFileSync(
      path.join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'node16',
          moduleResolution: 'node16',
          target: 'ES2022',
          strict: true,
          noEmit: true,
          // @types/node from the repository: the consumer project has none of its own.
          typeRoots: [path.join(repoRoot, 'node_modules', '@types')],
          types: ['node'],
        },
        files: ['esm.mts', 'cjs.cts'],
      }),
    );
    const result = await runCommand(process.execPath, [typescriptBin, '-p', '.', '--listFiles'], {
      cwd: project,
      env: consumerEnv(),
      timeoutMs: SCRIPT_TIMEOUT_MS,
    });
    expect(result.code, describeResult('tsc', result)).to.equal(0);
    const files = result.stdout.split('\n');
    expect(files).to.include(path.join(packageDir, 'dist', 'lib', 'index.d.mts'));
    expect(files).to.include(path.join(packageDir, 'dist', 'lib', 'index.d.ts'));
  });

  describe('into an application that already has rxjs', function () {
    let pinned: string;
    let pinnedInstall: CommandResult;
    let old: string;
    let oldInstall: CommandResult;

    before(async function () {
      if (process.env.SKIP_PACKAGE_TEST === '1') this.skip();
      // The lowest rxjs the peer range allows, pinned, so npm cannot move it.
      pinned = await createProject('app-rxjs-7.2', ['rxjs@7.2.0', '--save-exact']);
      pinnedInstall = await npmInstall(pinned, [tarball]);
      old = await createProject('app-rxjs-6', ['rxjs@6']);
      oldInstall = await npmInstall(old, [tarball]);
    });

    it("should use the application's rxjs 7.2.0 and work with it, not bring a copy of its own", async function () {
      expect(pinnedInstall.code, describeResult('npm install', pinnedInstall)).to.equal(0);
      const report = await checkObservables(pinned);
      expect(report.rxjs).to.equal('7.2.0');
      expect(report.instances).to.deep.equal(ALL_INSTANCES);
      expect(installedCopies(pinned, 'rxjs')).to.deep.equal([
        { dir: path.join('node_modules', 'rxjs'), version: '7.2.0' },
      ]);

      writeFileSync(path.join(pinned, 'exchange.cjs'), cjsScript);
      const name = uniqueName('pkg-rx72');
      names.push(name);
      const result = await runInProject('exchange.cjs', [name, 'client', 'ping on rxjs 7.2'], pinned);
      expect(result.code, describeResult('exchange.cjs', result)).to.equal(0);
      expect(result.stdout.split('\n')).to.include.members(['answer: pong to ping on rxjs 7.2', 'server exit: 0']);
    });

    it('should be refused by npm (ERESOLVE) in an application on rxjs 6', function () {
      expect(oldInstall.code, describeResult('npm install', oldInstall)).not.to.equal(0);
      expect(oldInstall.stdout + oldInstall.stderr).to.include('ERESOLVE');
      expect(existsSync(path.join(old, 'node_modules', 'shmchannel'))).to.equal(false);
    });
  });
});
