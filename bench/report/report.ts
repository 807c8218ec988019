// What every form of the report (text, JSON, chart) is made from.
import { BASELINE } from '../config';
import type { TransportEntry } from '../lineup';
import { ratioOf, type Metric } from '../metrics';
import type { Results } from '../results';

export interface Report {
  results: Results;
  /** Every transport of the run, also those that did not run (with a note). */
  entries: TransportEntry[];
  /** Keys of the transports that ran: their rows have figures. */
  ran: string[];
  /** The metrics of the scenarios that ran, in column order. */
  metrics: Metric[];
  date: Date;
  /** How long the benchmark took. */
  seconds: number;
}

/** `key`'s median of `metric` over the baseline's; null where that means nothing. */
export function ratioToBaseline(report: Report, key: string, metric: Metric): number | null {
  return ratioOf(metric, report.results.median(key, metric.id), report.results.median(BASELINE, metric.id));
}
