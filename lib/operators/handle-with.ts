import {
  catchError,
  endWith,
  from,
  ignoreElements,
  mergeMap,
  of,
  takeUntil,
  tap,
  type ObservableInput,
  type OperatorFunction,
} from 'rxjs';

import type { Data } from '../data';
import type { IncomingRequest } from '../incoming-request';

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
  return (requests) =>
    requests.pipe(
      mergeMap((request) => {
        let answer: ObservableInput<Data>;
        try {
          answer = handler(request.data, request);
        } catch (err) {
          failQuietly(request, err);
          return of(request.id);
        }
        return from(answer).pipe(
          tap({ next: (value) => request.next(value), complete: () => request.complete() }),
          takeUntil(request.cancelled$),
          ignoreElements(),
          catchError((err: unknown) => {
            failQuietly(request, err);
            return of();
          }),
          endWith(request.id),
        );
      }),
    );
}

// The response may have ended already (e.g. the error came from sending a value after the
// channel closed); then there is nobody left to tell.
function failQuietly(request: IncomingRequest, err: unknown): void {
  if (request.finished) return;
  try {
    request.error(err);
  } catch {
    // The channel is closed: the caller has already been failed by close().
  }
}
