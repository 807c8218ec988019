/**
 * Streamed responses and cancellation:
 *
 *   node dist/examples/request-stream.js
 *
 * The server answers a request "N" with N values, 50 ms apart ("0": without end), using
 * handleWith. The client (this file again, forked) takes a finite stream, then unsubscribes
 * from an endless one, which cancels it at the server.
 */
import { fork } from 'node:child_process';
import { once } from 'node:events';

import { filter, firstValueFrom, interval, lastValueFrom, map, take, toArray } from 'rxjs';

import { Channel, handleWith } from '../lib/index';

const [role = 'server', name = `/shmchannel-stream-${process.pid}`] = process.argv.slice(2);

async function server(): Promise<void> {
  const channel = new Channel(name, 'server');
  await channel.open();

  channel.requests$
    .pipe(
      handleWith((data, request) => {
        const count = Number(data.toString());
        console.log(`[server] request ${request.id}: ${count > 0 ? `${count} values` : 'values without end'}`);
        // Fires only if the caller cancels; handleWith then unsubscribes the stream below.
        request.cancelled$.subscribe(() => {
          console.log(`[server] request ${request.id} cancelled by the client`);
          channel.notify(`request ${request.id} was cancelled`);
        });
        const ticks = interval(50).pipe(map((i) => `value ${i}`));
        return count > 0 ? ticks.pipe(take(count)) : ticks;
      }),
    )
    .subscribe((id) => console.log(`[server] request ${id} finished`));

  try {
    const client = fork(__filename, ['client', name]);
    const [code] = (await once(client, 'exit')) as [number | null];
    process.exitCode = code ?? 1;
  } finally {
    await channel.close(); // removes the segment
  }
}

async function client(): Promise<void> {
  const channel = new Channel(name, 'client');
  await channel.open();

  // A finite stream: every value, then completion.
  const values = await lastValueFrom(channel.request('3').pipe(map(String), toArray()));
  console.log(`[client] got ${JSON.stringify(values)}, then completion`);

  // An endless stream: unsubscribing sends a cancel, and the server stops producing.
  const cancelled = firstValueFrom(channel.notifications$.pipe(filter((n) => n.includes('cancelled'))));
  const subscription = channel.request('0').subscribe((value) => console.log(`[client] ${value.toString()}`));
  setTimeout(() => subscription.unsubscribe(), 180);
  console.log(`[client] server says: ${(await cancelled).toString()}`);

  await channel.close();
}

(role === 'client' ? client() : server()).catch((err: unknown) => {
  console.error(`[${role}]`, err);
  process.exitCode = 1;
});
