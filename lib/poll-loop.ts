// When a channel looks at its ring: on the waker thread's call, and for a window after news,
// from the event loop (spinning at first, then yielding the core), so that replies that follow
// within microseconds cost no system call and no thread wake-up.
import { performance } from 'node:perf_hooks';

import { binding } from './load-addon';
import { WakeEvent } from './native';

/** What one look at the ring did, as bits (no object per look). */
export const PUMP_READ = 1;
/** It stopped reading for its budget with data left. */
export const PUMP_MORE = 2;
export const PUMP_SENT = 4;
/** The channel ended meanwhile. */
export const PUMP_ENDED = 8;

// After news (a read or a send), the peer's answer usually follows within microseconds: the poll
// looks again at once, in a loop with neither an event-loop turn nor a system call, for this
// long. An event-loop turn is an epoll_wait, ~1.5 us with page-table isolation (PTI) on a VM.
// Timers and I/O wait at most this long for their turn.
const SPIN_AFTER_NEWS_MS = 0.02;
// Once that has passed without news, the poll looks once per event-loop turn and gives its core
// away at each look (sched_yield): when both peers poll on one core (one core, or a third thread
// took the other: a GC or compiler thread, another process), looking on would make each round
// trip wait for the scheduler to preempt us instead of a switch.
//
// A yield that took this much longer than the fastest one seen let another thread run: the core
// is shared, and the poll skips its spin (the peer may be the one waiting) until a yield finds
// nobody waiting. The fastest yield is the system call alone (1.5 us on a VM with PTI, where a
// fixed bound would take every yield for a switch); a switch to another thread and back costs
// more than this on top, before that thread does any work.
const YIELD_GAVE_CORE_MS = 0.002;
// A look that came this long after the previous one of a spin was preempted: the core is shared.
const SPIN_PREEMPTED_MS = 0.05;
let fastestYieldMs = Infinity;

/** Gives the core to another thread if one waits for it; true if one did. */
function yieldCore(): boolean {
  const ms = binding.yieldProcessor();
  if (ms < fastestYieldMs) fastestYieldMs = ms;
  return ms > fastestYieldMs + YIELD_GAVE_CORE_MS;
}

/**
 * Decides, after each look at the ring, whether to look again now, on the next event-loop turn,
 * or to hand the ring back to the waker thread. `pump` looks (PUMP_* bits); `armWaker` lets the
 * waker sleep on the doorbell again. While it polls, the waker stays disarmed.
 */
export class PollLoop {
  private polling = false;
  /** When the poll last read or sent; it stops windowMs later. */
  private activeAt = 0;
  /** The last yield of the poll let another thread run, or its spin was preempted. */
  private coreShared = false;

  constructor(
    private readonly windowMs: number,
    private readonly pump: (events: number) => number,
    private readonly armWaker: () => void,
  ) {}

  /** The waker thread found something (data, space, a doorbell, a lost peer); it is disarmed now. */
  onWake(events: number): void {
    const r = this.pump(events);
    if ((r & PUMP_ENDED) !== 0 || this.polling) return;
    if ((r & PUMP_READ) !== 0 && this.windowMs > 0) {
      this.start();
    } else if ((r & PUMP_MORE) !== 0) {
      // The ring still has data but we yield to the event loop; the waker stays disarmed.
      setImmediate(() => this.onWake(WakeEvent.ACTIVITY));
    } else {
      this.armWaker();
    }
  }

  /** News: look for what follows it for the window (nothing if the window is 0 or it already does). */
  start(): void {
    if (this.polling || this.windowMs === 0) return;
    this.polling = true;
    this.activeAt = performance.now();
    setImmediate(this.tick);
  }

  // Looks at the ring until the window passes with nothing to read: in a tight loop for a while
  // after news, then once per event-loop turn.
  private readonly tick = (): void => {
    let r = this.pump(0);
    let now = performance.now();
    if (!this.coreShared) {
      const spinUntil = this.activeAt + Math.min(SPIN_AFTER_NEWS_MS, this.windowMs);
      while (r === 0 && now < spinUntil) {
        r = this.pump(0);
        const before = now;
        now = performance.now();
        if (now - before > SPIN_PREEMPTED_MS) this.coreShared = true;
      }
    }
    if ((r & PUMP_ENDED) !== 0) {
      this.polling = false;
      return;
    }
    if ((r & (PUMP_READ | PUMP_SENT)) !== 0) this.activeAt = now;
    else if (this.coreShared || now - this.activeAt > SPIN_AFTER_NEWS_MS) {
      this.coreShared = yieldCore();
    }
    // A queue waiting for a peer that does not read is no reason to spin: after the window the
    // waker takes over, and it reports both freed space and a lost peer.
    if ((r & PUMP_MORE) !== 0 || now - this.activeAt < this.windowMs) {
      setImmediate(this.tick);
    } else {
      this.polling = false;
      this.armWaker();
    }
  };
}
