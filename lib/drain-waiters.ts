// The callers of drained(): they wait until the outgoing queue is empty, or learn why it never will be.
import type { ShmChannelError } from './errors';

export class DrainWaiters {
  private waiters: Array<{ resolve: () => void; reject: (err: ShmChannelError) => void }> = [];

  /** Resolves at the next settle() without an error, rejects at one with. */
  wait(): Promise<void> {
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Resolves every waiter, or rejects them all with `err`. */
  settle(err?: ShmChannelError): void {
    if (this.waiters.length === 0) return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) {
      if (err === undefined) w.resolve();
      else w.reject(err);
    }
  }
}
