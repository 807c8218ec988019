import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { expect } from 'chai';
import { firstValueFrom } from 'rxjs';

import { Channel } from '../lib/index';
import { describeResult, runCommand } from './helpers/commands';
import { shmExists, uniqueName } from './helpers/names';

// The documented install of the Python package, `python3 -m pip install ./python`, into a fresh
// virtual environment with no index (--no-index: nothing may be fetched). python/ builds with its
// own standard-library backend (python/_build/shmchannel_build.py), which compiles the C core
// into the package. The installed package, run from outside the repository, then talks to a
// Node server. Skipped where there is no python3 with venv, or no C++ compiler.

const repoRoot = path.resolve(__dirname, '..', '..');
const INSTALL_TIMEOUT_MS = 3 * 60 * 1000;
const RUN_TIMEOUT_MS = 30_000;

function works(command: string): boolean {
  return spawnSync('sh', ['-c', command], { stdio: 'ignore' }).status === 0;
}

// A client of the Node server below, from the installed package: prints one line per check.
const PY_CLIENT = `
import asyncio, sys
import shmchannel
from shmchannel import Channel, ShmChannelError
async def main():
    print('from', shmchannel.__file__)
    async with Channel(sys.argv[1], 'client', connect_timeout=10) as ch:
        print('reply', (await ch.request(b'ping', timeout=10)).decode())
        print('stream', [v.decode() async for v in ch.request_stream(b'stream', timeout=10)])
        ch.notify('note from python')
        await ch.drained()
        await ch.request(b'done', timeout=10)
asyncio.run(main())
`;

describe('the Python package installed with `python3 -m pip install ./python`', function () {
  this.timeout(INSTALL_TIMEOUT_MS);
  let work: string;
  let venvPython: string;
  let env: NodeJS.ProcessEnv;

  before(async function () {
    if (!works('command -v python3') || !works('command -v c++') || !works('python3 -c "import venv, ensurepip"')) {
      this.skip();
      return;
    }
    work = mkdtempSync(path.join(tmpdir(), 'shmch-pyinstall-'));
    env = { ...process.env, PIP_DISABLE_PIP_VERSION_CHECK: '1', PIP_NO_INPUT: '1' };
    // The installed package alone: no library or source tree pointed at from outside.
    for (const name of ['LD_PRELOAD', 'ASAN_OPTIONS', 'UBSAN_OPTIONS', 'PYTHONPATH', 'SHMCHANNEL_LIB']) {
      delete env[name];
    }
    const venv = path.join(work, 'venv');
    const made = await runCommand('python3', ['-m', 'venv', venv], { cwd: work, env, timeoutMs: INSTALL_TIMEOUT_MS });
    expect(made.code, describeResult('python3 -m venv', made)).to.equal(0);
    venvPython = path.join(venv, 'bin', 'python3');
  });

  after(function () {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('should build and install offline into a virtual environment, with the core inside the package', async function () {
    const installed = await runCommand(venvPython, ['-m', 'pip', 'install', '--no-index', './python'], {
      cwd: repoRoot,
      env,
      timeoutMs: INSTALL_TIMEOUT_MS,
    });
    expect(installed.code, describeResult('pip install ./python', installed)).to.equal(0);
    const imported = await runCommand(
      venvPython,
      ['-c', 'import shmchannel, shmchannel._native as n; print(n.load()._name)'],
      { cwd: work, env, timeoutMs: RUN_TIMEOUT_MS },
    );
    expect(imported.code, describeResult('import shmchannel', imported)).to.equal(0);
    const library = imported.stdout.trim();
    expect(library.startsWith(path.join(work, 'venv')), library).to.equal(true);
    expect(path.basename(library)).to.equal('libshmchannel.so');
  });

  it('should let the installed package talk to a Node server', async function () {
    const name = uniqueName('py-installed');
    const server = new Channel(name, 'server', { ringCapacity: 4096 });
    await server.open();
    try {
      const fromPython = firstValueFrom(server.notifications$);
      server.requests$.subscribe((req) => {
        const text = req.data.toString();
        if (text === 'stream') {
          for (const v of ['a', 'b', 'c']) req.next(v);
          req.complete();
        } else {
          req.respond(`node got ${text}`);
        }
      });
      const result = await runCommand(venvPython, ['-c', PY_CLIENT, name], {
        cwd: work,
        env,
        timeoutMs: RUN_TIMEOUT_MS,
      });
      expect(result.code, describeResult('installed python client', result)).to.equal(0);
      const lines = result.stdout.split('\n');
      expect(lines.find((l) => l.startsWith('from '))).to.include(path.join(work, 'venv'));
      expect(lines).to.include.members(['reply node got ping', "stream ['a', 'b', 'c']"]);
      expect((await fromPython).toString()).to.equal('note from python');
    } finally {
      await server.close();
    }
    expect(shmExists(name)).to.equal(false);
  });
});
