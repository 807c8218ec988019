/** A stop request: resolves with the first SIGINT or SIGTERM after the call. */
export interface StopSignal {
  readonly received: Promise<NodeJS.Signals>;
  /** Removes the handlers, once the command has finished. */
  dispose(): void;
}

/**
 * Handles SIGINT and SIGTERM from now on. While this listener is installed, shmchannel's own
 * exit cleanup leaves the decision to us (it acts only when nobody else listens), so the
 * command can close its channel properly, which for a server unlinks the segment. A second
 * signal while closing ends the process at once (the exit hook still releases the segment).
 */
export function onStopSignal(): StopSignal {
  let resolve!: (signal: NodeJS.Signals) => void;
  const received = new Promise<NodeJS.Signals>((r) => (resolve = r));
  let count = 0;
  // Not removed on the first signal: the exit cleanup, called right after us for the same
  // signal, would then find itself alone and kill the process before we have closed.
  const handler = (signal: NodeJS.Signals): void => {
    count += 1;
    if (count === 1) resolve(signal);
    else process.exit(130);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    received,
    dispose: () => {
      process.removeListener('SIGINT', handler);
      process.removeListener('SIGTERM', handler);
    },
  };
}
