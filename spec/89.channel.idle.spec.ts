import { readdirSync, readFileSync } from 'node:fs';
import { arch, release } from 'node:os';

import { expect } from 'chai';

import { uniqueName } from './helpers/names';
import { Peer } from './helpers/peer';
import { openChannel, releaseAll } from './helpers/resources';
import { reaches, waitUntil } from './helpers/wait';

// x86-64 system call numbers, as /proc/<pid>/task/<tid>/syscall shows them.
const SYS_POLL = 7;
const SYS_PPOLL = 271;
const SYS_FUTEX_WAITV = 449;
// poll()'s timeout of -1 as the register holds it.
const NO_POLL_TIMEOUT = new Set(['0xffffffff', '0xffffffffffffffff']);

interface ThreadState {
  comm: string;
  tid: string;
  /** The system call it is blocked in and its arguments, or undefined while it runs. */
  syscall?: number;
  args: string[];
  wakeUps: number;
}

/** The named native threads of a process, and what each is blocked in. */
function nativeThreads(pid: number | 'self'): ThreadState[] {
  const threads: ThreadState[] = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const base = `/proc/${pid}/task/${tid}`;
    try {
      const comm = readFileSync(`${base}/comm`, 'utf8').trim();
      if (!comm.startsWith('shmch-')) continue;
      // "nr arg1 ... arg6 sp pc" when blocked; "running" or "-1 sp pc" otherwise.
      const fields = readFileSync(`${base}/syscall`, 'utf8').trim().split(' ');
      const nr = Number(fields[0]);
      const status = readFileSync(`${base}/status`, 'utf8');
      const switches = /voluntary_ctxt_switches:\s+(\d+)/.exec(status);
      threads.push({
        comm,
        tid,
        syscall: Number.isInteger(nr) && nr >= 0 ? nr : undefined,
        args: fields.slice(1, 7),
        wakeUps: Number(switches?.[1] ?? NaN),
      });
    } catch {
      // The thread ended while we looked.
    }
  }
  return threads.sort((a, b) => a.comm.localeCompare(b.comm));
}

/** Why `t` is not asleep with nothing that would end its sleep but an event; '' if it is. */
function timedOrAwake(t: ThreadState): string {
  const [, , , timeout] = t.args;
  // The peer watch and the segment watch: poll() on their descriptors and an eventfd.
  const pollsUntimed =
    (t.syscall === SYS_POLL && NO_POLL_TIMEOUT.has(t.args[2])) || (t.syscall === SYS_PPOLL && t.args[2] === '0x0');
  const asleepUntimed =
    t.comm === 'shmch-waker'
      ? t.syscall === SYS_FUTEX_WAITV && timeout === '0x0'
      : (t.comm === 'shmch-watch' || t.comm === 'shmch-segwatch') && pollsUntimed;
  return asleepUntimed ? '' : `${t.comm} (${t.tid}) in syscall ${t.syscall ?? 'none'} (${t.args.join(' ')})`;
}

function kernelHasFutexWaitv(): boolean {
  const [major, minor] = release().split('.').map(Number);
  return major > 5 || (major === 5 && minor >= 16);
}

describe('An idle open channel', function () {
  before(function () {
    // The system call numbers above; the untimed waker wait needs futex_waitv (Linux 5.16).
    if (arch() !== 'x64' || !kernelHasFutexWaitv()) this.skip();
  });
  afterEach(releaseAll);

  it('should leave every native thread of both processes asleep with no timeout, and not wake them', async function () {
    this.timeout(30_000);
    const name = uniqueName('idle');
    // One client: the threads below are a server of one client's (waker and peer watch).
    const server = await openChannel(name, 'server', { maxClients: 1 });
    const client = await Peer.spawn({ name, mode: 'client' });
    await reaches(server, 'connected');
    const received: string[] = [];
    server.notifications$.subscribe((data) => received.push(data.toString()));
    await client.notify({ text: 'settle' });
    await waitUntil(() => received.length === 1);

    const bothSides = (): ThreadState[] => [...nativeThreads('self'), ...nativeThreads(client.pid)];
    // Waker and peer watch on each side, and each process's segment watch.
    // A thread that just handled the message goes back to sleep: give it a while, then say which
    // one did not.
    for (let look = 0; look < 100 && !bothSides().every((t) => timedOrAwake(t) === ''); look++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const before = bothSides();
    expect(before.map(timedOrAwake).filter(Boolean), 'threads not asleep untimed').to.deep.equal([]);
    expect(before.map((t) => t.comm)).to.deep.equal([
      'shmch-segwatch',
      'shmch-waker',
      'shmch-watch',
      'shmch-segwatch',
      'shmch-waker',
      'shmch-watch',
    ]);

    // Longer than the 2 s timeout the waker used to sleep with: a timer would have woken it.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const after = bothSides();
    expect(after.map(timedOrAwake).filter(Boolean), 'threads not asleep untimed').to.deep.equal([]);
    expect(after.map((t) => `${t.comm} ${t.wakeUps}`)).to.deep.equal(before.map((t) => `${t.comm} ${t.wakeUps}`));

    // Asleep, yet woken by what matters: the channel still carries a message at once.
    await client.notify({ text: 'after the idle spell' });
    await waitUntil(() => received.length === 2);
    expect(received).to.deep.equal(['settle', 'after the idle spell']);
  });
});
