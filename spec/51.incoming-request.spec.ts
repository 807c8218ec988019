// IncomingRequest, what Channel#requests$ emits: answering (respond, next, complete, error),
// the caller's cancellation (cancelled, cancelled$, signal), and what is refused once it ended.
import { expect } from 'chai';
import { firstValueFrom, lastValueFrom, toArray } from 'rxjs';

import type { IncomingRequest } from '../lib/index';
import { sha256 } from './helpers/payload';
import { clientOfPeer, serverOfPeer } from './helpers/pairs';
import { releaseAll } from './helpers/resources';
import { waitUntil } from './helpers/wait';

function texts(values: { text?: string }[]): (string | undefined)[] {
  return values.map((v) => v.text);
}

describe('IncomingRequest#respond(), #next() and #complete()', function () {
  afterEach(releaseAll);

  it('should let next() and respond() send typed arrays, DataViews and ArrayBuffers as their bytes', async function () {
    const { server, peer } = await serverOfPeer('in-req-bytes');
    const backing = new ArrayBuffer(12);
    new Uint8Array(backing).set(Array.from({ length: 12 }, (_, i) => 100 + i));
    const values = [new Float32Array([0.25, -8]), new DataView(backing, 2, 6), backing] as const;
    server.requests$.subscribe((request) => {
      request.next(values[0]);
      request.next(values[1]);
      request.respond(values[2]);
    });
    const answer = await peer.request({ text: 'bytes please' });
    expect(answer.error).to.equal(undefined);
    const bytes = [Buffer.from(values[0].buffer), Buffer.from(backing, 2, 6), Buffer.from(backing)];
    expect(answer.values.map((v) => v.sha256)).to.deep.equal(bytes.map((b) => sha256(b)));
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
});

describe('IncomingRequest#error()', function () {
  afterEach(releaseAll);

  it('should let the handler fail the request with error(): the peer gets ERR_REMOTE', async function () {
    const { server, peer } = await serverOfPeer('in-err');
    server.requests$.subscribe((request) => request.error(Object.assign(new Error('nope'), { code: 'E_NOPE' })));
    const result = await peer.request({ text: 'please' });
    expect(result.error).to.include({ code: 'ERR_REMOTE', message: 'nope', remoteCode: 'E_NOPE' });
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

describe('IncomingRequest cancellation (cancelled, cancelled$, signal)', function () {
  afterEach(releaseAll);

  it('should signal cancellation (cancelled, cancelled$, signal) when the caller times out', async function () {
    const { server, peer } = await serverOfPeer('in-cancel');
    const incoming = firstValueFrom(server.requests$);
    const answer = peer.request({ text: 'slow', timeout: 300 });
    const request: IncomingRequest = await incoming;
    await firstValueFrom(request.cancelled$);
    expect(request.cancelled).to.equal(true);
    expect(request.signal.aborted).to.equal(true);
    expect((await answer).error?.code).to.equal('ERR_TIMEOUT');
  });

  it('should give cancelled$ and signal first read after the cancellation that cancellation', async function () {
    const { server, peer } = await serverOfPeer('in-cancel-late');
    const incoming = firstValueFrom(server.requests$);
    const answer = peer.request({ text: 'slow', timeout: 300 });
    const request: IncomingRequest = await incoming;
    await waitUntil(() => request.cancelled);
    expect(await lastValueFrom(request.cancelled$.pipe(toArray())), 'emits once, then completes').to.have.length(1);
    expect(request.signal.aborted).to.equal(true);
    expect((request.signal.reason as { code?: string }).code).to.equal('ERR_REQUEST_FINISHED');
    expect((await answer).error?.code).to.equal('ERR_TIMEOUT');
  });

  it('should complete cancelled$ without a value and leave signal unaborted once answered, read before or after', async function () {
    const { server, peer } = await serverOfPeer('in-answered');
    const requests: IncomingRequest[] = [];
    const watched: Promise<unknown[]>[] = [];
    server.requests$.subscribe((request) => {
      requests.push(request);
      // The first is watched before its answer, the second only after.
      if (requests.length === 1) watched.push(lastValueFrom(request.cancelled$.pipe(toArray())));
      request.respond('done');
      if (requests.length === 2) watched.push(lastValueFrom(request.cancelled$.pipe(toArray())));
    });
    await peer.request({ text: 'one' });
    await peer.request({ text: 'two' });
    expect(await Promise.all(watched)).to.deep.equal([[], []]);
    expect(requests.map((r) => [r.cancelled, r.finished, r.signal.aborted])).to.deep.equal([
      [false, true, false],
      [false, true, false],
    ]);
  });

  it('should ignore answers after the caller cancelled', async function () {
    const { server, peer } = await serverOfPeer('in-late');
    const incoming = firstValueFrom(server.requests$);
    const answer = peer.request({ text: 'slow', timeout: 300 });
    const request = await incoming;
    await firstValueFrom(request.cancelled$);
    expect(() => request.respond('too late')).to.not.throw();
    expect((await answer).error?.code).to.equal('ERR_TIMEOUT');
    // The channel is unaffected: a fresh request is answered normally.
    server.requests$.subscribe((r) => r.respond(`re: ${r.data.toString()}`));
    expect((await peer.request({ text: 'again' })).values.map((v) => v.text)).to.deep.equal(['re: again']);
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
