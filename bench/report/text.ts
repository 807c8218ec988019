// The report on stdout: figures, ratios to the baseline, spread across runs, notes, and how
// shmchannel stands against the project's goals.
import * as os from 'node:os';

import { BASELINE, config, wanted } from '../config';
import { fmtRate, fmtRatio, fmtValue, table } from '../format';
import { IDLE_RATIO_FLOOR_PCT, METRICS, RUNTIME_METRICS, RUNTIME_PAIRS, type Metric } from '../metrics';
import { RESOURCE_CLIENT_COUNTS } from '../metrics';
import type { ClientResources, Results } from '../results';
import { median, relativeSpread } from '../stats';
import { ratioToBaseline, type Report } from './report';

export function textReport(report: Report): string {
  const { results, entries, ran, metrics } = report;
  const runsNote =
    `medians of ${config.runs} runs (idle: ${config.idleRuns} runs of ${config.idleMs / 1000} s); ` +
    `round trips: ${config.roundTrips}/run; notifications: runs of about ${config.notifyMs} ms; ` +
    `payloads: ${config.payload1m} x 1 MiB, ${config.payload16m} x 16 MiB per run; ` +
    `many clients: windows of ${config.clientsMs} ms`;
  const rows = (cell: (key: string, m: Metric) => string) =>
    entries.map((e) => [e.label, ...metrics.map((m) => cell(e.key, m))]);
  const valueRows = rows((key, m) => (ran.includes(key) ? fmtValue(m, results.median(key, m.id)) : 'skipped'));
  const ratioRows = rows((key, m) => (ran.includes(key) ? fmtRatio(ratioToBaseline(report, key, m)) : 'skipped'));
  const spreadRows = rows((key, m) => {
    const s = relativeSpread(results.runs(key, m.id));
    return Number.isFinite(s) ? `${(s * 100).toFixed(0)}%` : '-';
  });
  const headers = ['', ...metrics.map((m) => m.column)];

  const out: string[] = [];
  out.push('');
  out.push(
    `shmchannel benchmark — ${report.date.toISOString()} — ${os.cpus().length} CPUs, Node ${process.version}, ${os.platform()} ${os.release()}`,
  );
  out.push(runsNote);
  out.push('');
  out.push('Figures (RT = request/response round trip, one in flight; CPU = both processes; GB = 1e9 bytes)');
  out.push(table(headers, valueRows));
  out.push('');
  out.push(
    `Ratio to the unix socket row (${metrics.map((m) => `${m.column}: ${m.better === 'lower' ? 'lower' : 'higher'} is better`).join('; ')})`,
  );
  out.push(table(headers, ratioRows));
  out.push('');
  out.push('Spread across runs, (max - min) / median');
  out.push(table(headers, spreadRows));
  for (const e of entries) if (e.note !== undefined) out.push(`note: ${e.label} ${e.note}`);
  if (metrics.some((m) => m.id === 'idle') && results.median(BASELINE, 'idle') < IDLE_RATIO_FLOOR_PCT) {
    out.push(`note: the socket's idle CPU is below ${IDLE_RATIO_FLOOR_PCT}% of a core (noise), so idle ratios are n/a`);
  }
  const idleFloor = results.idleFloorRuns;
  if (idleFloor.length > 0) {
    out.push(
      `note: idle with nothing open (the bench process's own timer, /proc reads and V8 threads): ` +
        `${median(idleFloor).toFixed(3)} % of a core (median of ${idleFloor.length}, highest ` +
        `${Math.max(...idleFloor).toFixed(3)} %); a row at that level does nothing while idle`,
    );
  }
  for (const n of results.notes) out.push(`note: ${n}`);
  for (const p of results.problems) out.push(`VERIFICATION PROBLEM: ${p}`);
  if (wanted('runtimes')) out.push('', ...runtimeLines(results));
  if (wanted('clients_resources')) out.push('', ...clientResourceLines(results));
  out.push('');
  out.push(...goalLines(report));
  out.push('');
  out.push(`total time ${report.seconds.toFixed(0)} s`);
  return out.join('\n') + '\n';
}

/**
 * The runtimes side table: each pair's medians, and in brackets their ratio to shmchannel's
 * Node ↔ Node row of the same run (value ÷ Node ↔ Node).
 */
function runtimeLines(results: Results): string[] {
  const kinds = ['rt_p50', 'rt_p99', 'notify64'] as const;
  const show = (id: string, v: number) => (id === 'notify64' ? fmtRate(v) : v >= 100 ? v.toFixed(0) : v.toFixed(1));
  const nodeNode = kinds.map((k) => results.median('shm', k));
  const rows = [
    [
      'Node ↔ Node (shmchannel row above)',
      ...kinds.map((k, i) => (Number.isFinite(nodeNode[i]) ? show(k, nodeNode[i]) : 'not in this run')),
    ],
    ...RUNTIME_PAIRS.map((pair) => {
      const skipped = results.runtimesSkipped[pair.key];
      return [
        pair.label,
        ...kinds.map((k, i) => {
          const id = `${k}_${pair.key}`;
          const v = median(results.runtimes.get(id) ?? []);
          if (!Number.isFinite(v)) return skipped !== undefined ? 'skipped' : '-';
          return Number.isFinite(nodeNode[i]) ? `${show(k, v)} (${fmtRatio(v / nodeNode[i])})` : show(k, v);
        }),
      ];
    }),
  ];
  const lines = [
    'Runtimes on the same core (scenario runtimes): Node ↔ X = the bench process as the client, X the server; ' +
      '(ratio) = value ÷ Node ↔ Node',
    table(['', 'RT p50 µs', 'RT p99 µs', '64 B msg/s'], rows),
    `ids in results.json "runtimes": ${RUNTIME_METRICS.map((m) => m.id).join(', ')}`,
  ];
  for (const pair of RUNTIME_PAIRS) {
    const skipped = results.runtimesSkipped[pair.key];
    if (skipped !== undefined) lines.push(`note: ${pair.label}: ${skipped}`);
  }
  if (!nodeNode.some(Number.isFinite))
    lines.push('note: no Node ↔ Node figures: the rt and notify64 scenarios (shm) did not run in this run');
  return lines;
}

/**
 * The clients_resources side table: the server process's threads, descriptors and RSS (with its
 * shared-memory part) with none, 1, 16 and 64 clients connected and after they left, per kind of
 * server; and one client process.
 */
function clientResourceLines(results: Results): string[] {
  const rows = results.clientResources;
  const kinds = ['shm', BASELINE].filter((k) => rows.some((r) => r.transport === k));
  const mib = (kib: number) => (kib / 1024).toFixed(1);
  const steps: { label: string; of: ClientResources['of']; clients?: number }[] = [
    { label: 'open, no client', of: 'server', clients: 0 },
    ...RESOURCE_CLIENT_COUNTS.map((n) => ({
      label: `${n} client${n === 1 ? '' : 's'}`,
      of: 'server' as const,
      clients: n,
    })),
    { label: 'after they left', of: 'server, after' },
    { label: 'one client process (median)', of: 'client' },
  ];
  const body = steps.map((step) => [
    step.label,
    ...kinds.flatMap((k) => {
      const r = rows.find(
        (x) => x.transport === k && x.of === step.of && (step.clients === undefined || x.clients === step.clients),
      );
      return r === undefined
        ? ['-', '-', '-']
        : [String(r.threads), String(r.fds), `${mib(r.rssKiB)} (${mib(r.rssShmemKiB)})`];
    }),
  ]);
  const label = (k: string) => (k === 'shm' ? 'shmchannel' : 'socket');
  const lines = [
    `Many clients: the server process (scenario clients_resources; shmchannel: maxClients ${Math.max(...RESOURCE_CLIENT_COUNTS)}): ` +
      'threads, descriptors, VmRSS MiB (of which shared memory, RssShmem)',
  ];
  if (kinds.length === 0) return [...lines, 'no figures: see the problems above'];
  lines.push(table(['', ...kinds.flatMap((k) => [`${label(k)} threads`, 'fds', 'RSS MiB (shm)'])], body));
  return lines;
}

/** Informational: how shmchannel compares with the project's goals (never fails the run). */
function goalLines({ results, ran }: Report): string[] {
  if (!ran.includes('shm')) return [];
  const med = (key: string, metric: string) => results.median(key, metric);
  const lines = ['Goals for shmchannel (informational, not assertions):'];
  const check = (ok: boolean | null, text: string) =>
    lines.push(`  [${ok === null ? ' - ' : ok ? 'met' : 'MISSED'}] ${text}`);
  for (const m of METRICS) {
    const value = med('shm', m.id);
    const base = med(BASELINE, m.id);
    const rt = med('shm', 'rt_p50');
    for (const target of m.targets ?? []) {
      const floor = results.idleFloorRuns.length > 0 ? Math.max(...results.idleFloorRuns) : NaN;
      const of = { value: 1, ratio: base, rt_p50: rt, idle_floor: floor }[target.of];
      if (!Number.isFinite(value)) continue;
      if (!Number.isFinite(of)) {
        if (target.of === 'rt_p50') check(null, `${target.goal}: the round-trip scenario (rt) did not run`);
        if (target.of === 'idle_floor') check(null, `${target.goal}: the nothing-open floor was not measured`);
        continue;
      }
      const x = value / of;
      const aside =
        target.of === 'idle_floor'
          ? ` (${value.toFixed(3)} %${idleFloorAside(results).replace(' (', '; ')}`
          : m.id === 'idle'
            ? idleFloorAside(results)
            : target.of === 'rt_p50'
              ? ` (${value.toFixed(1)} µs, rt_p50 ${rt.toFixed(1)} µs)`
              : '';
      check(target.met(x), `${target.goal}: ${target.show(x)}${aside}`);
    }
    const bound = boundLine(m.id, results, base);
    if (bound !== undefined && Number.isFinite(value) && Number.isFinite(base))
      lines.push(`        bound of ${m.id}: ${bound}`);
  }
  if (ran.includes('zmq')) {
    // Idle: a row no higher than a run with nothing open does nothing, and is behind no one.
    const behind = METRICS.filter((m) => Number.isFinite(med('shm', m.id)) && Number.isFinite(med('zmq', m.id)))
      .filter((m) => !(m.idle === true && results.idleAtFloor(med('shm', m.id))))
      .filter((m) =>
        m.better === 'lower' ? med('shm', m.id) >= med('zmq', m.id) : med('shm', m.id) <= med('zmq', m.id),
      );
    check(
      behind.length === 0,
      `ahead of zeromq on every row${behind.length ? `: behind on ${behind.map((m) => m.label).join(', ')}` : ''}`,
    );
  } else {
    check(null, 'ahead of zeromq on every row: zeromq did not run');
  }
  return lines;
}

/** The idle figure with nothing open, to read the idle goals against; '' if not measured. */
function idleFloorAside(results: Results): string {
  const runs = results.idleFloorRuns;
  return runs.length > 0
    ? ` (nothing open: ${median(runs).toFixed(3)}%, highest of ${runs.length} ${Math.max(...runs).toFixed(3)}%)`
    : '';
}

/**
 * What bounds a many-clients row: the CPU of the server and client processes in the window, per
 * round trip, and the rate every core busy at that cost would give, for shmchannel and the
 * socket. With more processes than cores busy, the transport that costs less CPU per round trip
 * gets more of them done.
 */
function manyClientsBound(metric: string, results: Results): string | undefined {
  const m = /^rt_clients(\d+)$/.exec(metric);
  if (m === null) return undefined;
  const cores = os.cpus().length;
  const parts = (['shm', BASELINE] as const).map((key) => {
    const runs = (results.extrasOf(key)[`${metric}_cpu`] as ManyClientsCpu[] | undefined) ?? [];
    const of = (
      f: 'serverPct' | 'serverMainThreadPct' | 'clientsPct' | 'serverUsPerRoundTrip' | 'clientsUsPerRoundTrip',
    ) => median(runs.map((r) => r[f]));
    const perRt = median(runs.map((r) => r.serverUsPerRoundTrip + r.clientsUsPerRoundTrip));
    const busy = median(runs.map((r) => r.serverPct + r.clientsPct));
    const full = (cores * 1e6) / perRt;
    return (
      `${key === 'shm' ? 'shmchannel' : 'the socket'}: ${busy.toFixed(0)} % of a core busy ` +
      `(server ${of('serverPct').toFixed(0)} %, its main thread ${of('serverMainThreadPct').toFixed(0)} %; ` +
      `clients ${of('clientsPct').toFixed(0)} %), CPU per round trip ${perRt.toFixed(1)} µs ` +
      `(server ${of('serverUsPerRoundTrip').toFixed(1)}, clients ${of('clientsUsPerRoundTrip').toFixed(1)}): ` +
      `${cores} cores at that cost give ${fmtRate(full)} RT/s; context switches per round trip, ` +
      `voluntary + involuntary: server ${switches(runs.map((r) => r.serverSwitchesPerRoundTrip))}, ` +
      `clients ${switches(runs.map((r) => r.clientsSwitchesPerRoundTrip))}`
    );
  });
  return `CPU in the window (medians of the runs): ${parts.join('; ')}`;
}

interface ManyClientsCpu {
  serverPct: number;
  serverMainThreadPct: number;
  clientsPct: number;
  serverUsPerRoundTrip: number;
  clientsUsPerRoundTrip: number;
  serverSwitchesPerRoundTrip: { voluntary: number; involuntary: number };
  clientsSwitchesPerRoundTrip: { voluntary: number; involuntary: number };
}

/** Medians of context switches per round trip, as 'voluntary + involuntary'. */
function switches(runs: { voluntary: number; involuntary: number }[]): string {
  const v = median(runs.map((r) => r.voluntary));
  const i = median(runs.map((r) => r.involuntary));
  return `${v.toFixed(2)} + ${i.toFixed(2)}`;
}

/** The in-process bound of a row (bench/floor.ts), against the baseline's figure; undefined if none. */
function boundLine(metric: string, results: Results, base: number): string | undefined {
  const many = manyClientsBound(metric, results);
  if (many !== undefined) return many;
  const floor64 = results.deliveryFloor64;
  const floor1m = results.deliveryFloor1m;
  if (metric === 'notify64' && Number.isFinite(floor64)) {
    return (
      `handing 64 B views to an RxJS subscriber in this process, with no transport at all, ` +
      `reaches ${fmtRate(floor64)} msgs/s = ${(floor64 / base).toFixed(2)}x the socket row`
    );
  }
  const batch = results.batchFloor64;
  if (metric === 'notify64_batch' && Number.isFinite(batch.send)) {
    return (
      `in this process, with no transport at all, the sender's part (stamping 64 B messages and ` +
      `framing them into shmchannel's send batch in groups of 1024, as notifyMany() does) reaches ${fmtRate(batch.send)} ` +
      `msgs/s = ${(batch.send / base).toFixed(2)}x the socket row; the receiver's (handing them in ` +
      `batches to an RxJS subscriber that checks each) ${fmtRate(batch.deliver)} msgs/s = ` +
      `${(batch.deliver / base).toFixed(2)}x`
    );
  }
  if (metric === 'payload1m_copy' && Number.isFinite(floor1m)) {
    return (
      `copying 1 MiB once into an owned Buffer and handing it to an RxJS subscriber in this ` +
      `process, with no transport at all, reaches ${floor1m.toFixed(2)} GB/s = ` +
      `${(floor1m / base).toFixed(2)}x the socket row`
    );
  }
  const produced = results.produceCheckFloors[metric];
  if (produced !== undefined) {
    const slower = Math.min(produced.produce, produced.check);
    return (
      `in this process, with no transport at all, the sender's part (copying each message from its ` +
      `source into a buffer in use, as into a loan) reaches ${produced.produce.toFixed(2)} GB/s = ` +
      `${(produced.produce / base).toFixed(2)}x the socket row; the receiver's (comparing every byte ` +
      `with the original) ${produced.check.toFixed(2)} GB/s = ${(produced.check / base).toFixed(2)}x; ` +
      `the two run at once in two processes, so the row cannot beat ${slower.toFixed(2)} GB/s = ` +
      `${(slower / base).toFixed(2)}x`
    );
  }
  if (metric === 'handoff16m_p50') {
    const after = median((results.extrasOf('shm').handoff16m_rt64_after_copy_p50 as number[] | undefined) ?? []);
    const handOff = results.median('shm', metric);
    if (!Number.isFinite(after)) return undefined;
    return (
      `a 64 B round trip of shmchannel right after the sender copied the same 16 MiB (the work ` +
      `done before each hand-off's clock starts), interleaved with the hand-offs: p50 ` +
      `${after.toFixed(1)} µs; the hand-off is ${(handOff / after).toFixed(2)}x that`
    );
  }
  return undefined;
}
