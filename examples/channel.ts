/**
 * The example of the 2017 library, in TypeScript. Run the server, then the client, in two
 * terminals:
 *
 *   node dist/examples/channel.js server "Message from server."
 *   node dist/examples/channel.js client "Message from client."
 *
 * Each side answers the other's requests, sends one request and one notification with its
 * message, prints everything it receives, and exits when the exchange is over. An optional
 * third argument names the channel (default /shmchannel-example).
 */
import { filter, firstValueFrom, lastValueFrom } from 'rxjs';

import { Channel, type ChannelState, isShmChannelError } from '../lib/index';

const [mode, message, name = '/shmchannel-example'] = process.argv.slice(2);

const peer = mode === 'server' ? 'client' : 'server';

/** Answers every request and prints every notification, for as long as the channel is open. */
function answerAndListen(channel: Channel): void {
  channel.requests$.subscribe((request) => {
    const text = request.data.toString();
    console.log(`request from ${peer}: "${text}"`);
    request.respond(`${mode} got "${text}"`);
  });
  channel.notifications$.subscribe((note) => console.log(`notification from ${peer}: "${note.toString()}"`));
}

/** Sends our request and our notification (in that order on the wire), prints the reply. */
async function exchange(channel: Channel, text: string): Promise<void> {
  // request() is cold: lastValueFrom subscribes, which sends it.
  const reply = lastValueFrom(channel.request(text, { timeout: 5000 }));
  channel.notify(text);
  console.log(`reply from ${peer}: ${(await reply).toString()}`);
}

/** Resolves when the channel reaches `state`; rejects if it closes first (e.g. on Ctrl-C). */
async function reached(channel: Channel, state: ChannelState): Promise<void> {
  const seen = await firstValueFrom(channel.state$.pipe(filter((s) => s === state || s === 'closed')));
  if (seen !== state) throw new Error(`channel closed while waiting for '${state}'`);
}

async function runServer(channel: Channel): Promise<void> {
  await channel.open();
  answerAndListen(channel);
  channel.state$.subscribe((state) => {
    if (state === 'connected') console.log('client connected');
    if (state === 'peer-lost') console.log('client disconnected');
  });
  // Watched from the start, so that a client that comes and goes at once is still seen.
  const clientGone = reached(channel, 'peer-lost');
  console.log(`listening on ${channel.name}; start the client now`);
  const talk = reached(channel, 'connected').then(() => exchange(channel, message));
  // The client leaves once it has what it wants; the server closes after it, which removes
  // the segment from /dev/shm.
  await Promise.all([talk, clientGone]);
}

async function runClient(channel: Channel): Promise<void> {
  await channel.open();
  answerAndListen(channel);
  // The server sends its request before its notification, so once the notification is here
  // we have already answered the request, and can leave.
  const serverNote = firstValueFrom(channel.notifications$);
  await Promise.all([exchange(channel, message), serverNote]);
}

async function main(): Promise<void> {
  if ((mode !== 'server' && mode !== 'client') || message === undefined) {
    console.error('usage: node dist/examples/channel.js server|client "message" [/channel-name]');
    process.exitCode = 2;
    return;
  }
  // connectTimeout: the client waits this long for the server to appear.
  const channel = new Channel(name, mode, { connectTimeout: 10_000 });
  // Ctrl-C or kill: close first, so that the server's segment does not outlive it.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      console.log(`${signal}: closing`);
      process.exitCode = 130;
      void channel.close();
    });
  }
  try {
    await (mode === 'server' ? runServer(channel) : runClient(channel));
  } catch (err) {
    if (process.exitCode !== 130) {
      const code = isShmChannelError(err) ? ` (${err.code})` : '';
      console.error(`${mode} failed: ${(err as Error).message}${code}`);
      process.exitCode = 1;
    }
  } finally {
    await channel.close();
  }
  // Nothing keeps the process alive once the channel is closed: it exits by itself.
}

void main();
