// One-way messages, the common part of the notification and payload scenarios.
import { cpuTotal, now, type CpuReply, type WaitReply } from '../common';
import { STEP_TIMEOUT_MS } from '../config';
import { withTimeout, type Transport } from '../transports/transport';
import type { Bench } from './scenario';

/**
 * Sends n one-way messages and waits until the receiver has them all (and has checked them).
 * Returns the seconds from the first send to the last arrival, and the CPU per message of both
 * processes.
 */
export async function oneWay(
  bench: Bench,
  t: Transport,
  kind: 'notify' | 'payload',
  n: number,
  payloads: Buffer[],
  seed = 0,
): Promise<{ seconds: number; cpuPerMsg: number; ok: boolean }> {
  const size = payloads[0].length;
  await t.control(kind === 'notify' ? { op: 'expect', kind, n, size } : { op: 'expect', kind, n, size, seed });
  await t.control({ op: 'cpuMark' });
  const cpu0 = process.cpuUsage();
  const t0 = now();
  await t.sendMessages(n, payloads, kind === 'notify');
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
      `${t.label}: ${kind} of ${size} B: ${reply.received}/${n} received, ${reply.bad} failed verification`,
    );
  const seconds = Number(BigInt(reply.lastAt) - t0) / 1e9;
  return { seconds, cpuPerMsg: (cpuTotal(local) + cpuTotal(peer)) / n, ok };
}
