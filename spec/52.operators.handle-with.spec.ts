// handleWith: its own contract in this process, with requests built over a sink that records
// the frames it would send; then the same operator between processes.
import { expect } from 'chai';
import {
  map,
  NEVER,
  Observable,
  of,
  range,
  Subject,
  take,
  tap,
  throwError,
  type Subscriber,
  type Subscription,
} from 'rxjs';

import { TestScheduler } from 'rxjs/testing';

import { handleWith, IncomingRequest, type Data } from '../lib/index';
import { FrameKind } from '../lib/protocol';
import { serverOfPeer } from './helpers/pairs';
import { errorPayloadOf, kindName, RecordingSink } from './helpers/recording-sink';
import { releaseAll } from './helpers/resources';

function texts(values: { text?: string }[]): (string | undefined)[] {
  return values.map((v) => v.text);
}

/** A handler's Observable that runs `start` for each subscriber, counting subscriptions and teardowns. */
function counted(start: (subscriber: Subscriber<Data>) => void = () => undefined) {
  const count = { subscribed: 0, tornDown: 0 };
  const observable = new Observable<Data>((subscriber) => {
    count.subscribed++;
    start(subscriber);
    return () => {
      count.tornDown++;
    };
  });
  return { observable, count };
}

/** A handler's Observable of a million values emitted synchronously, counting those produced. */
function synchronousMillion(onValue: (produced: number) => void = () => undefined) {
  let produced = 0;
  const observable = range(0, 1e6).pipe(
    map(String),
    tap(() => onValue(++produced)),
  );
  return { observable, produced: () => produced };
}

describe('handleWith() in one process', function () {
  let sink: RecordingSink;
  let requests: Subject<IncomingRequest>;
  const request = (id: number, text: string) => new IncomingRequest(id, Buffer.from(text), sink);

  beforeEach(function () {
    sink = new RecordingSink();
    requests = new Subject<IncomingRequest>();
  });

  it('should answer each request with its values, then complete it, and emit ids in the order they finish', function () {
    const finished: number[] = [];
    const slow = new Subject<Data>();
    requests
      .pipe(handleWith((data) => (data.toString() === 'slow' ? slow : of(`${data.toString()}!`, 'end'))))
      .subscribe((id) => finished.push(id));
    requests.next(request(1, 'slow'));
    requests.next(request(2, 'fast'));
    expect(finished).to.deep.equal([2]);
    slow.next('late');
    slow.complete();
    expect(finished).to.deep.equal([2, 1]);
    expect(sink.framesOf(2)).to.deep.equal(['RESPONSE fast!', 'RESPONSE end', 'COMPLETE']);
    expect(sink.framesOf(1)).to.deep.equal(['RESPONSE late', 'COMPLETE']);
  });

  it('should fail only the request whose handler returned something that is not an ObservableInput', function () {
    const finished: number[] = [];
    requests
      .pipe(handleWith((data) => (data.toString() === 'bad' ? (42 as unknown as Observable<Data>) : of('ok'))))
      .subscribe((id) => finished.push(id));
    requests.next(request(1, 'bad'));
    requests.next(request(2, 'good'));
    expect(sink.framesOf(1)).to.have.length(1);
    expect(sink.sent[0].kind).to.equal(FrameKind.ERROR);
    expect(sink.framesOf(2)).to.deep.equal(['RESPONSE ok', 'COMPLETE']);
    expect(finished).to.deep.equal([1, 2]);
  });

  it('should send a handler error, thrown or emitted, as the request error and go on', function () {
    const finished: number[] = [];
    requests
      .pipe(
        handleWith((data) => {
          if (data.toString() === 'throw') throw Object.assign(new Error('thrown'), { code: 'E_THROWN' });
          if (data.toString() === 'emit') return throwError(() => new Error('emitted'));
          return of('fine');
        }),
      )
      .subscribe((id) => finished.push(id));
    requests.next(request(1, 'throw'));
    requests.next(request(2, 'emit'));
    requests.next(request(3, 'other'));
    expect(errorPayloadOf(sink, 1)).to.include({ message: 'thrown', code: 'E_THROWN' });
    expect(errorPayloadOf(sink, 2)).to.include({ message: 'emitted' });
    expect(sink.framesOf(3)).to.deep.equal(['RESPONSE fine', 'COMPLETE']);
    expect(finished).to.deep.equal([1, 2, 3]);
  });

  it('should fail the request when a value cannot be sent, and unsubscribe its handler', function () {
    sink.refuseValues = Object.assign(new Error('too large'), { code: 'ERR_MESSAGE_TOO_LARGE' });
    const answer = counted((subscriber) => subscriber.next('huge'));
    const finished: number[] = [];
    requests.pipe(handleWith(() => answer.observable)).subscribe((id) => finished.push(id));
    requests.next(request(7, 'x'));
    expect(errorPayloadOf(sink, 7)).to.include({ code: 'ERR_MESSAGE_TOO_LARGE' });
    expect(answer.count.tornDown).to.equal(1);
    expect(finished).to.deep.equal([7]);
  });

  it('should stop a synchronous handler at the value that cannot be sent, not run it to its end', function () {
    sink.refuseValues = Object.assign(new Error('too large'), { code: 'ERR_MESSAGE_TOO_LARGE' });
    const answer = synchronousMillion();
    requests.pipe(handleWith(() => answer.observable)).subscribe();
    requests.next(request(8, 'x'));
    expect(errorPayloadOf(sink, 8)).to.include({ code: 'ERR_MESSAGE_TOO_LARGE' });
    expect(answer.produced()).to.equal(1);
  });

  it('should stop a synchronous handler at the cancel one of its values caused', function () {
    const incoming = request(9, 'x');
    const answer = synchronousMillion((produced) => {
      if (produced === 2) incoming.cancel();
    });
    requests.pipe(handleWith(() => answer.observable)).subscribe();
    requests.next(incoming);
    expect(answer.produced()).to.equal(2);
    expect(sink.framesOf(9)).to.deep.equal(['RESPONSE 0']);
  });

  it('should unsubscribe the handler when the caller cancels, send nothing more, and emit the id', function () {
    const values = new Subject<Data>();
    const answer = counted((subscriber) => subscriber.add(values.subscribe(subscriber)));
    const finished: number[] = [];
    requests.pipe(handleWith(() => answer.observable)).subscribe((id) => finished.push(id));
    const incoming = request(3, 'x');
    requests.next(incoming);
    values.next('before');
    incoming.cancel();
    values.next('after');
    expect(answer.count.tornDown).to.equal(1);
    expect(finished).to.deep.equal([3]);
    expect(sink.framesOf(3)).to.deep.equal(['RESPONSE before']);
  });

  it('should not subscribe to the answer of a request cancelled before it was handled', function () {
    const answer = counted();
    const finished: number[] = [];
    requests.pipe(handleWith(() => answer.observable)).subscribe((id) => finished.push(id));
    const incoming = request(4, 'x');
    incoming.cancel();
    requests.next(incoming);
    expect(answer.count.subscribed).to.equal(0);
    expect(finished).to.deep.equal([4]);
    expect(sink.sent).to.deep.equal([]);
  });

  it('should stop running handlers, and leave their requests open, when its subscriber unsubscribes', function () {
    const answer = counted();
    const subscription = requests.pipe(handleWith(() => answer.observable)).subscribe();
    const first = request(1, 'a');
    const second = request(2, 'b');
    requests.next(first);
    requests.next(second);
    subscription.unsubscribe();
    expect(answer.count.tornDown).to.equal(2);
    expect(requests.observed).to.equal(false);
    expect(sink.sent).to.deep.equal([]);
    expect(first.finished || second.finished).to.equal(false);
    // Nothing listens for their cancellation any more.
    first.cancel();
    expect(answer.count.tornDown).to.equal(2);
  });

  it('should handle no more requests once its subscriber leaves during a synchronous source', function () {
    const handled: string[] = [];
    const all = [request(1, 'a'), request(2, 'b'), request(3, 'c')];
    of(...all)
      .pipe(
        handleWith((data) => {
          handled.push(data.toString());
          return of('x');
        }),
        take(1),
      )
      .subscribe();
    expect(handled).to.deep.equal(['a']);
    expect(all.map((r) => r.finished)).to.deep.equal([true, false, false]);
  });

  it('should not subscribe to the answer of a handler that unsubscribed the pipeline itself', function () {
    const answer = counted();
    const subscription: Subscription = requests
      .pipe(
        handleWith(() => {
          subscription.unsubscribe();
          return answer.observable;
        }),
      )
      .subscribe();
    requests.next(request(5, 'x'));
    expect(answer.count.subscribed).to.equal(0);
    expect(requests.observed).to.equal(false);
  });

  it('should complete once the requests complete and every running answer has finished', function () {
    const slow = new Subject<Data>();
    let completed = false;
    requests.pipe(handleWith(() => slow)).subscribe({ complete: () => (completed = true) });
    requests.next(request(1, 'x'));
    requests.complete();
    expect(completed).to.equal(false);
    slow.complete();
    expect(completed).to.equal(true);
  });

  it('should pass an error of the requests on', function () {
    let failure: unknown;
    requests.pipe(handleWith(() => NEVER)).subscribe({ error: (err: unknown) => (failure = err) });
    requests.error(new Error('requests failed'));
    expect((failure as Error).message).to.equal('requests failed');
  });
});

// Ordering and cancellation in virtual time: each request arrives at its frame of a hot
// Observable, each handler answers with a cold one, and the sink stamps every frame it sends
// with the scheduler's clock. One frame is one unit of virtual time.
describe('handleWith() in virtual time (marbles)', function () {
  let scheduler: TestScheduler;
  let sink: RecordingSink;
  const request = (id: number, text: string) => new IncomingRequest(id, Buffer.from(text), sink);

  beforeEach(function () {
    scheduler = new TestScheduler((actual, expected) => {
      expect(actual).to.deep.equal(expected);
    });
    sink = new RecordingSink(() => scheduler.now());
  });

  it('should answer requests side by side and emit each id at the frame its answer ends', function () {
    scheduler.run(({ hot, cold, expectObservable }) => {
      const requests = hot('-a-b-c|', { a: request(1, 'a'), b: request(2, 'b'), c: request(3, 'c') });
      const answers: Record<string, Observable<string>> = {
        a: cold('----x|'),
        b: cold('-y|'),
        c: cold('z|'),
      };
      const ids = requests.pipe(handleWith((data) => answers[data.toString()]));
      expectObservable(ids).toBe('-----b(ac|)', { a: 1, b: 2, c: 3 });
    });
    expect(sink.timeline(1)).to.deep.equal(['5 RESPONSE x', '6 COMPLETE']);
    expect(sink.timeline(2)).to.deep.equal(['4 RESPONSE y', '5 COMPLETE']);
    expect(sink.timeline(3)).to.deep.equal(['5 RESPONSE z', '6 COMPLETE']);
  });

  it("should send each request's values in its own order while the answers interleave", function () {
    scheduler.run(({ hot, cold, expectObservable }) => {
      const requests = hot('ab', { a: request(1, 'a'), b: request(2, 'b') });
      const answers: Record<string, Observable<string>> = { a: cold('-1--2--3|'), b: cold('--x-y-z|') };
      expectObservable(requests.pipe(handleWith((data) => answers[data.toString()]))).toBe('--------(ab)', {
        a: 1,
        b: 2,
      });
    });
    // Where two frames share a time, the one scheduled first (the earlier subscription) goes first.
    expect(sink.sent.map((f) => `${f.at}:${f.id}:${f.text}`)).to.deep.equal([
      '1:1:1',
      '3:2:x',
      '4:1:2',
      '5:2:y',
      '7:1:3',
      '7:2:z',
      '8:1:',
      '8:2:',
    ]);
  });

  it('should unsubscribe a handler at the frame its caller cancels, and send nothing after it', function () {
    const incoming = request(1, 'endless');
    scheduler.run(({ hot, cold, expectObservable, expectSubscriptions }) => {
      const answer = cold('-a-b-c-d-e|');
      const ids = hot('-r', { r: incoming }).pipe(handleWith(() => answer));
      scheduler.schedule(() => incoming.cancel(), 5);
      expectObservable(ids).toBe('-----i', { i: 1 });
      expectSubscriptions(answer.subscriptions).toBe('-^---!');
    });
    expect(sink.timeline(1)).to.deep.equal(['2 RESPONSE a', '4 RESPONSE b']);
    expect(incoming.cancelled).to.equal(true);
  });

  it('should fail a request at the frame its handler errors, and go on with the others', function () {
    scheduler.run(({ hot, cold, expectObservable }) => {
      const requests = hot('-a-b', { a: request(1, 'fails'), b: request(2, 'works') });
      const failing = cold('-v-#', { v: 'partial' }, Object.assign(new Error('broke'), { code: 'E_BROKE' }));
      const working = cold('---w|');
      const ids = requests.pipe(handleWith((data) => (data.toString() === 'fails' ? failing : working)));
      expectObservable(ids).toBe('----a--b', { a: 1, b: 2 });
    });
    expect(sink.timeline(1).slice(0, 1)).to.deep.equal(['2 RESPONSE partial']);
    expect(sink.sent.filter((f) => f.id === 1).map((f) => [f.at, kindName(f.kind)])).to.deep.equal([
      [2, 'RESPONSE'],
      [4, 'ERROR'],
    ]);
    expect(errorPayloadOf(sink, 1)).to.include({ message: 'broke', code: 'E_BROKE' });
    expect(sink.timeline(2)).to.deep.equal(['6 RESPONSE w', '7 COMPLETE']);
  });

  it('should stop every running handler at the frame its subscriber leaves, and leave their requests open', function () {
    const first = request(1, 'a');
    const second = request(2, 'b');
    scheduler.run(({ hot, cold, expectObservable, expectSubscriptions }) => {
      const answers = { a: cold('--x---y|'), b: cold('-z----w|') };
      const ids = hot('-a-b', { a: first, b: second }).pipe(
        handleWith((data) => answers[data.toString() as keyof typeof answers]),
      );
      expectObservable(ids, '^-----!').toBe('------');
      expectSubscriptions(answers.a.subscriptions).toBe('-^----!');
      expectSubscriptions(answers.b.subscriptions).toBe('---^--!');
    });
    expect(sink.sent.map((f) => `${f.at}:${f.id}:${f.text}`)).to.deep.equal(['3:1:x', '4:2:z']);
    expect([first.finished, second.finished]).to.deep.equal([false, false]);
  });
});

describe('handleWith() across processes', function () {
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
