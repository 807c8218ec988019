// Many clients per server: one server process and N client processes (../many-clients.ts),
// shmchannel's server of many clients against a Unix-socket server with the same clients.
//   rt_clients:        4 and 16 clients, each making sequential 64 B round trips in a common
//                      window; aggregate round trips/s and the p99 of all of them.
//   idle_clients:      a server with 16 connected clients left alone: CPU of the server and
//                      client processes, next to the bench's nothing-open floor.
//   clients_resources: threads, descriptors and RSS of the server process with none, 1, 16 and
//                      64 clients connected, and once they have left (a side table).
import { now, sleep, threadCpuUs } from '../common';
import { BASELINE, config, STEP_TIMEOUT_MS } from '../config';
import { fmtRate } from '../format';
import type { Switches } from '../many-clients/client';
import { ClientGroup, resourcesOf, type GroupRun, type ManyKind, type ProcessResources } from '../many-clients/group';
import { RESOURCE_CLIENT_COUNTS } from '../metrics';
import { progress } from '../progress';
import { median } from '../stats';
import { withTimeout } from '../transports/transport';
import { idleFloorRun } from './idle';
import type { Bench, Scenario } from './scenario';

/** Client processes per server in rt_clients (the metric ids say them). */
const ROUND_TRIP_CLIENTS = [4, 16] as const;

/** Untimed round trips of every client before each window opens, so all are busy when it does. */
const LEAD_MS = 200;

/** Client processes of the idle_clients row. */
const IDLE_CLIENTS = 16;

/** Round trips each client makes once connected, before it counts as connected (idle, resources). */
const FIRST_ROUND_TRIPS = 100;

/** How long the server sits after clients came or went before its resources are read. */
const RESOURCES_SETTLE_MS = 500;

/** The kinds of server this run has: shmchannel if its transport is in the run, the socket always. */
function kindsOf(bench: Bench): ManyKind[] {
  return (['shm', 'socket'] as const).filter((k) => k === BASELINE || bench.lineup.runnable.some((e) => e.key === k));
}

/**
 * A group per kind, each with `clients` client processes that made `warmup` round trips;
 * a kind that fails to start is noted (a problem) and left out.
 */
async function startGroups(bench: Bench, what: string, clients: number, warmup: number): Promise<ClientGroup[]> {
  const started: ClientGroup[] = [];
  for (const kind of kindsOf(bench)) {
    const g = new ClientGroup(kind);
    try {
      await withTimeout(
        (async () => {
          await g.start();
          await g.grow(clients, warmup);
        })(),
        STEP_TIMEOUT_MS,
        `${g.label} ${what} start`,
      );
      started.push(g);
    } catch (err) {
      fail(bench, g, `${what} start`, err);
      await g.stop().catch(() => undefined);
    }
  }
  return started;
}

function fail(bench: Bench, g: ClientGroup, what: string, err: unknown): void {
  const message = `${g.label} server of many clients failed during ${what}: ${(err as Error).message}`;
  bench.results.problems.push(message);
  progress(message);
}

async function stopAll(groups: ClientGroup[]): Promise<void> {
  for (const g of groups) await g.stop().catch(() => undefined);
}

/** Context switches per round trip: voluntary + involuntary. */
const switches = (s: Switches) => `${s.voluntary.toFixed(2)}+${s.involuntary.toFixed(2)}`;

function recordRun(bench: Bench, g: ClientGroup, n: number, r: GroupRun): void {
  const { results } = bench;
  results.record(g.kind, `rt_clients${n}`, r.rate);
  results.record(g.kind, `rt_clients${n}_p99`, r.p99);
  results.recordExtra(g.kind, `rt_clients${n}_p50`, r.p50);
  results.recordExtra(g.kind, `rt_clients${n}_cpu`, {
    serverPct: r.serverPct,
    serverMainThreadPct: r.serverMainPct,
    clientsPct: r.clientsPct,
    serverUsPerRoundTrip: r.serverUsPerRt,
    clientsUsPerRoundTrip: r.clientsUsPerRt,
    serverSwitchesPerRoundTrip: r.serverSwitchesPerRt,
    clientsSwitchesPerRoundTrip: r.clientsSwitchesPerRt,
  });
  results.recordExtra(g.kind, `rt_clients${n}_per_client`, {
    min: Math.min(...r.perClient),
    max: Math.max(...r.perClient),
  });
  if (r.mismatches > 0)
    results.problems.push(`${g.label}: ${r.mismatches} replies to ${n} clients did not echo the request`);
  progress(
    `  ${g.label.padEnd(18)} ${fmtRate(r.rate)} RT/s  p50 ${r.p50.toFixed(1)} µs  p99 ${r.p99.toFixed(1)} µs  ` +
      `per client ${Math.min(...r.perClient)}..${Math.max(...r.perClient)}  CPU: server ${r.serverPct.toFixed(0)} % ` +
      `(main thread ${r.serverMainPct.toFixed(0)} %), clients ${r.clientsPct.toFixed(0)} %; ` +
      `per RT: server ${r.serverUsPerRt.toFixed(1)} µs, clients ${r.clientsUsPerRt.toFixed(1)} µs; ` +
      `switches per RT: server ${switches(r.serverSwitchesPerRt)}, clients ${switches(r.clientsSwitchesPerRt)}`,
  );
}

/**
 * One run of `g` in `groups`, with a time limit; a group that fails is noted, stopped and taken
 * out of `groups`. Undefined if it failed.
 */
async function groupRun(
  bench: Bench,
  groups: ClientGroup[],
  g: ClientGroup,
  what: string,
): Promise<GroupRun | undefined> {
  try {
    return await withTimeout(g.run(config.clientsMs, LEAD_MS), STEP_TIMEOUT_MS, `${g.label} ${what}`);
  } catch (err) {
    fail(bench, g, what, err);
    groups.splice(groups.indexOf(g), 1);
    await g.stop().catch(() => undefined);
    return undefined;
  }
}

export const roundTripsManyClients: Scenario = {
  id: 'rt_clients',
  stage: 'after',
  async run(bench) {
    for (const n of ROUND_TRIP_CLIENTS) {
      progress(
        `many clients: ${n} client processes per server, sequential 64 B round trips each ` +
          `(warm-up ${config.roundTripWarmup}), windows of ${config.clientsMs} ms after ${LEAD_MS} ms untimed`,
      );
      const groups = await startGroups(bench, `${n} clients`, n, config.roundTripWarmup);
      try {
        // One untimed run of each, all clients at once: the first run after the start-up was
        // the slowest of seven for both kinds (by up to half), whatever their order.
        progress(`${n} clients: an untimed run of each`);
        for (const g of [...groups]) await groupRun(bench, groups, g, `${n} clients, the untimed run`);
        for (let run = 0; run < config.runs; run++) {
          progress(`${n} clients: run ${run + 1}/${config.runs}`);
          const order = [...groups];
          for (let k = 0; k < order.length; k++) {
            const g = order[(k + run) % order.length];
            if (!groups.includes(g)) continue;
            const r = await groupRun(bench, groups, g, `${n} clients, run ${run + 1}`);
            if (r !== undefined) recordRun(bench, g, n, r);
          }
        }
      } finally {
        await stopAll(groups);
      }
    }
  },
};

/** CPU of the server and its clients over config.idleMs, from outside, on the scheduler's clock. */
async function idleGroupRun(bench: Bench, g: ClientGroup): Promise<void> {
  const pids = [g.serverPid, ...g.clientPids];
  const cpu0 = pids.map(threadCpuUs);
  const w0 = now();
  await sleep(config.idleMs);
  const cpu1 = pids.map(threadCpuUs);
  const wallUs = Number(now() - w0) / 1e3;
  const pct = pids.map((_, i) => ((cpu1[i] - cpu0[i]) / wallUs) * 100);
  const total = pct.reduce((a, b) => a + b, 0);
  if (!Number.isFinite(total)) {
    bench.results.notes.push('idle with 16 clients skipped: no schedstat (/proc/<pid>/task/<tid>/schedstat)');
    return;
  }
  const clients = pct.slice(1);
  bench.results.record(g.kind, `idle_clients${IDLE_CLIENTS}`, total);
  bench.results.recordExtra(g.kind, `idle_clients${IDLE_CLIENTS}_split_pct`, {
    server: pct[0],
    clients: clients.reduce((a, b) => a + b, 0),
    busiestClient: Math.max(...clients),
  });
  progress(
    `  ${g.label.padEnd(18)} ${total.toFixed(4)} % of one core over ${(wallUs / 1e6).toFixed(1)} s ` +
      `(server ${pct[0].toFixed(4)} %, ${clients.length} clients ${(total - pct[0]).toFixed(4)} %)`,
  );
}

/**
 * In the fresh stage, after the idle row: a server per kind with 16 clients that each made
 * round trips, left alone for config.idleSettleMs (fresh Node processes keep V8's threads busy
 * for seconds: see ./idle.ts), then measured in turn with the nothing-open floor.
 */
export const idleManyClients: Scenario = {
  id: 'idle_clients',
  stage: 'fresh',
  async run(bench) {
    progress(
      `idle server with ${IDLE_CLIENTS} clients: settle ${config.idleSettleMs} ms, then ${config.idleRuns} runs of ${config.idleMs} ms`,
    );
    const groups = await startGroups(bench, `idle ${IDLE_CLIENTS} clients`, IDLE_CLIENTS, FIRST_ROUND_TRIPS);
    try {
      await sleep(config.idleSettleMs);
      const slots: (ClientGroup | 'floor')[] = [...groups, 'floor'];
      for (let run = 0; run < config.idleRuns; run++) {
        progress(`idle, ${IDLE_CLIENTS} clients: run ${run + 1}/${config.idleRuns}`);
        for (let k = 0; k < slots.length; k++) {
          const s = slots[(k + run) % slots.length];
          await (s === 'floor' ? idleFloorRun(bench) : idleGroupRun(bench, s));
        }
      }
    } finally {
      await stopAll(groups);
    }
  },
};

function recordResources(
  bench: Bench,
  g: ClientGroup,
  of: 'server' | 'server, after' | 'client',
  clients: number,
  r: ProcessResources,
): void {
  bench.results.clientResources.push({ transport: g.kind, of, clients, ...r });
  const what =
    of === 'client'
      ? `one client process of ${clients} (median)`
      : `server, ${clients} client${clients === 1 ? '' : 's'}${of === 'server, after' ? ', after they left' : ''}`;
  progress(
    `  ${g.label.padEnd(12)} ${what.padEnd(36)} threads ${r.threads}  fds ${r.fds}  ` +
      `RSS ${(r.rssKiB / 1024).toFixed(1)} MiB (shmem ${(r.rssShmemKiB / 1024).toFixed(1)} MiB)`,
  );
}

/** The server of `g` with none, then each of RESOURCE_CLIENT_COUNTS clients, then none again. */
async function resourcesOfGroup(bench: Bench, g: ClientGroup): Promise<void> {
  await g.start();
  await sleep(RESOURCES_SETTLE_MS);
  const alone = resourcesOf(g.serverPid);
  recordResources(bench, g, 'server', 0, alone);
  for (const n of RESOURCE_CLIENT_COUNTS) {
    await g.grow(n, FIRST_ROUND_TRIPS);
    await sleep(RESOURCES_SETTLE_MS);
    recordResources(bench, g, 'server', n, resourcesOf(g.serverPid));
  }
  const each = g.clientPids.map(resourcesOf);
  const med = (f: keyof ProcessResources) => median(each.map((r) => r[f]));
  recordResources(bench, g, 'client', g.size, {
    threads: med('threads'),
    fds: med('fds'),
    rssKiB: med('rssKiB'),
    rssShmemKiB: med('rssShmemKiB'),
  });
  const last = g.size;
  await g.shrink(last);
  // The server lets go of a client once it has seen it leave: wait (a while at most) until its
  // descriptors are back to where they were, then let it settle.
  const until = Date.now() + 5_000;
  while (resourcesOf(g.serverPid).fds > alone.fds && Date.now() < until) await sleep(50);
  await sleep(RESOURCES_SETTLE_MS);
  recordResources(bench, g, 'server, after', last, resourcesOf(g.serverPid));
}

export const clientsResources: Scenario = {
  id: 'clients_resources',
  stage: 'after',
  async run(bench) {
    const most = Math.max(...RESOURCE_CLIENT_COUNTS);
    progress(
      `resources of a server of many clients (maxClients ${most}): none, ${RESOURCE_CLIENT_COUNTS.join(', ')} clients, none again`,
    );
    for (const kind of kindsOf(bench)) {
      const g = new ClientGroup(kind, { maxClients: most });
      try {
        await withTimeout(resourcesOfGroup(bench, g), STEP_TIMEOUT_MS, `${g.label} resources`);
      } catch (err) {
        fail(bench, g, 'resources', err);
      } finally {
        await g.stop().catch(() => undefined);
      }
    }
  },
};
