// A peer on the Node package, for spec 98e (cross-runtime): the command line and the lines of
// spec/helpers/cross-peer.c (see its comment), so that the spec pairs any two runtimes the
// same way and can SIGKILL the Node side too. Where the C peer prints "peer-left", this one
// prints the error's code (ERR_PEER_LOST); a remote error is "error ERR_REMOTE CODE|MESSAGE".

import { lastValueFrom, toArray } from 'rxjs';

import { Channel, isShmChannelError, type IncomingRequest } from '../../lib/index';
import { fnv1a, peerPattern } from './foreign-peers';

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

function codeOf(err: unknown): string {
  return isShmChannelError(err) ? err.code : String(err);
}

function answer(request: IncomingRequest): void {
  const text = request.data.toString();
  if (text.startsWith('fail:')) {
    const [, code, ...message] = text.split(':');
    request.error(Object.assign(new Error(message.join(':')), { code }));
  } else if (text.startsWith('stream:')) {
    for (let i = 0; i < Number(text.slice(7)); i++) request.next(`part ${i}`);
    request.complete();
  } else if (text.startsWith('block')) {
    say(`blocking ${text}`);
    request.cancelled$.subscribe(() => say(`cancelled ${text}`));
  } else {
    request.respond(Buffer.from(request.data).reverse());
  }
}

async function ask(channel: Channel): Promise<void> {
  say('asked');
  try {
    await lastValueFrom(channel.request('block'));
    say('ask answered');
  } catch (err) {
    say(`ask error ${codeOf(err)}`);
  }
}

async function server(name: string, ring: number, clients: number): Promise<void> {
  const channel = new Channel(name, 'server', { ringCapacity: ring, maxMessageSize: 1 << 20 });
  let left = 0;
  const allServed = new Promise<void>((resolve) => {
    channel.state$.subscribe((state) => {
      if (state === 'connected') say('hello');
      if (state === 'peer-lost') {
        say('bye');
        if (++left === clients) resolve();
      }
    });
  });
  channel.requests$.subscribe(answer);
  channel.notifications$.subscribe((note) => {
    say(`notify ${note.length} ${fnv1a(note)}`);
    if (note.toString() === 'ask') void ask(channel);
    else channel.notify(Buffer.from(note).reverse());
  });
  await channel.open();
  say('ready');
  await allServed;
  await channel.close();
}

async function client(name: string, size: number): Promise<void> {
  const channel = new Channel(name, 'client', { connectTimeout: 20_000 });
  const note = new Promise<Buffer>((resolve) => channel.notifications$.subscribe(resolve));
  await channel.open();
  const big = peerPattern(size);
  const reply = await lastValueFrom(channel.request(big, { timeout: 60_000 }));
  say(`reply ${reply.length} ${fnv1a(reply)}`);
  const parts = await lastValueFrom(channel.request('stream:3', { timeout: 60_000 }).pipe(toArray()));
  say(`stream ${parts.map(String).join('|')}`);
  try {
    await lastValueFrom(channel.request('fail:E_CROSS:refused "as asked" ✓', { timeout: 60_000 }));
    say('no error');
  } catch (err) {
    say(`error ${codeOf(err)} ${isShmChannelError(err) ? err.remoteCode : ''}|${(err as Error).message}`);
  }
  channel.notify(big);
  const back = await note;
  say(`note ${back.length} ${fnv1a(back)}`);
  await channel.close();
}

async function clientPending(name: string): Promise<void> {
  const channel = new Channel(name, 'client', { connectTimeout: 20_000 });
  await channel.open();
  const pending = lastValueFrom(channel.request('block'));
  say('sent');
  try {
    await pending;
    say('pending answered');
  } catch (err) {
    say(`pending error ${codeOf(err)}`);
  }
  await channel.close();
}

async function clientHold(name: string): Promise<void> {
  const channel = new Channel(name, 'client', { connectTimeout: 20_000 });
  channel.requests$.subscribe(answer);
  await channel.open();
  channel.notify('ask');
  // Until killed: the timer keeps the process alive.
  await new Promise(() => setInterval(() => undefined, 1 << 30));
}

const [command, name, ...rest] = process.argv.slice(2);
const run =
  command === 'server' && rest.length === 2
    ? server(name, Number(rest[0]), Number(rest[1]))
    : command === 'client' && rest.length === 1
      ? client(name, Number(rest[0]))
      : command === 'client-pending'
        ? clientPending(name)
        : command === 'client-hold'
          ? clientHold(name)
          : Promise.reject(new Error('usage: cross-peer-node server|client|client-pending|client-hold /name ...'));
run.then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`cross-peer-node: ${String(err)}\n`);
    process.exit(1);
  },
);
