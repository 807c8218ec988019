// What a benchmark run found: every run's figure per transport and metric, the extra figures
// the JSON carries, the in-process bounds, and what went wrong or was left out. The scenarios
// write it; the report reads it.
import type { ProcessResources } from './many-clients/group';
import { median } from './stats';

/** One row of the clients_resources side table: a server process with `clients` connected. */
export interface ClientResources extends ProcessResources {
  transport: string;
  /**
   * What was measured: 'server' with `clients` connected (0: open, none yet), 'server, after'
   * once all had left, or 'client' (one client process, the median of those connected).
   */
  of: 'server' | 'server, after' | 'client';
  clients: number;
}

export class Results {
  /** Per transport, per metric: the value of each run. */
  private readonly samples = new Map<string, Map<string, number[]>>();
  /** Per transport: extra figures for the JSON (CPU per message, verification), a list per key. */
  private readonly extras = new Map<string, Record<string, unknown[]>>();
  /** Verification problems and failed steps. */
  readonly problems: string[] = [];
  /** What the reader should know that is not a verification problem (a scenario skipped). */
  readonly notes: string[] = [];
  /** msgs/s of deliveryFloor64() (bench/floor.ts); NaN if not measured. */
  deliveryFloor64 = NaN;
  /** msgs/s of each side of batchFloor64() (the batch row's bound); NaN if not measured. */
  batchFloor64 = { send: NaN, deliver: NaN };
  /** GB/s of deliveryFloor1m(); NaN if not measured. */
  deliveryFloor1m = NaN;
  /** GB/s of each side of produceCheckFloor(), per produced-payload metric (payload1m, payload16m). */
  readonly produceCheckFloors: Record<string, { produce: number; check: number }> = {};
  /**
   * The idle measurement with nothing open, % of a core per run: what the bench process itself
   * costs in the window. A transport whose idle row sits at this level does nothing while idle.
   */
  readonly idleFloorRuns: number[] = [];
  /** The runtimes side table (bench/metrics.ts RUNTIME_METRICS): per id, the value of each run. */
  readonly runtimes = new Map<string, number[]>();
  /** Per runtime pair (RUNTIME_PAIRS key) that has no figures: why (no compiler, no python3, a failure). */
  readonly runtimesSkipped: Record<string, string> = {};
  /** The clients_resources side table, in the order measured. */
  readonly clientResources: ClientResources[] = [];

  record(transport: string, metric: string, value: number): void {
    let m = this.samples.get(transport);
    if (m === undefined) this.samples.set(transport, (m = new Map()));
    let list = m.get(metric);
    if (list === undefined) m.set(metric, (list = []));
    list.push(value);
  }

  recordExtra(transport: string, key: string, value: unknown): void {
    let e = this.extras.get(transport);
    if (e === undefined) this.extras.set(transport, (e = {}));
    (e[key] ??= []).push(value);
  }

  /** The value of each run, in order; empty if none. */
  runs(transport: string, metric: string): number[] {
    return this.samples.get(transport)?.get(metric) ?? [];
  }

  /** The median over the runs; NaN if none. */
  median(transport: string, metric: string): number {
    return median(this.runs(transport, metric));
  }

  recordRuntime(id: string, value: number): void {
    let list = this.runtimes.get(id);
    if (list === undefined) this.runtimes.set(id, (list = []));
    list.push(value);
  }

  extrasOf(transport: string): Record<string, unknown[]> {
    return this.extras.get(transport) ?? {};
  }

  /** Is this idle figure indistinguishable from having nothing open? */
  idleAtFloor(idlePct: number): boolean {
    return this.idleFloorRuns.length > 0 && idlePct <= Math.max(...this.idleFloorRuns);
  }
}
