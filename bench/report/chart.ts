// bench/results/chart.svg: each transport's figures as how many times better than the
// baseline's, so that up is better on every metric: baseline / value where lower is better
// (times, CPU), value / baseline where higher is (rates).
import * as os from 'node:os';

import { BASELINE, config } from '../config';
import { IDLE_RATIO_FLOOR_PCT, type Metric } from '../metrics';
import { median } from '../stats';
import { renderChart } from '../svg';
import { ratioToBaseline, type Report } from './report';

const PALETTE: Record<string, string> = {
  shm: '#2b7bb9',
  socket: '#9a9a9a',
  ipc: '#e08a2c',
  zmq: '#5aa05a',
};

/** How many times better than the baseline; null where the ratio means nothing. */
function advantage(metric: Metric, ratio: number | null): number | null {
  if (ratio === null) return null;
  return metric.better === 'lower' ? 1 / ratio : ratio;
}

export function chartReport(report: Report): string {
  const { results, entries, ran, metrics } = report;
  const shown = entries.filter((e) => ran.includes(e.key));
  return renderChart({
    title: 'shmchannel vs Unix socket, child_process IPC, ZeroMQ — times better than the Unix socket',
    subtitle:
      `${os.cpus().length} CPUs, Node ${process.version}, ${report.date.toISOString().slice(0, 10)}; ` +
      `medians of ${config.runs} runs; bar = unix socket ÷ value for times and CPU, value ÷ unix socket for rates: up is better`,
    axis: 'times better than the Unix socket (log scale)',
    series: shown.map((e) => ({ name: e.label, color: PALETTE[e.key] ?? '#444' })),
    groups: metrics.map((m) => ({
      label: m.short,
      hint: m.better === 'lower' ? 'socket ÷ value' : 'value ÷ socket',
      ratios: shown.map((e) => advantage(m, ratioToBaseline(report, e.key, m))),
    })),
    footnote: entries
      .filter((e) => e.note !== undefined)
      .map((e) => `${e.label} ${e.note}`)
      .concat(
        results.median(BASELINE, 'idle') < IDLE_RATIO_FLOOR_PCT && metrics.some((m) => m.id === 'idle')
          ? ['idle: socket ≈ 0 % of a core, ratios n/a']
          : [],
      )
      .concat(
        results.idleFloorRuns.length > 0
          ? [`idle with nothing open: ${median(results.idleFloorRuns).toFixed(3)} %`]
          : [],
      )
      .join('; '),
  });
}
