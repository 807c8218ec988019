// The benchmark's settings, from the environment (BENCH_*; see bench/README.md). The whole
// object goes into results.json as `config`, so its keys are part of that file's format.

const QUICK = process.env.BENCH_QUICK === '1';

function envInt(name: string, full: number, quick: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return QUICK ? quick : full;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer, got ${raw}`);
  return v;
}

export const config = {
  quick: QUICK,
  /** Measured runs of every scenario (medians are over these). */
  runs: envInt('BENCH_RUNS', 7, 2),
  /** Round trips per run, and warm-up round trips (before the first run / before each run). */
  roundTrips: envInt('BENCH_RT_COUNT', 10_000, 1_000),
  roundTripWarmup: envInt('BENCH_RT_WARMUP', 2_000, 300),
  /**
   * How long a run of one-way notifications lasts, about: each transport sends as many as its
   * warm-up rate gives in that time. Fixed counts made the fast transports' runs last 20 ms,
   * which measured mostly scheduling noise (spreads of 60-80 %).
   */
  notifyMs: envInt('BENCH_NOTIFY_MS', 1_000, 200),
  /**
   * Payloads per run (sent back to back, each compared byte for byte on arrival). Enough that a
   * run lasts a good part of a second: shorter ones measured mostly scheduling noise.
   */
  payload1m: envInt('BENCH_PAYLOAD_1M_COUNT', 2048, 16),
  payload16m: envInt('BENCH_PAYLOAD_16M_COUNT', 128, 4),
  /** Timed 16 MiB hand-offs per run (the median is over these), after a few untimed ones. */
  handoff16m: envInt('BENCH_HANDOFF_COUNT', 200, 20),
  /** Idle measurement: how long a connected pair sits unused, and how many times. */
  idleMs: envInt('BENCH_IDLE_MS', 3_000, 1_000),
  /** How long a fresh idle pair sits before it is measured (see bench/scenarios/idle.ts). */
  idleSettleMs: envInt('BENCH_IDLE_SETTLE_MS', 10_000, 1_000),
  idleRuns: envInt('BENCH_IDLE_RUNS', 3, 1),
  /**
   * Many clients (rt_clients): how long the common window of a run lasts, in which every client
   * process makes sequential round trips (after 200 ms of them untimed, all clients at once).
   */
  clientsMs: envInt('BENCH_CLIENTS_MS', 1_000, 300),
  /** Comma-separated transport keys (shm, socket, ipc, zmq); default all. */
  transports: (process.env.BENCH_TRANSPORTS ?? '').split(',').filter(Boolean),
  /**
   * Comma-separated scenario ids (rt, rt1core, notify64, notify64_batch, notify4k, payload1m,
   * payload1m_copy, payload16m, payload16m_copy, handoff16m, idle, idle_clients, runtimes,
   * rt_clients, clients_resources); default all.
   */
  scenarios: (process.env.BENCH_SCENARIOS ?? '').split(',').filter(Boolean),
};

export type BenchConfig = typeof config;

/** The transport every other is compared with; it always runs, and the benchmark fails without it. */
export const BASELINE = 'socket';

/** A step (one run of one scenario on one transport) must not hang the benchmark. */
export const STEP_TIMEOUT_MS = 90_000;

/** Is `scenario` selected by BENCH_SCENARIOS (all are when it is empty)? */
export function wanted(scenario: string): boolean {
  return config.scenarios.length === 0 || config.scenarios.includes(scenario);
}
