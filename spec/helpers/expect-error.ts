import { expect } from 'chai';
import { lastValueFrom, type Observable } from 'rxjs';

import { isShmChannelError, ShmChannelError } from '../../lib/index';

/** Asserts that `fn` throws a ShmChannelError with `code`, and returns it for more checks. */
export function expectThrowsCode(fn: () => unknown, code: string): ShmChannelError {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  return checkError(thrown, code, 'to throw');
}

/** Asserts that `promise` rejects with a ShmChannelError with `code`, and returns it. */
export async function expectRejectsCode(promise: Promise<unknown>, code: string): Promise<ShmChannelError> {
  let thrown: unknown;
  try {
    await promise;
  } catch (err) {
    thrown = err;
  }
  return checkError(thrown, code, 'to reject');
}

/**
 * For calls the API does not pin down as synchronous or not (e.g. validating a cold
 * request() at call time or at subscription): accepts a throw from `call` or a rejection of
 * what `settle` makes of its result.
 */
export async function expectFailsCode<T>(
  call: () => T,
  settle: (result: T) => Promise<unknown>,
  code: string,
): Promise<ShmChannelError> {
  let result: T;
  try {
    result = call();
  } catch (err) {
    return checkError(err, code, 'to fail');
  }
  return expectRejectsCode(settle(result), code);
}

function checkError(thrown: unknown, code: string, what: string): ShmChannelError {
  if (thrown === undefined) expect.fail(`expected ${what} with ${code}, but it did not`);
  expect(thrown, `error: ${String(thrown)}`).to.be.instanceOf(ShmChannelError);
  expect((thrown as ShmChannelError).code, String(thrown)).to.equal(code);
  expect(isShmChannelError(thrown, code as ShmChannelError['code'])).to.equal(true);
  return thrown as ShmChannelError;
}

/**
 * Asserts the contract of a method that returns an Observable: `call()` neither throws nor
 * does anything yet, and a subscription errors with `code`, which it returns.
 */
export async function expectErrorsWhenSubscribed(
  call: () => Observable<unknown>,
  code: string,
): Promise<ShmChannelError> {
  let observable: Observable<unknown> | undefined;
  expect(() => (observable = call()), 'the call itself must not throw').not.to.throw();
  let thrown: unknown;
  try {
    await lastValueFrom(observable!, { defaultValue: undefined });
  } catch (err) {
    thrown = err;
  }
  return checkError(thrown, code, 'to error its subscriber');
}
