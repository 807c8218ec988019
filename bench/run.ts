// `npm run bench`: shmchannel against a Unix-domain socket, child_process IPC and ZeroMQ,
// each with its other side in a forked process. Prints a table of medians over several
// runs and their ratio to the Unix-socket row, writes bench/results/results.json and
// bench/results/chart.svg. No timed assertions: it reports, it does not fail on numbers.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { sleep } from './common';
import { BASELINE, config, wanted } from './config';
import { Lineup } from './lineup';
import { METRICS } from './metrics';
import { elapsedSeconds, progress } from './progress';
import { chartReport } from './report/chart';
import { jsonReport } from './report/json';
import type { Report } from './report/report';
import { textReport } from './report/text';
import { Results } from './results';
import { SCENARIOS, type Bench, type Stage } from './scenarios';

/** Kills every peer still running on SIGINT/SIGTERM, then exits. */
function installSignalCleanup(lineup: Lineup): void {
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`\n${signal}: closing channels and peers\n`);
    lineup.dropAll();
    setTimeout(() => process.exit(130), 300);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
}

async function runStage(bench: Bench, stage: Stage): Promise<void> {
  for (const s of SCENARIOS) if (s.stage === stage && wanted(s.id)) await s.run(bench);
}

/** Runs the selected scenarios stage by stage; returns the keys of the transports that ran. */
async function runScenarios(bench: Bench): Promise<string[]> {
  const { lineup } = bench;
  await runStage(bench, 'fresh');

  // The 'connected' scenarios run with all transports connected at once (their peers sleep in
  // epoll/futex while another transport is measured), interleaved run by run.
  for (const e of lineup.runnable) {
    const t = await lineup.start(e);
    if (t !== undefined) bench.connected.push(t);
  }
  if (!bench.connected.some((t) => t.key === BASELINE)) throw new Error('the Unix-socket baseline did not start');
  const ran = bench.connected.map((t) => t.key);
  try {
    await runStage(bench, 'connected');
  } finally {
    for (const t of bench.connected) await lineup.stop(t);
  }

  await runStage(bench, 'after');
  return ran;
}

function writeReport(report: Report): void {
  process.stdout.write(textReport(report));
  const resultsDir = path.resolve(__dirname, '..', '..', 'bench', 'results');
  fs.mkdirSync(resultsDir, { recursive: true });
  const jsonPath = path.join(resultsDir, 'results.json');
  fs.writeFileSync(jsonPath, jsonReport(report));
  const svgPath = path.join(resultsDir, 'chart.svg');
  fs.writeFileSync(svgPath, chartReport(report));
  process.stderr.write(
    `wrote ${path.relative(process.cwd(), jsonPath)} and ${path.relative(process.cwd(), svgPath)}\n`,
  );
}

async function main(): Promise<number> {
  const lineup = new Lineup(config.transports);
  installSignalCleanup(lineup);
  try {
    progress(
      `shmchannel benchmark: ${config.quick ? 'QUICK mode, ' : ''}${config.runs} runs per scenario, ` +
        `${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), Node ${process.version}`,
    );
    for (const e of lineup.entries) if (e.create === undefined) progress(`${e.label}: ${e.note}`);
    const bench: Bench = { results: new Results(), lineup, connected: [] };
    const ran = await runScenarios(bench);
    writeReport({
      results: bench.results,
      entries: lineup.entries,
      ran,
      metrics: METRICS.filter((m) => wanted(m.scenario)),
      date: new Date(),
      seconds: elapsedSeconds(),
    });
    return 0;
  } catch (err) {
    console.error('benchmark failed:', err);
    lineup.dropAll();
    await sleep(300);
    return 1;
  }
}

void main().then((code) => process.exit(code));
