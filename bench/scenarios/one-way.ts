// One-way messages, the common part of the notification and payload scenarios.
import { cpuTotal, now, type Control, type CpuReply, type WaitReply } from '../common';
import { STEP_TIMEOUT_MS } from '../config';
import { withTimeout, type Transport } from '../transports/transport';
import type { Bench } from './scenario';

/**
 * Sends the one-way messages that `expect` announces (message i carries payloads[i % length];
 * produced payloads are copied into a buffer of the sender's first, see Transport.sendProduced)
 * and waits until the receiver has them all (and has checked them). Returns the seconds from
 * the first send to the last arrival, and the CPU per message of both processes.
 */
export async function oneWay(
  bench: Bench,
  t: Transport,
  expect: Extract<Control, { op: 'expect' }>,
  payloads: Buffer[],
): Promise<{ seconds: number; cpuPerMsg: number; ok: boolean }> {
  const { kind, n, size } = expect;
  const batch = kind === 'notify' && expect.batch === true;
  await t.control(expect);
  await t.control({ op: 'cpuMark' });
  const cpu0 = process.cpuUsage();
  const t0 = now();
  if (kind === 'payload' && expect.produced === true) await t.sendProduced(n, payloads);
  else await t.sendMessages(n, payloads, kind === 'notify', batch);
  const reply = (await withTimeout(
    t.control({ op: 'wait' }),
    STEP_TIMEOUT_MS,
    `${t.label} ${kind} x${n}`,
  )) as WaitReply;
  const local = process.cpuUsage(cpu0);
  const peer = (await t.control({ op: 'cpuRead' })) as CpuReply;
  const ok = reply.received === n && reply.bad === 0;
  if (!ok)
    bench.results.problems.push(
      `${t.label}: ${kind}${batch ? ' (batch)' : ''} of ${size} B: ${reply.received}/${n} received, ${reply.bad} failed verification`,
    );
  const seconds = Number(BigInt(reply.lastAt) - t0) / 1e9;
  return { seconds, cpuPerMsg: (cpuTotal(local) + cpuTotal(peer)) / n, ok };
}
