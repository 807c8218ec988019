// handleTypedWith: handleWith for a TypedChannel's requests$, values decoded and encoded; in one
// process over a sink that records the frames it would send, then between processes.
import { expect } from 'chai';
import { lastValueFrom, Observable, of, Subject, toArray } from 'rxjs';

import {
  codecs,
  handleTypedWith,
  IncomingRequest,
  TypedIncomingRequest,
  type JsonValue,
  type TypedChannel,
} from '../lib/index';
import { expectRejectsCode } from './helpers/expect-error';
import { typedServerOfPeer } from './helpers/pairs';
import { errorPayloadOf, RecordingSink } from './helpers/recording-sink';
import { releaseAll } from './helpers/resources';

/** Every value of a typed request. */
function ask<T>(typed: TypedChannel<unknown, T, T>, value: T): Promise<T[]> {
  return lastValueFrom(typed.request(value).pipe(toArray()));
}

describe('handleTypedWith() in one process', function () {
  let sink: RecordingSink;
  let requests: Subject<TypedIncomingRequest<JsonValue, JsonValue>>;
  /** A request as a TypedChannel with the json codec hands it on: decoded, over its raw request. */
  const request = (id: number, value: JsonValue) =>
    new TypedIncomingRequest<JsonValue, JsonValue>(
      new IncomingRequest(id, Buffer.from(JSON.stringify(value)), sink),
      value,
      codecs.json,
    );

  beforeEach(function () {
    sink = new RecordingSink();
    requests = new Subject();
  });

  it('should give the handler the decoded value and the typed request, and encode every value it answers with', function () {
    const seen: [JsonValue, number][] = [];
    const finished: number[] = [];
    requests
      .pipe(
        handleTypedWith((value, incoming) => {
          seen.push([value, incoming.id]);
          return of({ echo: value }, [1, 'two']);
        }),
      )
      .subscribe((id) => finished.push(id));
    requests.next(request(4, { q: 'x' }));
    expect(seen).to.deep.equal([[{ q: 'x' }, 4]]);
    expect(sink.framesOf(4)).to.deep.equal(['RESPONSE {"echo":{"q":"x"}}', 'RESPONSE [1,"two"]', 'COMPLETE']);
    expect(finished).to.deep.equal([4]);
  });

  it('should fail only the request whose answer the codec cannot encode, with ERR_CODEC, and unsubscribe its handler', function () {
    let tornDown = 0;
    const finished: number[] = [];
    requests
      .pipe(
        handleTypedWith((value) =>
          value === 'bad'
            ? new Observable<JsonValue>((subscriber) => {
                subscriber.next('fine first');
                subscriber.next(10n as unknown as JsonValue);
                subscriber.next('never sent');
                return () => tornDown++;
              })
            : of('good'),
        ),
      )
      .subscribe((id) => finished.push(id));
    requests.next(request(1, 'bad'));
    requests.next(request(2, 'other'));
    expect(sink.framesOf(1).slice(0, 1)).to.deep.equal(['RESPONSE "fine first"']);
    expect(sink.framesOf(1)).to.have.length(2);
    const error = errorPayloadOf(sink, 1) as { code: string; message: string };
    expect(error.code).to.equal('ERR_CODEC');
    expect(error.message).to.match(/^json codec could not encode the response to request 1: /);
    expect(tornDown).to.equal(1);
    expect(sink.framesOf(2)).to.deep.equal(['RESPONSE "good"', 'COMPLETE']);
    expect(finished).to.deep.equal([1, 2]);
  });

  it('should unsubscribe the handler when the caller cancels, and send nothing more', function () {
    const values = new Subject<JsonValue>();
    const finished: number[] = [];
    requests.pipe(handleTypedWith(() => values)).subscribe((id) => finished.push(id));
    const incoming = request(3, 'x');
    requests.next(incoming);
    values.next('before');
    incoming.raw.cancel();
    values.next('after');
    expect(values.observed).to.equal(false);
    expect(sink.framesOf(3)).to.deep.equal(['RESPONSE "before"']);
    expect(finished).to.deep.equal([3]);
  });
});

describe('handleTypedWith() across processes', function () {
  afterEach(releaseAll);

  it('should answer with the values of a handleTypedWith() handler', async function () {
    const { typed, peer } = await typedServerOfPeer<JsonValue>('codec-handle', 'json');
    typed.requests$.pipe(handleTypedWith((value) => of({ got: value }, 'done'))).subscribe();
    expect(await peer.request({ value: [1, { two: 2 }] })).to.deep.equal({
      values: [{ got: [1, { two: 2 }] }, 'done'],
    });
  });

  it('should fail the caller with ERR_REMOTE (remoteCode ERR_CODEC) when a handler answers with an unencodable value', async function () {
    const { typed, peer } = await typedServerOfPeer<unknown>('codec-bad-answer', 'structuredClone');
    await peer.handle({ kind: 'unencodable' });
    const err = await expectRejectsCode(ask(typed, 'give me a function'), 'ERR_REMOTE');
    expect(err.remoteCode).to.equal('ERR_CODEC');
    expect(err.message).to.match(/^structuredClone codec could not encode the response to request \d+: /);
    await peer.handle({ kind: 'echo' });
    expect(await ask(typed, 'still works')).to.deep.equal(['still works']);
  });
});
