// Closes open channels when the process ends, so a server's segment does not outlive it:
// on 'exit' (normal end, process.exit()) and on SIGINT/SIGTERM/SIGHUP when nobody else
// handles the signal. The segment of a SIGKILLed server is reclaimed by the next server.

import { performance } from 'node:perf_hooks';

/** What the registry needs of a channel: a synchronous, idempotent close of the native side. */
export interface ClosableAtExit {
  /**
   * `startedAt` (a performance.now() time) is when the process began closing its channels:
   * each waits for its peer until its closeTimeout after that, so that many channels with
   * stalled peers hold the exit for one closeTimeout, not one each.
   */
  closeAtExit(startedAt: number): void;
}

const open = new Set<ClosableAtExit>();
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
let installed = false;

function closeAll(): void {
  const startedAt = performance.now();
  for (const channel of [...open]) channel.closeAtExit(startedAt);
  open.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  // Someone else handles this signal: they decide whether the process ends (and if it
  // does, 'exit' still closes our channels). Adding a listener must not change that.
  if (process.listenerCount(signal) > 1) return;
  closeAll();
  uninstall();
  // Nobody else listens: die by the signal as Node would have without us.
  process.kill(process.pid, signal);
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on('exit', closeAll);
  for (const s of SIGNALS) process.on(s, onSignal);
}

function uninstall(): void {
  if (!installed) return;
  installed = false;
  process.removeListener('exit', closeAll);
  for (const s of SIGNALS) process.removeListener(s, onSignal);
}

export function closeAtExit(channel: ClosableAtExit): void {
  open.add(channel);
  install();
}

export function forgetAtExit(channel: ClosableAtExit): void {
  open.delete(channel);
  if (open.size === 0) uninstall();
}

/**
 * A process warning reported now: process.emitWarning() reports on the next tick, which an
 * exiting process never reaches.
 */
export function warnAtExit(message: string, code: string): void {
  const warning = Object.assign(new Error(message), { name: 'Warning', code });
  process.emit('warning', warning);
}
