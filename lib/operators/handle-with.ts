import type { ObservableInput, OperatorFunction } from 'rxjs';

import type { Data } from '../data';
import type { IncomingRequest } from '../incoming-request';
import { answerEach } from './answer-each';

/**
 * Answers each request with the values of `handler(data, request)`: every value becomes a
 * response value, completion ends the response, an error becomes the caller's ERR_REMOTE,
 * and a cancel by the caller unsubscribes the handler's Observable. One failing handler does
 * not stop the others. Emits the id of each request once it is finished.
 *
 * ## Example
 * ```ts
 * server.requests$
 *   .pipe(handleWith((data) => interval(100).pipe(take(3), map((i) => `${data} #${i}`))))
 *   .subscribe();
 * ```
 */
export function handleWith(
  handler: (data: Buffer, request: IncomingRequest) => ObservableInput<Data>,
): OperatorFunction<IncomingRequest, number> {
  return answerEach(
    (request: IncomingRequest) => request,
    (request) => handler(request.data, request),
  );
}
