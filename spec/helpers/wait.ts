import { filter, firstValueFrom } from 'rxjs';

import type { Channel, ChannelState } from '../../lib/index';

/** Polls `condition` until it holds; the mocha timeout bounds the wait (no timing asserted). */
export async function waitUntil(condition: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((resolve) => setTimeout(resolve, 20));
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
