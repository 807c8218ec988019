// The worker of spec/helpers/worker-only-process.ts: the one thread of its process that loads
// the library (and so the addon). Opens one channel end; see there for what each ending does.
import { parentPort, workerData } from 'node:worker_threads';

import { Channel } from '../../lib/index';
import type { WorkerOnlyJob } from './worker-only-process';

async function main(job: WorkerOnlyJob): Promise<void> {
  const channel = new Channel(job.name, job.mode, job.maxClients === undefined ? {} : { maxClients: job.maxClients });
  await channel.open();
  parentPort?.postMessage('open');
  if (job.ending === 'peer-lost') {
    await new Promise<void>((resolve) =>
      channel.state$.subscribe((state) => {
        if (state === 'peer-lost') resolve();
      }),
    );
  }
  if (job.ending === 'close-when-told') {
    await new Promise<void>((resolve) => parentPort?.once('message', () => resolve()));
  }
  // 'terminate' and 'exit': the channel stays open, for the main thread to end us.
  if (job.ending !== 'terminate' && job.ending !== 'exit') await channel.close();
}

// A rejection ends the worker with an 'error' event, which the main thread reports.
void main(workerData as WorkerOnlyJob);
