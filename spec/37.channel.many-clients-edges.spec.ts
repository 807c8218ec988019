import { expect } from 'chai';
import { config as rxjsConfig, firstValueFrom, NEVER, Observable, take } from 'rxjs';

import { handleWith, type Connection } from '../lib/index';
import { recordClients } from './helpers/clients';
import { uniqueName } from './helpers/names';
import { openChannel, releaseAll } from './helpers/resources';
import { waitUntil } from './helpers/wait';

/** What RxJS reports as unhandled from now on (config.onUnhandledError; afterEach resets it). */
function recordUnhandled(): unknown[] {
  const reported: unknown[] = [];
  rxjsConfig.onUnhandledError = (err: unknown) => reported.push(err);
  return reported;
}

describe('A server of many clients, at its edges', function () {
  this.timeout(20_000);
  afterEach(async () => {
    rxjsConfig.onUnhandledError = null;
    rxjsConfig.useDeprecatedSynchronousErrorHandling = false;
    await releaseAll();
  });

  it("reports a handler's teardown that throws when its client leaves, and the client still ends alone", async () => {
    const name = uniqueName('mce-teardown');
    const server = await openChannel(name, 'server');
    const clients = recordClients(server);
    const reported = recordUnhandled();
    const drops: string[] = [];
    server.clientErrors$.subscribe((e) => drops.push(e.code));
    let handling = 0;
    server.requests$
      .pipe(
        handleWith(
          () =>
            new Observable<string>(() => {
              handling += 1;
              return () => {
                throw new Error('teardown bug');
              };
            }),
        ),
      )
      .subscribe();

    const leaving = await openChannel(name, 'client');
    await waitUntil(() => clients.length === 1);
    const staying = await openChannel(name, 'client');
    await waitUntil(() => clients.length === 2);
    const [gone] = clients;
    leaving.request('never answered').subscribe({ error: () => undefined });
    await waitUntil(() => handling === 1);
    await leaving.close();

    expect(await gone.closed).to.equal(undefined);
    await waitUntil(() => reported.length >= 1);
    expect(drops).to.deep.equal([]);
    expect(server.state).to.equal('connected');
    // The server goes on: the other client is still served.
    const other = clients.find((c) => c !== gone) as Connection;
    expect(other.isOpen).to.equal(true);
    const heard = firstValueFrom(staying.notifications$);
    server.notify('still here');
    expect(String(await heard)).to.equal('still here');
  });

  it("reports a request's finalizer that throws when its client leaves, and ends the connection", async () => {
    const name = uniqueName('mce-finalize');
    const server = await openChannel(name, 'server');
    const clients = recordClients(server);
    const reported = recordUnhandled();
    const client = await openChannel(name, 'client');
    client.requests$.pipe(handleWith(() => NEVER)).subscribe();
    await waitUntil(() => clients.length === 1);
    const staying = await openChannel(name, 'client');
    await waitUntil(() => clients.length === 2);
    const [first] = clients;

    const failed: string[] = [];
    first
      .request('pending')
      .subscribe({ error: (e: { code: string }) => failed.push(e.code) })
      .add(() => {
        throw new Error('finalizer bug');
      });
    await new Promise((resolve) => setTimeout(resolve, 20));
    await client.close();

    expect(await first.closed).to.equal(undefined);
    expect(failed).to.deep.equal(['ERR_PEER_LOST']);
    await waitUntil(() => reported.length >= 1);
    expect(server.state).to.equal('connected');
    const heard = firstValueFrom(staying.notifications$);
    server.notify('still here');
    expect(String(await heard)).to.equal('still here');
  });

  it("keeps a client served when a state$ subscriber throws (RxJS's deprecated synchronous error handling)", async () => {
    const name = uniqueName('mce-state-throw');
    const server = await openChannel(name, 'server');
    const clients = recordClients(server);
    const reported = recordUnhandled();
    const drops: string[] = [];
    server.clientErrors$.subscribe((e) => drops.push(e.code));
    rxjsConfig.useDeprecatedSynchronousErrorHandling = true;
    server.state$.subscribe((s) => {
      if (s === 'connected' || s === 'peer-lost') throw new Error(`state bug ${s}`);
    });

    const first = await openChannel(name, 'client');
    await waitUntil(() => clients.length === 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(drops).to.deep.equal([]);
    expect(clients[0].isOpen).to.equal(true);
    expect(server.state).to.equal('connected');

    await first.close();
    await clients[0].closed;
    await waitUntil(() => server.state === 'open');
    await waitUntil(() => reported.length === 2);
    expect((reported as Error[]).map((e) => e.message)).to.deep.equal(['state bug connected', 'state bug peer-lost']);
  });
});

describe('A server of many clients, when a subscriber finalizer throws', function () {
  this.timeout(20_000);
  afterEach(async () => {
    rxjsConfig.onUnhandledError = null;
    await releaseAll();
  });

  it('keeps the client that notified, and still ends a connection whose notifications$ has such a finalizer', async () => {
    const name = uniqueName('mce-notify-final');
    const server = await openChannel(name, 'server');
    const clients = recordClients(server);
    const reported = recordUnhandled();
    const drops: string[] = [];
    server.clientErrors$.subscribe((e) => drops.push(e.code));
    const client = await openChannel(name, 'client');
    await waitUntil(() => clients.length === 1);
    const [connection] = clients;
    // take(1) ends the subscription on the first value: its finalizer runs inside next().
    const firstOnly: string[] = [];
    connection.notifications$
      .pipe(take(1))
      .subscribe((b) => firstOnly.push(String(b)))
      .add(() => {
        throw new Error('finalizer bug on next');
      });
    // Runs when notifications$ completes, at the connection's end.
    connection.notifications$.subscribe().add(() => {
      throw new Error('finalizer bug on complete');
    });
    const all: string[] = [];
    server.notifications$.subscribe((b) => all.push(String(b)));

    client.notify('one');
    client.notify('two');
    await waitUntil(() => all.length === 2);
    expect(firstOnly).to.deep.equal(['one']);
    expect(drops).to.deep.equal([]);
    expect(connection.isOpen).to.equal(true);

    await client.close();
    expect(await connection.closed).to.equal(undefined);
    await waitUntil(() => server.state === 'open');
    // (RxJS itself swallows the one of take(1)'s finalizer: it errors a subscriber already stopped.)
    await waitUntil(() => reported.length === 1);
    expect(String(reported[0])).to.match(/finalizer bug on complete/);
  });
});
