import { readFileSync } from 'node:fs';
import * as path from 'node:path';

import { expect } from 'chai';

import { inspectSegment, SharedMemory } from '../lib/index';
import { CliProcess, jsonLines, runCli, startServe } from './helpers/cli';
import { shmEntries, shmExists, uniqueName } from './helpers/names';
import { Peer } from './helpers/peer';
import { releaseAll, unlinkLater } from './helpers/resources';
import { publishUnknownKindFrame, ringSegment } from './helpers/segment-layout';
import { waitUntil } from './helpers/wait';

const COMMANDS = ['serve', 'request', 'notify', 'listen', 'ls', 'rm', 'bench'];
// Generous: the client waits this long for a server that a parallel process is starting.
const CONNECT = ['--connect-timeout', '20000'];

async function cleanup(): Promise<void> {
  await CliProcess.stopAll();
  await releaseAll();
}

describe('shmchannel (CLI): help and usage', function () {
  afterEach(cleanup);

  it('should print the usage, every command and the exit statuses for --help, exit 0', async function () {
    const r = await runCli(['--help']);
    expect(r.status).to.equal(0);
    expect(r.stdout).to.match(/^Usage: shmchannel <command>/);
    for (const command of COMMANDS) expect(r.stdout).to.include(`  ${command} `);
    expect(r.stdout).to.match(/Exit status:[\s\S]*\b2 +usage error/);
  });

  for (const command of COMMANDS) {
    it(`should print the usage of ${command} for '${command} --help', exit 0`, async function () {
      const r = await runCli([command, '--help']);
      expect(r.status, r.stderr).to.equal(0);
      expect(r.stdout).to.match(new RegExp(`^Usage: shmchannel ${command}\\b`));
      expect(r.stdout).to.include('Exit status:');
      // --help wins over every other mistake on the line.
      const messy = await runCli([command, '--nonsense', '-h']);
      expect(messy.status).to.equal(0);
      expect(messy.stdout).to.equal(r.stdout);
    });
  }

  it('should print the package version for --version', async function () {
    const pkg = JSON.parse(readFileSync(path.resolve(__dirname, '..', '..', 'package.json'), 'utf8')) as {
      version: string;
    };
    const r = await runCli(['--version']);
    expect(r.status).to.equal(0);
    expect(r.stdout.trim()).to.equal(pkg.version);
  });

  it('should exit 2 with the usage on stderr when no command is given', async function () {
    const r = await runCli([]);
    expect(r.status).to.equal(2);
    expect(r.stdout).to.equal('');
    expect(r.stderr).to.match(/^Usage: shmchannel/);
  });

  it('should exit 2 for an unknown command, naming it', async function () {
    const r = await runCli(['frobnicate']);
    expect(r.status).to.equal(2);
    expect(r.stderr).to.match(/^shmchannel: unknown command "frobnicate".*\(ERR_USAGE\)/);
  });

  const usageErrors: [string[], RegExp][] = [
    [['serve'], /missing NAME/],
    [['request', 'x'], /missing DATA/],
    [['request', 'x', 'a', 'b'], /unexpected operand "b"/],
    [['notify'], /missing NAME/],
    [['listen', 'x', '--count', 'zero'], /--count must be a whole number/],
    [['request', 'x', 'a', '--timeout', '-5'], /--timeout/],
    [['request', 'x', 'a', '--nonsense'], /Unknown option '--nonsense'/],
    [['rm'], /missing NAME/],
    [['ls', 'extra'], /unexpected operand "extra"/],
    [['bench', '--seconds', 'x'], /--seconds must be a number/],
    [['request', 'a/b', 'data'], /invalid name/],
  ];
  for (const [args, message] of usageErrors) {
    it(`should exit 2 for 'shmchannel ${args.join(' ')}'`, async function () {
      const r = await runCli(args);
      expect(r.status, r.stderr).to.equal(2);
      expect(r.stdout).to.equal('');
      expect(r.stderr).to.match(message);
      expect(r.stderr).to.include(`Run 'shmchannel ${args[0]} --help'`);
    });
  }

  it('should report a usage error as JSON on stderr with --json', async function () {
    const r = await runCli(['request', 'x', '--json']);
    expect(r.status).to.equal(2);
    expect(jsonLines(r.stderr)).to.deep.equal([{ error: { code: 'ERR_USAGE', message: 'missing DATA (or --stdin)' } }]);
  });
});

describe('shmchannel serve / request', function () {
  afterEach(cleanup);

  it('should answer a request with its own data (echo); NAME without its slash', async function () {
    const name = uniqueName('cli-echo');
    const server = await startServe(name.slice(1));
    expect(shmExists(name)).to.equal(true);
    const r = await runCli(['request', name.slice(1), 'hello']);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.equal('hello\n');
    expect(r.stderr).to.equal('');
    await server.waitForOutput('stdout', /request 1 "hello"\nresponse 1 "hello"\n/);
  });

  it('should answer with the stdout of --exec CMD run on the request data', async function () {
    const name = uniqueName('cli-exec');
    await startServe(name, ['--exec', 'tr a-z A-Z']);
    const r = await runCli(['request', name, 'hello, world']);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.equal('HELLO, WORLD\n');
  });

  it('should print the response as {"data"} JSON with --json', async function () {
    const name = uniqueName('cli-json');
    await startServe(name, ['--exec', 'tr a-z A-Z']);
    const r = await runCli(['request', name, 'json me', '--json']);
    expect(r.status, r.stderr).to.equal(0);
    expect(jsonLines(r.stdout)).to.deep.equal([{ data: 'JSON ME' }]);
  });

  it('should send stdin as the data with --stdin', async function () {
    const name = uniqueName('cli-stdin');
    await startServe(name);
    const r = await runCli(['request', name, '--stdin', ...CONNECT], 'line 1\nline 2\n');
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.equal('line 1\nline 2\n');
  });

  it("should fail with exit 1 and ERR_REMOTE, with the command's stderr, when --exec CMD fails", async function () {
    const name = uniqueName('cli-fail');
    await startServe(name, ['--exec', 'echo "no such thing" >&2; exit 3']);
    const r = await runCli(['request', name, 'x']);
    expect(r.status).to.equal(1);
    expect(r.stdout).to.equal('');
    expect(r.stderr).to.equal('shmchannel request: no such thing (ERR_REMOTE, remote ERR_EXEC_FAILED)\n');
    const j = await runCli(['request', name, 'x', '--json']);
    expect(j.status).to.equal(1);
    expect(jsonLines(j.stderr)).to.deep.equal([
      { error: { code: 'ERR_REMOTE', message: 'no such thing', remoteCode: 'ERR_EXEC_FAILED' } },
    ]);
  });

  it('should fail with exit 1 and ERR_TIMEOUT when no server appears within --connect-timeout', async function () {
    const name = uniqueName('cli-nosrv');
    const r = await runCli(['request', name, 'x', '--connect-timeout', '300']);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.match(/^shmchannel request: no server on .* within 300 ms \(ERR_TIMEOUT\)\n$/);
    expect(r.stderr).not.to.match(/\n\s+at /); // no stack trace
    const j = await runCli(['request', name, 'x', '--timeout', '300', '--json']);
    expect(j.status).to.equal(1);
    expect((jsonLines(j.stderr)[0] as { error: { code: string } }).error.code).to.equal('ERR_TIMEOUT');
  });

  it('should fail with exit 1 and ERR_TIMEOUT after --timeout, and cancel the request at the server', async function () {
    const name = uniqueName('cli-slow');
    const server = await startServe(name, ['--exec', 'sleep 30']);
    const r = await runCli(['request', name, 'x', '--timeout', '500', ...CONNECT]);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.match(/timed out after 500 ms \(ERR_TIMEOUT\)/);
    await server.waitForOutput('stdout', /cancelled 1\n/);
  });

  it('should cancel the request on SIGINT (exit 130), and the next client connects at once', async function () {
    const name = uniqueName('cli-int');
    const server = await startServe(name, ['--exec', 'sleep 30']);
    const first = new CliProcess(['request', name, 'x', ...CONNECT]);
    await server.waitForOutput('stdout', /request 1 "x"\n/);
    const r = await first.kill('SIGINT');
    expect(r.status, r.stderr).to.equal(2 ** 7 + 2);
    await server.waitForOutput('stdout', /cancelled 1\n/);
    // Right after a client exits its slot may still look taken for a moment: the CLI waits
    // for it (within --connect-timeout) instead of failing with ERR_CHANNEL_BUSY.
    const next = await runCli(['request', name, 'y', '--timeout', '300', ...CONNECT]);
    expect(next.status).to.equal(1);
    expect(next.stderr).to.match(/\(ERR_TIMEOUT\)\n$/);
  });

  it("should refuse a second server on a live server's name: exit 1, ERR_ALREADY_OPEN", async function () {
    const name = uniqueName('cli-twice');
    const first = await startServe(name);
    const r = await runCli(['serve', name]);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.match(new RegExp(`^shmchannel serve: .*pid ${first.pid}\\b.*\\(ERR_ALREADY_OPEN\\b.*\\)\n$`));
    expect(shmExists(name)).to.equal(true);
  });

  it('should close on SIGINT and on SIGTERM: exit 0, segment removed', async function () {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      const name = uniqueName('cli-stop');
      const server = await startServe(name);
      const r = await server.kill(signal);
      expect(r.status, r.stderr).to.equal(0);
      expect(r.stderr).to.include(`${signal}: closed ${name}`);
      expect(shmExists(name)).to.equal(false);
    }
  });

  it('should report what it handles as JSON Lines with --json', async function () {
    const name = uniqueName('cli-events');
    const server = await startServe(name, ['--json']);
    expect((await runCli(['notify', name, 'note'])).status).to.equal(0);
    expect((await runCli(['request', name, 'ping'])).status).to.equal(0);
    const r = await server.kill('SIGTERM');
    expect(r.status).to.equal(0);
    const events = jsonLines(r.stdout) as { event: string }[];
    expect(events[0]).to.deep.equal({ event: 'ready', name, pid: server.pid });
    expect(events.filter((e) => e.event !== 'connected' && e.event !== 'disconnected').slice(1)).to.deep.equal([
      { event: 'notification', data: 'note' },
      { event: 'request', id: 1, data: 'ping' },
      { event: 'response', id: 1, data: 'ping' },
      { event: 'closed', signal: 'SIGTERM' },
    ]);
  });

  it('should report a client dropped for breaking the protocol, and go on serving', async function () {
    const name = uniqueName('cli-dropped');
    // One client: the attack writes into the server's own segment, by its name.
    const server = await startServe(name, ['--json', '--max-clients', '1']);
    // Bytes no client should write: a frame of an unknown kind in the client-to-server ring.
    const capacity = inspectSegment(name).ringCapacity;
    const memory = SharedMemory.open(name);
    publishUnknownKindFrame(memory.buffer, 'c2s', capacity);
    ringSegment(name);
    memory.close();
    await server.waitForOutput('stdout', /"event":"client-dropped"/);
    const answered = await runCli(['request', name, 'still here', ...CONNECT]);
    expect(answered.status, answered.stderr).to.equal(0);
    expect(answered.stdout.trim()).to.equal('still here');
    const r = await server.kill('SIGTERM');
    expect(r.status).to.equal(0);
    const events = jsonLines(r.stdout) as { event: string; code?: string }[];
    const dropped = events.findIndex((e) => e.event === 'client-dropped');
    expect(events[dropped]?.code).to.equal('ERR_PROTOCOL');
    // Why the slot was freed comes before the departure it caused.
    expect(events.findIndex((e) => e.event === 'disconnected')).to.be.above(dropped);
  });
});

describe('shmchannel notify / listen', function () {
  afterEach(cleanup);

  it('should deliver a notification from notify to listen --server --count 1', async function () {
    const name = uniqueName('cli-note');
    const listener = new CliProcess(['listen', name, '--server', '--count', '1']);
    const n = await runCli(['notify', name, 'hello listener', ...CONNECT]);
    expect(n.status, n.stderr).to.equal(0);
    const l = await listener.done;
    expect(l.status, l.stderr).to.equal(0);
    expect(l.stdout).to.equal('hello listener\n');
    expect(shmExists(name)).to.equal(false);
  });

  it('should not drop notifications when notify closes right after sending (in order, with --json)', async function () {
    const name = uniqueName('cli-notes');
    const listener = new CliProcess(['listen', name, '--server', '--count', '4', '--json']);
    for (const text of ['one', 'two', 'three']) {
      const n = await runCli(['notify', name, text, ...CONNECT]);
      expect(n.status, n.stderr).to.equal(0);
    }
    // A notification larger than the ring (1 MiB) must wait in the queue until the
    // listener reads: notify may not exit before it is all in the ring.
    const big = 'x'.repeat(3 * 1024 * 1024);
    const n = await runCli(['notify', name, '--stdin', '--json', ...CONNECT], big);
    expect(n.status, n.stderr).to.equal(0);
    expect(jsonLines(n.stdout)).to.deep.equal([{ sent: big.length }]);
    const l = await listener.done;
    expect(l.status, l.stderr).to.equal(0);
    expect(jsonLines(l.stdout)).to.deep.equal([{ data: 'one' }, { data: 'two' }, { data: 'three' }, { data: big }]);
  });

  /** A notify whose 3 MiB wait in its queue, for a listener that SIGSTOP keeps from reading. */
  async function notifyToStoppedListener(name: string): Promise<{ listener: CliProcess; notifier: CliProcess }> {
    // One client: it attaches to the server's segment without the (stopped) server's help.
    const listener = new CliProcess(['listen', name, '--server', '--max-clients', '1']);
    await listener.waitForOutput('stderr', /listening on/);
    // A server killed while stopped leaves its segment behind.
    unlinkLater(name);
    listener.child.kill('SIGSTOP');
    const notifier = new CliProcess(['notify', name, '--stdin', ...CONNECT], 'x'.repeat(3 * 1024 * 1024));
    // A client attaches without the server's help: once its pid is in the header, it is sending.
    await waitUntil(() => inspectSegment(name).clientPid === notifier.pid);
    return { listener, notifier };
  }

  it('should fail with ERR_PEER_LOST when the listener dies before reading what notify sent', async function () {
    const name = uniqueName('cli-note-lost');
    const { listener, notifier } = await notifyToStoppedListener(name);
    await listener.kill('SIGKILL');
    const n = await notifier.done;
    expect(n.status, n.stderr).to.equal(1);
    expect(n.stderr)
      .to.match(/ERR_PEER_LOST/)
      .and.to.match(/left before reading all that was sent/);
  });

  it('should exit 130 on SIGINT while notify waits for the listener to read', async function () {
    const name = uniqueName('cli-note-int');
    const { listener, notifier } = await notifyToStoppedListener(name);
    const n = await notifier.kill('SIGINT');
    expect(n.status, n.stderr).to.equal(130);
    await listener.kill('SIGKILL');
  });

  it('should deliver from notify --server to a listening client', async function () {
    const name = uniqueName('cli-srvnote');
    const notifier = new CliProcess(['notify', name, '--server', 'from the server', ...CONNECT]);
    const l = await runCli(['listen', name, '--count', '1', '--json', ...CONNECT]);
    expect(l.status, l.stderr).to.equal(0);
    expect(jsonLines(l.stdout)).to.deep.equal([{ data: 'from the server' }]);
    expect((await notifier.done).status).to.equal(0);
  });

  it('should print notifications at serve', async function () {
    const name = uniqueName('cli-servenote');
    const server = await startServe(name);
    expect((await runCli(['notify', name, 'to the server'])).status).to.equal(0);
    await server.waitForOutput('stdout', /notification "to the server"\n/);
  });

  it('should listen until SIGINT, then exit 0', async function () {
    const name = uniqueName('cli-listen-int');
    const listener = new CliProcess(['listen', name, '--server']);
    await waitUntil(() => shmExists(name));
    await listener.waitForOutput('stderr', /listening on/);
    const r = await listener.kill('SIGINT');
    expect(r.status, r.stderr).to.equal(0);
    expect(shmExists(name)).to.equal(false);
  });
});

describe('shmchannel ls / rm', function () {
  afterEach(cleanup);

  interface LsEntry {
    name: string;
    shmchannel: boolean;
    status?: string;
    serverPid?: number;
    serverAlive?: boolean;
    ringCapacity?: number;
  }

  async function lsJson(all = false): Promise<LsEntry[]> {
    const r = await runCli(['ls', '--json', ...(all ? ['--all'] : [])]);
    expect(r.status, r.stderr).to.equal(0);
    const lines = jsonLines(r.stdout) as { segments: LsEntry[] }[];
    expect(lines).to.have.length(1);
    return lines[0].segments;
  }

  /** A server segment whose server was SIGKILLed: left behind, stale. */
  async function staleSegment(label: string): Promise<string> {
    const name = uniqueName(label);
    unlinkLater(name);
    const server = await startServe(name);
    const r = await server.kill('SIGKILL');
    expect(r.signal).to.equal('SIGKILL');
    expect(shmExists(name)).to.equal(true);
    return name;
  }

  it("should list a live server as alive and a SIGKILLed server's segment as stale (--json)", async function () {
    const liveName = uniqueName('cli-live');
    const live = await startServe(liveName);
    const staleName = await staleSegment('cli-stale');
    const segments = await lsJson();
    const liveEntry = segments.find((s) => s.name === liveName);
    const staleEntry = segments.find((s) => s.name === staleName);
    expect(liveEntry).to.include({
      shmchannel: true,
      status: 'alive',
      serverAlive: true,
      serverPid: live.pid,
      ringCapacity: 1 << 20,
    });
    expect(staleEntry).to.include({ shmchannel: true, status: 'stale', serverAlive: false });
  });

  it('should list them as a table without --json', async function () {
    const name = uniqueName('cli-table');
    const server = await startServe(name);
    const r = await runCli(['ls']);
    expect(r.status).to.equal(0);
    expect(r.stdout).to.match(/^NAME +SERVER +STATUS +CLIENTS +RING +POOL\n/);
    expect(r.stdout).to.match(new RegExp(`^${name} +${server.pid} +alive +- +1 MiB +-$`, 'm'));
  });

  it("should list each client of a server of many, serve them at once, and remove a dead server's connections with it", async function () {
    const name = uniqueName('cli-clients');
    unlinkLater(name);
    const server = await startServe(name);
    const first = await Peer.spawn({ name, mode: 'client' });
    await server.waitForOutput('stderr', new RegExp(`client connected \\(pid ${first.pid}, connection 1\\)`));
    const second = await Peer.spawn({ name, mode: 'client' });
    await server.waitForOutput('stderr', new RegExp(`client connected \\(pid ${second.pid}, connection 2\\)`));

    const entry = (await lsJson()).find((s) => s.name === name) as LsEntry & { clients: unknown[] };
    expect(entry).to.deep.include({ kind: 'directory', maxClients: 16, status: 'alive' });
    expect(entry.clients).to.deep.equal([
      { slot: 0, pid: first.pid, alive: true, connected: true, connectionId: 1 },
      { slot: 1, pid: second.pid, alive: true, connected: true, connectionId: 2 },
    ]);
    // Its connections are its clients, not entries of their own.
    expect((await lsJson()).map((s) => s.name).filter((n) => n.startsWith(`${name}~`))).to.deep.equal([]);
    const table = await runCli(['ls']);
    expect(table.stdout).to.match(
      new RegExp(`^${name} +${server.pid} +alive +${first.pid}, ${second.pid} +1 MiB +-$`, 'm'),
    );

    // Two more clients at once, while both others stay connected: all four served.
    const [a, b] = await Promise.all([
      runCli(['request', name, 'a', ...CONNECT]),
      runCli(['request', name, 'b', ...CONNECT]),
    ]);
    expect([a.stdout, b.stdout]).to.deep.equal(['a\n', 'b\n']);

    await server.kill('SIGKILL');
    await Promise.all([first.kill(), second.kill()]);
    expect(shmEntries(name).sort()).to.deep.equal([name.slice(1), `${name.slice(1)}~0`, `${name.slice(1)}~1`]);
    expect((await lsJson()).find((s) => s.name === name)).to.include({ status: 'stale', kind: 'directory' });
    const removed = await runCli(['rm', name]);
    expect(removed.status, removed.stderr).to.equal(0);
    expect(shmEntries(name)).to.deep.equal([]);
  });

  it('should skip entries that are not shmchannel segments unless --all', async function () {
    const name = uniqueName('cli-raw');
    SharedMemory.create(name, 64).close();
    unlinkLater(name);
    expect((await lsJson()).map((s) => s.name)).not.to.include(name);
    expect((await lsJson(true)).find((s) => s.name === name)).to.deep.include({
      shmchannel: false,
      code: 'ERR_INCOMPATIBLE_SEGMENT',
    });
  });

  it("should refuse to remove a live server's segment: exit 1, naming the pid", async function () {
    const name = uniqueName('cli-rmlive');
    const server = await startServe(name);
    const r = await runCli(['rm', name]);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.include(`live server pid ${server.pid}`);
    expect(r.stderr).to.match(/\(ERR_ALREADY_OPEN\)\n$/);
    expect(shmExists(name)).to.equal(true);
    const j = await runCli(['rm', name, '--json']);
    expect(j.status).to.equal(1);
    const [{ error }] = jsonLines(j.stderr) as { error: { code: string; ownerPid: number } }[];
    expect(error).to.include({ code: 'ERR_ALREADY_OPEN', ownerPid: server.pid });
  });

  it('should remove a stale segment: exit 0', async function () {
    const name = await staleSegment('cli-rmstale');
    const r = await runCli(['rm', name, '--json']);
    expect(r.status, r.stderr).to.equal(0);
    const [removed] = jsonLines(r.stdout) as { serverPid: number }[];
    expect(removed).to.deep.equal({
      removed: name,
      shmchannel: true,
      serverPid: removed.serverPid,
      serverAlive: false,
      forced: false,
    });
    expect(removed.serverPid).to.be.greaterThan(0);
    expect(shmExists(name)).to.equal(false);
  });

  it('should remove a live one with --force', async function () {
    const name = uniqueName('cli-rmforce');
    await startServe(name);
    const r = await runCli(['rm', name, '--force']);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/^removed .* \(server pid \d+ is alive\)\n$/);
    expect(shmExists(name)).to.equal(false);
  });

  it('should refuse a name that is not a shmchannel segment unless --force', async function () {
    const name = uniqueName('cli-rmraw');
    SharedMemory.create(name, 64).close();
    unlinkLater(name);
    const r = await runCli(['rm', name]);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.match(/not a shmchannel segment.*\(ERR_INCOMPATIBLE_SEGMENT\)/);
    expect(shmExists(name)).to.equal(true);
    expect((await runCli(['rm', name, '--force'])).status).to.equal(0);
    expect(shmExists(name)).to.equal(false);
  });

  it('should fail with exit 1 and ENOENT for a name that does not exist', async function () {
    const r = await runCli(['rm', uniqueName('cli-rmnone')]);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.match(/does not exist \(ERR_SHM_OPEN_FAILED, ENOENT\)\n$/);
  });
});

describe('shmchannel bench', function () {
  afterEach(cleanup);

  it('should report positive numbers with --json, progress on stderr, and leave no segment', async function () {
    const bench = new CliProcess(['bench', '--seconds', '1', '--json']);
    const r = await bench.done;
    expect(r.status, r.stderr).to.equal(0);
    const [result] = jsonLines(r.stdout) as {
      seconds: number;
      messageSize: number;
      roundTrip: { count: number; p50Us: number; p99Us: number; meanUs: number };
      notifications: { count: number; seconds: number; msgsPerSec: number };
    }[];
    for (const value of [
      result.seconds,
      result.messageSize,
      result.roundTrip.count,
      result.roundTrip.p50Us,
      result.roundTrip.p99Us,
      result.roundTrip.meanUs,
      result.notifications.count,
      result.notifications.seconds,
      result.notifications.msgsPerSec,
    ]) {
      expect(value).to.be.a('number').and.to.be.greaterThan(0);
    }
    // The rate is over the notification phase, which is part of the run.
    expect(result.notifications.seconds).to.be.below(result.seconds);
    // Its time is rounded to 10 ms.
    expect(result.notifications.count / result.notifications.msgsPerSec).to.be.closeTo(
      result.notifications.seconds,
      0.0051,
    );
    expect(result.roundTrip.p99Us).to.be.at.least(result.roundTrip.p50Us);
    // stderr is a pipe here: plain progress lines, no carriage returns.
    expect(r.stderr).to.match(/^bench: \[/m);
    expect(r.stderr).not.to.include('\r');
    expect(shmExists(`/shmchannel-bench-${bench.pid}`)).to.equal(false);
  });

  it("should print the notification phase's own time, so that count / time is the rate it prints", async function () {
    const r = await runCli(['bench', '--seconds', '2']);
    expect(r.status, r.stderr).to.equal(0);
    const line = /^notifications \(64 B\): (\d+) in (\d+(?:\.(\d+))?) s, (\d+) msgs\/s$/m.exec(r.stdout);
    expect(line, r.stdout).not.to.equal(null);
    const [, count, seconds, decimals = '', rate] = line ?? [];
    // The time count / rate implies, against the time printed: apart by no more than the
    // printed time's rounding (half its last digit), plus a little for the rate's own.
    const implied = Number(count) / Number(rate);
    const rounding = 0.5 * 10 ** -decimals.length;
    expect(Math.abs(implied - Number(seconds)), r.stdout).to.be.at.most(rounding * 1.01 + 0.001);
    // The phase lasts at least half of --seconds; the whole run (both phases and the warm-up)
    // lasts more than all of it.
    expect(Number(seconds), r.stdout).to.be.at.least(1).and.below(2);
  });
});
