// The figures the benchmark reports, in the order of the table's columns: what each one is,
// its unit, which way is better, and the project's goals for shmchannel's figure.

export type Better = 'lower' | 'higher';

/** A goal for shmchannel's figure of a metric: reported as met or missed, never asserted. */
export interface Target {
  /**
   * What the goal is about: shmchannel's median, its ratio to the baseline's median, its ratio
   * to shmchannel's own 64 B round trip p50 in the same run, or its ratio to the highest idle
   * run with nothing open (the idle floor) of the same run.
   */
  of: 'value' | 'ratio' | 'rt_p50' | 'idle_floor';
  /** The goal as the report states it. */
  goal: string;
  met: (x: number) => boolean;
  /** The figure as the report shows it after the goal. */
  show: (x: number) => string;
}

export interface Metric {
  id: string;
  /** The scenario that measures it (its BENCH_SCENARIOS id). */
  scenario: string;
  label: string;
  /** Column header in the table. */
  column: string;
  /** Group label in the chart. */
  short: string;
  unit: string;
  better: Better;
  targets?: Target[];
  /**
   * CPU of something left alone, % of a core: printed with three decimals, and no ratio to a
   * baseline below IDLE_RATIO_FLOOR_PCT (noise).
   */
  idle?: true;
}

const showRatio = (x: number) => `${x.toFixed(2)}x`;

export const METRICS: Metric[] = [
  {
    id: 'rt_p50',
    short: 'RT p50',
    scenario: 'rt',
    label: 'round trip 64 B p50',
    column: 'RT p50 µs',
    unit: 'µs',
    better: 'lower',
    targets: [
      { of: 'ratio', goal: 'round trip p50 <= 0.25x socket', met: (x) => x <= 0.25, show: showRatio },
      // The latency-oriented option is the poll window, on by default (pollWindowUs: 200).
      {
        of: 'value',
        goal: 'round trip p50 <= 10 µs with the poll window',
        met: (x) => x <= 10,
        show: (x) => `${x.toFixed(1)} µs`,
      },
    ],
  },
  {
    id: 'rt_p99',
    short: 'RT p99',
    scenario: 'rt',
    label: 'round trip 64 B p99',
    column: 'RT p99 µs',
    unit: 'µs',
    better: 'lower',
  },
  {
    id: 'rt_cpu',
    short: 'CPU per RT',
    scenario: 'rt',
    label: 'CPU per round trip',
    column: 'CPU µs/RT',
    unit: 'µs CPU (both processes)',
    better: 'lower',
  },
  {
    id: 'rt1core_p50',
    short: 'RT p50, 1 core',
    scenario: 'rt1core',
    label: 'round trip 64 B p50, both processes on one core',
    column: '1-core RT p50 µs',
    unit: 'µs',
    better: 'lower',
  },
  {
    id: 'notify64',
    short: '64 B notify',
    scenario: 'notify64',
    label: '64 B notifications',
    column: '64 B msg/s',
    unit: 'msgs/s',
    better: 'higher',
    targets: [{ of: 'ratio', goal: '64 B notifications >= 5x socket msgs/s', met: (x) => x >= 5, show: showRatio }],
  },
  {
    id: 'notify64_batch',
    short: '64 B batch',
    scenario: 'notify64_batch',
    label: '64 B notifications, batch API',
    column: '64 B batch msg/s',
    unit: 'msgs/s',
    better: 'higher',
    targets: [
      {
        of: 'ratio',
        goal: '64 B notifications through the batch API >= 5x socket msgs/s',
        met: (x) => x >= 5,
        show: showRatio,
      },
    ],
  },
  {
    id: 'notify4k',
    short: '4 KiB notify',
    scenario: 'notify4k',
    label: '4 KiB notifications',
    column: '4 KiB msg/s',
    unit: 'msgs/s',
    better: 'higher',
  },
  {
    id: 'payload1m',
    short: '1 MiB payload',
    scenario: 'payload1m',
    label: '1 MiB payloads produced by the sender (shmchannel: loans)',
    column: '1 MiB GB/s',
    unit: 'GB/s',
    better: 'higher',
    targets: [{ of: 'ratio', goal: '1 MiB payloads (loans) >= 3x socket GB/s', met: (x) => x >= 3, show: showRatio }],
  },
  {
    id: 'payload1m_copy',
    short: '1 MiB copy',
    scenario: 'payload1m_copy',
    label: '1 MiB payloads, owned copies',
    column: '1 MiB copy GB/s',
    unit: 'GB/s',
    better: 'higher',
  },
  {
    id: 'payload16m',
    short: '16 MiB payload',
    scenario: 'payload16m',
    label: '16 MiB payloads produced by the sender (shmchannel: loans)',
    column: '16 MiB GB/s',
    unit: 'GB/s',
    better: 'higher',
    targets: [{ of: 'ratio', goal: '16 MiB payloads (loans) >= 3x socket GB/s', met: (x) => x >= 3, show: showRatio }],
  },
  {
    id: 'payload16m_copy',
    short: '16 MiB copy',
    scenario: 'payload16m_copy',
    label: '16 MiB payloads, owned copies',
    column: '16 MiB copy GB/s',
    unit: 'GB/s',
    better: 'higher',
  },
  {
    id: 'handoff16m_p50',
    short: '16 MiB hand-off',
    scenario: 'handoff16m',
    label: 'hand-off of 16 MiB (request, 64 B answer) p50',
    column: '16 MiB hand-off µs',
    unit: 'µs',
    better: 'lower',
    targets: [
      {
        of: 'rt_p50',
        goal: "16 MiB hand-off p50 <= 2x shmchannel's own round trip p50",
        met: (x) => x <= 2,
        show: showRatio,
      },
    ],
  },
  {
    id: 'idle',
    short: 'idle CPU',
    scenario: 'idle',
    label: 'idle open channel',
    column: 'idle %core',
    unit: '% of one core (both processes)',
    better: 'lower',
    idle: true,
    targets: [{ of: 'value', goal: 'idle channel < 1% of a core', met: (x) => x < 1, show: (x) => `${x.toFixed(3)}%` }],
  },
  ...manyClients(4, 2),
  ...manyClients(16, 1.5),
  {
    id: 'idle_clients16',
    short: 'idle, 16 clients',
    scenario: 'idle_clients',
    label: 'idle server with 16 connected clients (server and client processes)',
    column: 'idle 16 clients %core',
    unit: '% of one core (the server and its 16 client processes)',
    better: 'lower',
    idle: true,
    targets: [
      {
        of: 'idle_floor',
        goal: '16 idle clients and their server cost no more CPU than the bench with nothing open',
        met: (x) => x <= 1,
        show: (x) => `${x.toFixed(2)}x the highest nothing-open run`,
      },
    ],
  },
];

/**
 * rt_clients<n> and its p99: n client processes, each making sequential 64 B round trips
 * against one server process (scenario rt_clients), with the goal for the aggregate rate as a
 * multiple of the socket server's with the same clients; p99 no worse than the socket's.
 */
function manyClients(n: number, goal: number): Metric[] {
  return [
    {
      id: `rt_clients${n}`,
      short: `RT/s, ${n} clients`,
      scenario: 'rt_clients',
      label: `round trips 64 B per second, ${n} client processes against one server`,
      column: `${n} clients RT/s`,
      unit: 'round trips/s',
      better: 'higher',
      targets: [
        {
          of: 'ratio',
          goal: `${n} clients: round trips/s >= ${goal}x the socket server's`,
          met: (x) => x >= goal,
          show: showRatio,
        },
      ],
    },
    {
      id: `rt_clients${n}_p99`,
      short: `RT p99, ${n} clients`,
      scenario: 'rt_clients',
      label: `round trip 64 B p99, ${n} client processes against one server`,
      column: `${n} clients p99 µs`,
      unit: 'µs',
      better: 'lower',
      targets: [{ of: 'ratio', goal: `${n} clients: p99 <= the socket server's`, met: (x) => x <= 1, show: showRatio }],
    },
  ];
}

/**
 * The side table of the clients_resources scenario: the server process's threads, descriptors
 * and RSS with this many clients connected (and with none, before and after them).
 */
export const RESOURCE_CLIENT_COUNTS = [1, 16, 64] as const;

/** Below this the baseline's idle CPU is noise, and a ratio to it means nothing. */
export const IDLE_RATIO_FLOOR_PCT = 0.01;

/** value / baseline value; null where either is missing or the ratio would mean nothing. */
export function ratioOf(metric: Metric, value: number, base: number): number | null {
  if (!Number.isFinite(value) || !Number.isFinite(base) || base <= 0) return null;
  if (metric.idle === true && base < IDLE_RATIO_FLOOR_PCT) return null;
  return value / base;
}

/**
 * The side table of the "runtimes" scenario (bench/scenarios/runtimes.ts): the same 64 B round
 * trip and 64 B notifications between the Node package and the other runtimes on the C core,
 * and between two C programs (the floor of every binding). Not columns of the main table: each
 * row is a pair of runtimes, not a transport, and they are measured against shmchannel's own
 * Node ↔ Node row (rt_p50, rt_p99, notify64) of the same run.
 */
export interface RuntimePair {
  /** The suffix of its metric ids. */
  key: 'node_c' | 'node_py' | 'c_c';
  label: string;
  /** Who is who: the side that sends the requests / notifications, and the server. */
  sides: string;
}

export const RUNTIME_PAIRS: RuntimePair[] = [
  { key: 'node_c', label: 'Node ↔ C', sides: 'Node client (bench process), C server (bench/peers/bench-peer.c)' },
  {
    key: 'node_py',
    label: 'Node ↔ Python',
    sides: 'Node client (bench process), Python asyncio server (bench/peers/bench_peer.py)',
  },
  { key: 'c_c', label: 'C ↔ C', sides: 'C client, C server: two bench-peer processes' },
];

export interface RuntimeMetric {
  id: string;
  pair: RuntimePair['key'];
  /** The Node ↔ Node figure of the main table it stands next to (shmchannel's row). */
  nodeNode: 'rt_p50' | 'rt_p99' | 'notify64';
  label: string;
  unit: string;
  better: Better;
}

const RUNTIME_KINDS = [
  { prefix: 'rt_p50', nodeNode: 'rt_p50', label: 'round trip 64 B p50', unit: 'µs', better: 'lower' },
  { prefix: 'rt_p99', nodeNode: 'rt_p99', label: 'round trip 64 B p99', unit: 'µs', better: 'lower' },
  { prefix: 'notify64', nodeNode: 'notify64', label: '64 B notifications', unit: 'msgs/s', better: 'higher' },
] as const;

/** rt_p50_node_c, rt_p99_node_c, notify64_node_c, ... _node_py, ... _c_c. */
export const RUNTIME_METRICS: RuntimeMetric[] = RUNTIME_KINDS.flatMap((k) =>
  RUNTIME_PAIRS.map((p) => ({
    id: `${k.prefix}_${p.key}`,
    pair: p.key,
    nodeNode: k.nodeNode,
    label: `${k.label}, ${p.label}`,
    unit: k.unit,
    better: k.better,
  })),
);
