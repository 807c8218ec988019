import { filter, firstValueFrom } from 'rxjs';

import type { Channel, ChannelState } from '../../lib/index';

/** Past every test's own timeout: only a test that already failed gets here. */
const ABANDON_AFTER_MS = 180_000;

/**
 * Polls `condition` until it holds; the mocha timeout bounds the wait (no timing asserted).
 * It gives up long after that, so that the poll of a test that timed out does not keep the
 * process, and with it `npm test`, alive forever.
 */
export async function waitUntil(condition: () => boolean | Promise<boolean>): Promise<void> {
  const abandonAt = Date.now() + ABANDON_AFTER_MS;
  while (!(await condition())) {
    if (Date.now() > abandonAt)
      throw new Error(`condition not reached in ${ABANDON_AFTER_MS} ms: ${String(condition)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Resolves when `ch` is (or next becomes) `state`. */
export function reaches(ch: Channel, state: ChannelState): Promise<ChannelState> {
  return firstValueFrom(ch.state$.pipe(filter((s) => s === state)));
}

/** Every state `ch` goes through from now on, starting with the current one. */
export function recordStates(ch: Channel): ChannelState[] {
  const states: ChannelState[] = [];
  ch.state$.subscribe((s) => states.push(s));
  return states;
}
