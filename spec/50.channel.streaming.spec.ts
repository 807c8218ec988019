// Channel#request() as a stream: every value of a response, and unsubscribing as the way to
// cancel. The answering side: 51.incoming-request.spec.ts and 52.operators.handle-with.spec.ts.
import { expect } from 'chai';
import { lastValueFrom, take, toArray } from 'rxjs';

import { clientOfPeer } from './helpers/pairs';
import { releaseAll } from './helpers/resources';
import { waitUntil } from './helpers/wait';

describe('Streamed responses', function () {
  afterEach(releaseAll);

  it('should deliver every value of a streamed response in order, then complete', async function () {
    const { client, peer } = await clientOfPeer('stream-order');
    await peer.handle({ kind: 'stream', count: 1000 });
    const values = await lastValueFrom(client.request('s').pipe(toArray()));
    expect(values.map((v) => v.toString())).to.deep.equal(Array.from({ length: 1000 }, (_, i) => `s#${i}`));
  });

  it('should complete with no value for a handler that completes at once', async function () {
    const { client, peer } = await clientOfPeer('stream-empty');
    await peer.handle({ kind: 'stream', count: 0 });
    expect(await lastValueFrom(client.request('nothing').pipe(toArray()))).to.deep.equal([]);
  });
});

describe('Unsubscribing from request()', function () {
  afterEach(releaseAll);

  it('should make the remote handler observe the cancellation and tear down its Observable', async function () {
    const { client, peer } = await clientOfPeer('unsub');
    await peer.handle({ kind: 'ticks', ms: 20 });
    // take(3) unsubscribes from the endless stream after three values.
    const values = await lastValueFrom(client.request('tick').pipe(take(3), toArray()));
    expect(values.map((v) => v.toString())).to.deep.equal(['tick#0', 'tick#1', 'tick#2']);
    const [id] = (await peer.stats()).arrivals;
    await peer.waitFor('cancelled', (e) => e.requestId === id);
    await peer.waitFor('unsubscribed', (e) => e.requestId === id);
  });

  it('should cancel only the request that was unsubscribed', async function () {
    const { client, peer } = await clientOfPeer('unsub-one');
    await peer.handle({ kind: 'ticks', ms: 20 });
    const kept: string[] = [];
    const keptSubscription = client.request('kept').subscribe((v) => kept.push(v.toString()));
    await lastValueFrom(client.request('dropped').pipe(take(2), toArray()));
    const stats = await peer.stats();
    const droppedId = stats.arrivals[stats.texts.indexOf('dropped')];
    const keptId = stats.arrivals[stats.texts.indexOf('kept')];
    await peer.waitFor('cancelled', (e) => e.requestId === droppedId);
    // The kept request goes on streaming after the other one was cancelled.
    const before = kept.length;
    await waitUntil(() => kept.length >= before + 3);
    expect(peer.events('cancelled').map((e) => e.requestId)).to.not.include(keptId);
    keptSubscription.unsubscribe();
    await peer.waitFor('cancelled', (e) => e.requestId === keptId);
  });
});
