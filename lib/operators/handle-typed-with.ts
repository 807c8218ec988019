import { from, map, type ObservableInput, type OperatorFunction } from 'rxjs';

import type { TypedIncomingRequest } from '../typed-channel';
import { answerEach } from './answer-each';

/**
 * {@link handleWith} for a {@link TypedChannel}'s `requests$`: answers each request with the
 * values of `handler(data, request)`, `data` decoded and each value encoded with the
 * response codec. A value the codec cannot encode fails that request: the caller gets
 * ERR_REMOTE with `remoteCode: 'ERR_CODEC'`. Emits the id of each request once it is finished.
 *
 * ## Example
 * ```ts
 * const typed = new TypedChannel(server, { request: codecs.json, response: codecs.json });
 * typed.requests$.pipe(handleTypedWith((value) => of({ echo: value }))).subscribe();
 * ```
 */
export function handleTypedWith<Req, Res>(
  // NoInfer: Res comes from the requests (the channel's response codec), not from what the
  // handler happens to return, so a value of the wrong type is a compile error.
  handler: (data: Req, request: TypedIncomingRequest<Req, Res>) => ObservableInput<NoInfer<Res>>,
): OperatorFunction<TypedIncomingRequest<Req, Res>, number> {
  return answerEach(
    (request: TypedIncomingRequest<Req, Res>) => request.raw,
    (request) => from(handler(request.data, request)).pipe(map((value) => request.encode(value))),
  );
}
