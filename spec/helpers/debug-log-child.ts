// Run by spec/47.debug-log.spec.ts with and without NODE_DEBUG: a server and a client in one
// process, one request, then the client leaves and the server closes. Prints only 'done'
// (stdout); whatever util.debuglog writes goes to stderr.
import { filter, firstValueFrom, lastValueFrom } from 'rxjs';

import { Channel } from '../../lib/index';

async function main(): Promise<void> {
  const name = process.argv[2];
  const server = new Channel(name, 'server');
  await server.open();
  server.requests$.subscribe((req) => req.respond(req.data));
  const client = new Channel(name, 'client');
  await client.open();
  await lastValueFrom(client.request('ping'));
  const serverLostClient = firstValueFrom(server.state$.pipe(filter((s) => s === 'peer-lost')));
  await client.close();
  await serverLostClient;
  await server.close();
  console.log('done');
}

main().catch((err: unknown) => {
  console.log(`failed: ${String(err)}`);
  process.exitCode = 1;
});
