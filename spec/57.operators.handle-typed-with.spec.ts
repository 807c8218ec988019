// handleTypedWith: handleWith for a TypedChannel's requests$, values decoded and encoded.
import { expect } from 'chai';
import { lastValueFrom, of, toArray } from 'rxjs';

import { handleTypedWith, type JsonValue, type TypedChannel } from '../lib/index';
import { expectRejectsCode } from './helpers/expect-error';
import { typedServerOfPeer } from './helpers/pairs';
import { releaseAll } from './helpers/resources';

/** Every value of a typed request. */
function ask<T>(typed: TypedChannel<unknown, T, T>, value: T): Promise<T[]> {
  return lastValueFrom(typed.request(value).pipe(toArray()));
}

describe('handleTypedWith()', function () {
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
