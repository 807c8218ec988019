import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { expect } from 'chai';
import { firstValueFrom, lastValueFrom, toArray } from 'rxjs';

import { Channel, isShmChannelError } from '../lib/index';
import { describeResult, runCommand, type CommandResult } from './helpers/commands';
import { has, plainEnv } from './helpers/foreign-peers';
import { shmExists, uniqueName } from './helpers/names';

// The Python package (python/, ctypes over libshmchannel.so) across real processes and real
// /dev/shm segments: its own unittest suite, examples/python/channel.py against the Node and C
// examples both ways, and a Python peer against a Channel of this process (streams, a message
// larger than the ring, a remote error with its code, notifications both ways). The library is
// built as `npm run build:c` builds it, into a temporary OUT. Skipped where there is no
// python3, C compiler or make.

const repoRoot = path.resolve(__dirname, '..', '..');
const COMMAND_TIMEOUT_MS = 3 * 60 * 1000;
const RUN_TIMEOUT_MS = 30_000;
const nodeExample = path.join(repoRoot, 'dist', 'examples', 'channel.js');
const pyExample = path.join(repoRoot, 'examples', 'python', 'channel.py');

// A Python client for the Node server of the last test: prints one line per check.
const PY_CLIENT = `
import asyncio, sys
from shmchannel import Channel, ShmChannelError
async def main():
    async with Channel(sys.argv[1], 'client', connect_timeout=10) as ch:
        notes = ch.notifications()
        async def echo(data): return data
        ch.handle(echo)
        big = bytes((i * 31 + 7) % 251 for i in range(20000))
        print('big', (await ch.request(big, timeout=10)) == big)
        print('stream', [v.decode() async for v in ch.request_stream(b'stream')])
        try:
            await ch.request(b'fail', timeout=10)
        except ShmChannelError as e:
            print('error', e.code, e.remote_code, e.message)
        ch.notify('note from python')
        print('note', (await notes.__anext__()).decode())
        await ch.request(b'done', timeout=10)
asyncio.run(main())
`;

// A Python server for the Node client of the last test: echoes, streams, fails with a code.
const PY_SERVER = `
import asyncio, sys
from shmchannel import Channel
class Refused(Exception):
    code = 'E_PY_REFUSED'
async def main():
    async with Channel(sys.argv[1], 'server', ring_capacity=4096) as ch:
        notes = ch.notifications()
        async def handle(data):
            if data == b'fail': raise Refused('python says no')
            return data
        async def route(data):
            if data == b'stream':
                for v in ('a', 'b', 'c'): yield v
            else:
                yield await handle(data)
        ch.handle(route)
        print('listening', flush=True)
        await ch.wait_for_state('connected')
        print('note', (await notes.__anext__()).decode(), flush=True)
        ch.notify('note from python')
        await ch.wait_for_state('peer-lost')
asyncio.run(main())
`;

function pick(env: NodeJS.ProcessEnv, ...names: string[]): NodeJS.ProcessEnv {
  return Object.fromEntries(names.filter((n) => env[n] !== undefined).map((n) => [n, env[n]]));
}

describe('the Python package (python/) across processes', function () {
  this.timeout(COMMAND_TIMEOUT_MS);
  let work: string;
  let env: NodeJS.ProcessEnv;

  // Node peers load the addon this suite runs with (a sanitized one needs its preload kept);
  // Python and make get the environment without the sanitizer's preload.
  function envFor(command: string): NodeJS.ProcessEnv {
    return command === 'node' ? { ...process.env, ...pick(env, 'SHMCHANNEL_LIB', 'PYTHONPATH') } : env;
  }

  function python(args: string[]): Promise<CommandResult> {
    return runCommand('python3', args, { cwd: repoRoot, env, timeoutMs: RUN_TIMEOUT_MS });
  }

  before(async function () {
    if (!has('python3') || !has('cc') || !has('make')) {
      this.skip();
      return;
    }
    work = mkdtempSync(path.join(tmpdir(), 'shmch-py-'));
    env = plainEnv();
    const out = path.join(work, 'build');
    const made = await runCommand('make', ['-C', 'native', `OUT=${out}`], {
      cwd: repoRoot,
      env,
      timeoutMs: COMMAND_TIMEOUT_MS,
    });
    expect(made.code, describeResult('make', made)).to.equal(0);
    env.SHMCHANNEL_LIB = path.join(out, 'libshmchannel.so');
    env.PYTHONPATH = path.join(repoRoot, 'python');
  });

  after(function () {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('should pass its own unittest suite', async function () {
    const result = await runCommand('python3', ['-m', 'unittest', 'discover', '-s', 'tests'], {
      cwd: path.join(repoRoot, 'python'),
      env,
      timeoutMs: COMMAND_TIMEOUT_MS,
    });
    expect(result.code, describeResult('python3 -m unittest', result)).to.equal(0);
  });

  const pairs: [string, string[], string, string[]][] = [
    ['Node', ['node', nodeExample], 'Python', ['python3', pyExample]],
    ['Python', ['python3', pyExample], 'Node', ['node', nodeExample]],
  ];
  for (const [serverName, serverCmd, clientName, clientCmd] of pairs) {
    it(`should let the ${serverName} example server and the ${clientName} example client exchange requests and notifications`, async function () {
      const name = uniqueName('py-example');
      const server = runCommand(serverCmd[0], [...serverCmd.slice(1), 'server', 'from server ✓', name], {
        cwd: repoRoot,
        env: envFor(serverCmd[0]),
        timeoutMs: RUN_TIMEOUT_MS,
      });
      // The client waits up to 10 s for the server to appear.
      const client = await runCommand(clientCmd[0], [...clientCmd.slice(1), 'client', 'from client ✓', name], {
        cwd: repoRoot,
        env: envFor(clientCmd[0]),
        timeoutMs: RUN_TIMEOUT_MS,
      });
      const served = await server;
      expect(client.code, describeResult(`${clientName} client`, client)).to.equal(0);
      expect(served.code, describeResult(`${serverName} server`, served)).to.equal(0);
      expect(client.stdout.split('\n')).to.include.members([
        'request from server: "from server ✓"',
        'notification from server: "from server ✓"',
        'reply from server: server got "from client ✓"',
      ]);
      expect(served.stdout.split('\n')).to.include.members([
        'client connected',
        'request from client: "from client ✓"',
        'notification from client: "from client ✓"',
        'reply from client: client got "from server ✓"',
        'client disconnected',
      ]);
      expect(shmExists(name)).to.equal(false);
    });
  }

  it('should serve a Python client from a Node server: a message larger than the ring, a stream, a remote error with its code, notifications both ways', async function () {
    const name = uniqueName('py-client');
    const server = new Channel(name, 'server', { ringCapacity: 4096 });
    await server.open();
    try {
      const fromPython = firstValueFrom(server.notifications$);
      server.requests$.subscribe((req) => {
        const text = req.data.toString();
        if (text === 'stream') {
          for (const v of ['a', 'b', 'c']) req.next(v);
          req.complete();
        } else if (text === 'fail') {
          req.error(Object.assign(new Error('node says no'), { code: 'E_NODE_REFUSED' }));
        } else {
          if (text === 'done') server.notify('unused');
          req.respond(req.data);
        }
      });
      void fromPython.then(() => server.notify('note from node'));
      const result = await python(['-c', PY_CLIENT, name]);
      expect(result.code, describeResult('python client', result)).to.equal(0);
      expect(result.stdout.split('\n')).to.include.members([
        'big True',
        "stream ['a', 'b', 'c']",
        'error ERR_REMOTE E_NODE_REFUSED node says no',
        'note note from node',
      ]);
      expect((await fromPython).toString()).to.equal('note from python');
    } finally {
      await server.close();
    }
    expect(shmExists(name)).to.equal(false);
  });

  it('should serve a Node client from a Python server: a message larger than the ring, a stream, a remote error with its code, notifications both ways', async function () {
    const name = uniqueName('py-server');
    const server = runCommand('python3', ['-c', PY_SERVER, name], { cwd: repoRoot, env, timeoutMs: RUN_TIMEOUT_MS });
    const client = new Channel(name, 'client', { connectTimeout: 10_000 });
    await client.open();
    try {
      const fromPython = firstValueFrom(client.notifications$);
      const big = Buffer.alloc(20_000, 7);
      expect(Buffer.compare(await lastValueFrom(client.request(big, { timeout: 10_000 })), big)).to.equal(0);
      const values = await lastValueFrom(client.request('stream', { timeout: 10_000 }).pipe(toArray()));
      expect(values.map(String)).to.deep.equal(['a', 'b', 'c']);
      const failed = await lastValueFrom(client.request('fail', { timeout: 10_000 })).catch((err: unknown) => err);
      expect(isShmChannelError(failed, 'ERR_REMOTE'), String(failed)).to.equal(true);
      expect((failed as { remoteCode?: string }).remoteCode).to.equal('E_PY_REFUSED');
      expect((failed as Error).message).to.equal('python says no');
      client.notify('note from node');
      expect((await fromPython).toString()).to.equal('note from python');
    } finally {
      await client.close();
    }
    const served = await server;
    expect(served.code, describeResult('python server', served)).to.equal(0);
    expect(served.stdout.split('\n')).to.include('note note from node');
    expect(shmExists(name)).to.equal(false);
  });
});
