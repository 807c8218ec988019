import { expect } from 'chai';
import { firstValueFrom, lastValueFrom, map, Observable, of, range, take, throwError, toArray } from 'rxjs';

import { handleWith, type IncomingRequest } from '../lib/index';
import { clientOfPeer, serverOfPeer } from './helpers/pairs';
import { releaseAll } from './helpers/resources';
import { waitUntil } from './helpers/wait';

function texts(values: { text?: string }[]): (string | undefined)[] {
  return values.map((v) => v.text);
}

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

  it('should send next() values and complete() from an IncomingRequest', async function () {
    const { server, peer } = await serverOfPeer('stream-manual');
    server.requests$.subscribe((request) => {
      request.next('one');
      request.next(Buffer.from('two'));
      request.next(new Uint8Array([0x33]));
      request.complete();
    });
    const result = await peer.request({ text: 'count' });
    expect(result.error).to.equal(undefined);
    expect(texts(result.values)).to.deep.equal(['one', 'two', '3']);
  });

  it('should deliver the values sent before error(), then ERR_REMOTE', async function () {
    const { server, peer } = await serverOfPeer('stream-partial');
    server.requests$.subscribe((request) => {
      request.next('a');
      request.next('b');
      request.error(new Error('broke midway'));
    });
    const result = await peer.request({ text: 'go' });
    expect(texts(result.values)).to.deep.equal(['a', 'b']);
    expect(result.error).to.include({ code: 'ERR_REMOTE', message: 'broke midway' });
  });
});

describe('handleWith()', function () {
  afterEach(releaseAll);

  it('should answer with every value of an Observable handler', async function () {
    const { server, peer } = await serverOfPeer('hw-obs');
    server.requests$.pipe(handleWith((data) => range(0, 50).pipe(map((i) => `${data.toString()}-${i}`)))).subscribe();
    const result = await peer.request({ text: 'v' });
    expect(texts(result.values)).to.deep.equal(Array.from({ length: 50 }, (_, i) => `v-${i}`));
  });

  it('should answer with the value of a Promise handler', async function () {
    const { server, peer } = await serverOfPeer('hw-promise');
    server.requests$.pipe(handleWith(async (data) => `promised ${data.toString()}`)).subscribe();
    const result = await peer.request({ text: 'x' });
    expect(texts(result.values)).to.deep.equal(['promised x']);
  });

  it('should answer with the items of an array handler', async function () {
    const { server, peer } = await serverOfPeer('hw-array');
    server.requests$.pipe(handleWith(() => ['a', Buffer.from('b'), new Uint8Array([0x63])])).subscribe();
    expect(texts((await peer.request({ text: '' })).values)).to.deep.equal(['a', 'b', 'c']);
  });

  it('should pass the IncomingRequest to the handler', async function () {
    const { server, peer } = await serverOfPeer('hw-request');
    server.requests$.pipe(handleWith((data, request) => of(`${request.id}:${request.data.toString()}`))).subscribe();
    const [value] = (await peer.request({ text: 'me' })).values;
    expect(value.text).to.match(/^\d+:me$/);
  });

  it('should emit the id of each request it finished', async function () {
    const { server, peer } = await serverOfPeer('hw-ids');
    const seen: number[] = [];
    const finished: number[] = [];
    server.requests$
      .pipe(
        handleWith((data, request) => {
          seen.push(request.id);
          return of(data);
        }),
      )
      .subscribe((id) => finished.push(id));
    await peer.request({ text: '1' });
    await peer.request({ text: '2' });
    expect(seen).to.have.length(2);
    expect(finished).to.deep.equal(seen);
  });

  it('should send a handler error as ERR_REMOTE with its message and code', async function () {
    const { server, peer } = await serverOfPeer('hw-error');
    server.requests$
      .pipe(handleWith(() => throwError(() => Object.assign(new Error('no such key'), { code: 'E_NOKEY' }))))
      .subscribe();
    const result = await peer.request({ text: 'get' });
    expect(result.error).to.include({ code: 'ERR_REMOTE', message: 'no such key', remoteCode: 'E_NOKEY' });
  });

  it('should keep answering other requests after a handler failed', async function () {
    const { server, peer } = await serverOfPeer('hw-survive');
    server.requests$
      .pipe(
        handleWith((data) =>
          data.toString() === 'boom' ? throwError(() => new Error('exploded')) : of(`ok ${data.toString()}`),
        ),
      )
      .subscribe();
    expect((await peer.request({ text: 'boom' })).error?.code).to.equal('ERR_REMOTE');
    expect(texts((await peer.request({ text: 'after' })).values)).to.deep.equal(['ok after']);
  });

  it('should keep answering other requests after a handler threw synchronously', async function () {
    const { server, peer } = await serverOfPeer('hw-throw');
    server.requests$
      .pipe(
        handleWith((data) => {
          if (data.toString() === 'boom') throw new Error('thrown');
          return of('fine');
        }),
      )
      .subscribe();
    const failed = await peer.request({ text: 'boom' });
    expect(failed.error).to.include({ code: 'ERR_REMOTE', message: 'thrown' });
    expect(texts((await peer.request({ text: 'next' })).values)).to.deep.equal(['fine']);
  });

  it('should unsubscribe the handler Observable when the caller times out', async function () {
    const { server, peer } = await serverOfPeer('hw-teardown');
    const tornDown = new Promise<void>((resolve) => {
      server.requests$.pipe(handleWith(() => new Observable<string>(() => () => resolve()))).subscribe();
    });
    const result = await peer.request({ text: 'wait forever', timeout: 300 });
    expect(result.error?.code).to.equal('ERR_TIMEOUT');
    await tornDown;
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

  it('should let a local IncomingRequest see cancelled$ and signal when the peer unsubscribes', async function () {
    const { server, peer } = await serverOfPeer('unsub-local');
    const incoming = firstValueFrom(server.requests$);
    const answer = peer.request({ text: 'x', timeout: 300 });
    const request: IncomingRequest = await incoming;
    const aborted = new Promise<void>((resolve) => request.signal.addEventListener('abort', () => resolve()));
    await firstValueFrom(request.cancelled$);
    await aborted;
    expect(request.cancelled).to.equal(true);
    await answer;
  });
});

describe('IncomingRequest after the response ended', function () {
  afterEach(releaseAll);

  it('should throw ERR_REQUEST_FINISHED on a second respond(), and the caller gets only the first', async function () {
    const { client, peer } = await clientOfPeer('twice');
    await peer.handle({ kind: 'respond-twice' });
    const values = await lastValueFrom(client.request('once').pipe(toArray()));
    expect(values.map((v) => v.toString())).to.deep.equal(['once']);
    const report = await peer.waitFor('respond-twice');
    expect(report.code).to.equal('ERR_REQUEST_FINISHED');
  });

  it('should throw ERR_REQUEST_FINISHED from respond, next, complete and error after complete() or error()', async function () {
    const { server, peer } = await serverOfPeer('finished');
    const codes: (string | undefined)[] = [];
    const attempt = (fn: () => void) => {
      try {
        fn();
        codes.push(undefined);
      } catch (err) {
        codes.push((err as { code?: string }).code);
      }
    };
    server.requests$.subscribe((request) => {
      if (request.data.toString() === 'complete') request.complete();
      else request.error(new Error('failed'));
      attempt(() => request.respond('x'));
      attempt(() => request.next('x'));
      attempt(() => request.complete());
      attempt(() => request.error(new Error('again')));
    });
    expect((await peer.request({ text: 'complete' })).values).to.deep.equal([]);
    expect((await peer.request({ text: 'error' })).error?.code).to.equal('ERR_REMOTE');
    expect(codes).to.deep.equal(Array(8).fill('ERR_REQUEST_FINISHED'));
  });
});
