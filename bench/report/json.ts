// bench/results/results.json: every run of every figure, with medians, ratios, the
// configuration and the extra figures. Its keys are read by whoever compares runs: keep them.
import * as os from 'node:os';

import { BASELINE, config, wanted } from '../config';
import { RUNTIME_METRICS, RUNTIME_PAIRS } from '../metrics';
import { median } from '../stats';
import { ratioToBaseline, type Report } from './report';

export function jsonReport(report: Report): string {
  const { results, entries, ran, metrics } = report;
  const idleFloor = results.idleFloorRuns;
  const json = {
    date: report.date.toISOString(),
    durationSeconds: Math.round(report.seconds),
    machine: {
      cpus: os.cpus().length,
      model: os.cpus()[0]?.model,
      platform: os.platform(),
      release: os.release(),
      node: process.version,
    },
    config,
    baseline: BASELINE,
    /** In-process bound of the 64 B row (bench/floor.ts), msgs/s; null if not measured. */
    deliveryFloor64: Number.isFinite(results.deliveryFloor64) ? results.deliveryFloor64 : null,
    /** In-process bound of the 64 B batch row, each side (bench/floor.ts), msgs/s; null if not measured. */
    batchFloor64: Number.isFinite(results.batchFloor64.send) ? results.batchFloor64 : null,
    /** Idle CPU with nothing open (% of a core): the floor of the idle row; null if not measured. */
    idleFloorPct: idleFloor.length > 0 ? { median: median(idleFloor), runs: idleFloor } : null,
    /** In-process bound of the 1 MiB owned-copy row (payload1m_copy; bench/floor.ts), GB/s; null if not measured. */
    deliveryFloor1m: Number.isFinite(results.deliveryFloor1m) ? results.deliveryFloor1m : null,
    /**
     * In-process bounds of the produced-payload rows (payload1m, payload16m; bench/floor.ts),
     * GB/s of each side: the sender's copy into a buffer, the receiver's check of every byte.
     */
    produceCheckFloors: results.produceCheckFloors,
    metrics: metrics.map((m) => ({ id: m.id, label: m.label, unit: m.unit, better: m.better })),
    transports: entries.map((e) => ({
      key: e.key,
      label: e.label,
      ran: ran.includes(e.key),
      note: e.note,
      results: Object.fromEntries(
        metrics.map((m) => {
          const value = results.median(e.key, m.id);
          return [
            m.id,
            {
              median: Number.isFinite(value) ? value : null,
              ratioToBaseline: ratioToBaseline(report, e.key, m),
              runs: results.runs(e.key, m.id),
            },
          ];
        }),
      ),
      extra: results.extrasOf(e.key),
    })),
    /**
     * The runtimes side table (scenario runtimes; bench/metrics.ts RUNTIME_METRICS): medians and
     * runs per id, next to shmchannel's Node ↔ Node figure of the same run; skipped: why a pair
     * has no figures. null if the scenario did not run.
     */
    runtimes: wanted('runtimes')
      ? {
          pairs: RUNTIME_PAIRS,
          skipped: results.runtimesSkipped,
          results: Object.fromEntries(
            RUNTIME_METRICS.map((m) => {
              const runs = results.runtimes.get(m.id) ?? [];
              const value = median(runs);
              const nodeNode = results.median('shm', m.nodeNode);
              return [
                m.id,
                {
                  label: m.label,
                  unit: m.unit,
                  better: m.better,
                  median: Number.isFinite(value) ? value : null,
                  runs,
                  nodeNode: Number.isFinite(nodeNode) ? { id: m.nodeNode, median: nodeNode } : null,
                },
              ];
            }),
          ),
        }
      : null,
    /**
     * The clients_resources side table: the server process (threads, fds, VmRSS and RssShmem in
     * KiB) per transport with `clients` connected, after they left, and one client process
     * (the median of those connected). null if the scenario did not run.
     */
    clientResources: wanted('clients_resources') ? results.clientResources : null,
    notes: results.notes,
    problems: results.problems,
  };
  return JSON.stringify(json, null, 2) + '\n';
}
