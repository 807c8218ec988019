// How figures are printed: in the table, the progress lines and the goals.
import type { Metric } from './metrics';

export function fmtRate(v: number): string {
  if (!Number.isFinite(v)) return '-';
  if (v >= 1e6) return `${(v / 1e6).toFixed(2)}M`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  return v.toFixed(0);
}

export function fmtValue(metric: Metric, v: number): string {
  if (!Number.isFinite(v)) return '-';
  switch (metric.unit) {
    case 'msgs/s':
    case 'round trips/s':
      return fmtRate(v);
    case 'GB/s':
      return v.toFixed(v >= 10 ? 1 : 3);
    default:
      if (metric.idle === true) return v.toFixed(3);
      return v >= 100 ? v.toFixed(0) : v.toFixed(1);
  }
}

export function fmtRatio(r: number | null): string {
  if (r === null || !Number.isFinite(r)) return 'n/a';
  return `${r >= 10 ? r.toFixed(1) : r.toFixed(2)}x`;
}

/** A plain-text table: the first column left-aligned, the others right-aligned. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}
