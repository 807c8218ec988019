// What a scenario is, and what it is given: the run's results to write and its transports.
import type { Lineup } from '../lineup';
import type { Results } from '../results';
import type { Transport } from '../transports/transport';

export interface Bench {
  readonly results: Results;
  readonly lineup: Lineup;
  /**
   * The pairs of the 'connected' stage, every transport's at once; a transport that fails a
   * step there leaves the list. After that stage they are closed, and the list says which
   * lasted.
   */
  readonly connected: Transport[];
}

/**
 * When a scenario runs. 'fresh': first, while the bench process is fresh, with no pair
 * connected; 'connected': with the pairs of `bench.connected`, the scenarios one after the
 * other; 'after': once those pairs are closed.
 */
export type Stage = 'fresh' | 'connected' | 'after';

export interface Scenario {
  /** Its BENCH_SCENARIOS id, and the `scenario` of the metrics it records. */
  id: string;
  stage: Stage;
  run(bench: Bench): Promise<void>;
}
