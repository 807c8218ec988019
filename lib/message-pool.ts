// Large received messages are copied into recycled native memory (native/binding/message_pool.h):
// a fresh megabyte from malloc page-faults on every 4 KiB, a recycled one does not. The memory
// is kept while large messages arrive and given back once they stop.
import { Buffer } from 'node:buffer';

import { binding } from './load-addon';

/** Smaller messages come from Node's allocator, whose pool and heap are warm anyway. */
const RECYCLE_MIN_BYTES = 64 * 1024;
/** How long no large message may arrive before the kept memory goes back to the system. */
const RELEASE_AFTER_IDLE_MS = 1000;

let taken = 0;
let takenAtRelease = 0;
let releaseTimer: NodeJS.Timeout | undefined;

/** An uninitialized Buffer for a received message of `length` bytes. */
export function allocateMessage(length: number): Buffer {
  if (length >= RECYCLE_MIN_BYTES) {
    const recycled = binding.messagePoolTake(length);
    if (recycled !== undefined) {
      taken++;
      return recycled;
    }
  }
  return Buffer.allocUnsafe(length);
}

/**
 * A channel has nothing to read, or closed. If large messages came since the last release,
 * release the kept memory once none has come for RELEASE_AFTER_IDLE_MS. One timer at most
 * (unref'd), and none once released or without large messages: an idle channel stays
 * timer-free.
 */
export function channelIdle(): void {
  if (releaseTimer === undefined && taken !== takenAtRelease) scheduleRelease();
}

function scheduleRelease(): void {
  const seen = taken;
  releaseTimer = setTimeout(() => {
    releaseTimer = undefined;
    // Still busy: look again later (the channel may not go idle again to ask).
    if (taken !== seen) {
      scheduleRelease();
      return;
    }
    takenAtRelease = taken;
    binding.messagePoolRelease();
  }, RELEASE_AFTER_IDLE_MS);
  releaseTimer.unref();
}
