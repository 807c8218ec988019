// Stepping transports in turn, each step with a time limit, so that one transport that fails
// or hangs costs its own row and not the benchmark.
import { BASELINE, STEP_TIMEOUT_MS } from '../config';
import { progress } from '../progress';
import { withTimeout, type Transport } from '../transports/transport';
import type { Bench } from './scenario';

/** Runs `body` for every transport, `runs` times, rotating the order so none always goes first. */
export async function rounds(
  bench: Bench,
  name: string,
  ts: Transport[],
  runs: number,
  body: (t: Transport, run: number) => Promise<void>,
): Promise<void> {
  for (let run = 0; run < runs; run++) {
    progress(`${name}: run ${run + 1}/${runs}`);
    const order = [...ts];
    for (let k = 0; k < order.length; k++) {
      const t = order[(k + run) % order.length];
      await guarded(bench, ts, t, name, () => body(t, run));
    }
  }
}

/**
 * Runs one step of one transport with a time limit. A transport other than the baseline
 * that fails or hangs is dropped from `ts` (with a problem noted) instead of ending the benchmark.
 */
export async function guarded(
  bench: Bench,
  ts: Transport[],
  t: Transport,
  what: string,
  step: () => Promise<void>,
): Promise<void> {
  if (!ts.includes(t)) return;
  try {
    await withTimeout(step(), STEP_TIMEOUT_MS, `${t.label} ${what}`);
  } catch (err) {
    if (t.key === BASELINE) throw err;
    const message = `failed during ${what}: ${(err as Error).message}; dropped from the remaining scenarios`;
    bench.results.problems.push(`${t.label}: ${message}`);
    progress(`${t.label}: ${message}`);
    ts.splice(ts.indexOf(t), 1);
    bench.lineup.drop(t);
  }
}
