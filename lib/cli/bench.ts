import { Buffer } from 'node:buffer';
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';

import { firstValueFrom } from 'rxjs';

import { Channel } from '../channel';
import { createError } from '../errors';
import { COMMON_HELP, ExitCode, positiveNumberOption, type Command } from './command';
import { printJson, printLine } from './output';
import { bar, ProgressLine } from './progress';
import { onStopSignal, type StopSignal } from './signals';

const MESSAGE_SIZE = 64;
const DEFAULT_SECONDS = 4;
const NOTIFY_BATCH = 256;

interface BenchResult {
  seconds: number;
  messageSize: number;
  roundTrip: { count: number; p50Us: number; p99Us: number; meanUs: number };
  /** `seconds` is the notification phase's own time: count / seconds = msgsPerSec. */
  notifications: { count: number; seconds: number; msgsPerSec: number };
}

export const bench: Command = {
  name: 'bench',
  summary: 'a short benchmark: request round trip and notification rate',
  operands: { min: 0, max: 0, names: [] },
  options: {
    seconds: { type: 'string', short: 's' },
  },
  help: `Usage: shmchannel bench [--seconds N] [--json]

Starts a server ('shmchannel serve --quiet' in a child process) and measures, for about
N seconds in all (default ${DEFAULT_SECONDS}), half each:
  - request round trip: ${MESSAGE_SIZE} B requests answered by echo, one at a time; p50, p99
  - notifications: ${MESSAGE_SIZE} B notifications as fast as the server reads them; msgs/s
Progress goes to stderr (one updating line on a terminal), results to stdout. SIGINT
stops it (exit 130). For the comparison with sockets and other transports, see the
repository's bench/ ('npm run bench').

Options:
  -s, --seconds N       total duration in seconds (default ${DEFAULT_SECONDS})
${COMMON_HELP}
                        (prints {"seconds" (the whole run), "messageSize", "roundTrip":
                        {"count", "p50Us", "p99Us", "meanUs"}, "notifications": {"count",
                        "seconds" (this phase), "msgsPerSec" (count / seconds)}})`,

  async run(invocation) {
    const seconds = positiveNumberOption(invocation.values, 'seconds') ?? DEFAULT_SECONDS;
    const name = `/shmchannel-bench-${process.pid}`;
    const stop = onStopSignal();
    const server = startServer(name);
    const client = new Channel(name, 'client', { connectTimeout: 10_000 });
    try {
      await Promise.race([client.open(), server.failed]);
      const result = await measure(client, seconds, stop);
      if (result === undefined) return ExitCode.INTERRUPTED;
      if (invocation.json) {
        printJson(result);
      } else {
        const r = result.roundTrip;
        const n = result.notifications;
        printLine(
          `request round trip (${MESSAGE_SIZE} B, echo): ${r.count} requests, p50 ${r.p50Us} µs, p99 ${r.p99Us} µs, mean ${r.meanUs} µs`,
        );
        printLine(`notifications (${MESSAGE_SIZE} B): ${n.count} in ${n.seconds} s, ${n.msgsPerSec} msgs/s`);
      }
      return ExitCode.OK;
    } finally {
      await client.close();
      await server.stop();
      stop.dispose();
    }
  },
};

interface BenchServer {
  /** Rejects if the server exits before we stop it (its stderr is the message). */
  failed: Promise<never>;
  stop(): Promise<void>;
}

/** This CLI's own `serve --quiet`, in a child process, as the far end. */
function startServer(name: string): BenchServer {
  const main = path.join(__dirname, 'main.js');
  const child: ChildProcess = spawn(process.execPath, [main, 'serve', name, '--quiet'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    // Its own process group: Ctrl-C reaches only us, and we stop it in order.
    detached: true,
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  let stopping = false;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const failed = new Promise<never>((_, reject) => {
    const fail = (why: string) => {
      if (!stopping)
        reject(createError('ERR_PEER_LOST', `the benchmark server ${why}: ${stderr.trim() || '(no output)'}`));
    };
    child.once('error', (err) => fail(`could not start (${err.message})`));
    child.once('exit', (code, signal) => fail(`exited (${signal ?? `status ${String(code)}`})`));
  });
  failed.catch(() => undefined);
  return {
    failed,
    async stop() {
      stopping = true;
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    },
  };
}

async function measure(client: Channel, seconds: number, stop: StopSignal): Promise<BenchResult | undefined> {
  let stopped = false;
  void stop.received.then(() => (stopped = true));
  const progress = new ProgressLine('bench: ');
  try {
    return await run();
  } catch (err) {
    if (stopped) return undefined;
    throw err;
  } finally {
    progress.done();
  }

  async function run(): Promise<BenchResult | undefined> {
    const payload = Buffer.alloc(MESSAGE_SIZE, 0x61);
    const phaseMs = (seconds * 1000) / 2;
    const t0 = performance.now();
    const overall = () => (performance.now() - t0) / (seconds * 1000);

    // Round trips, one at a time. The first few warm up the JIT and the poll window.
    for (let i = 0; i < 100 && !stopped; i++) await firstValueFrom(client.request(payload));
    const latencies: number[] = [];
    const rtStart = performance.now();
    while (!stopped && performance.now() - rtStart < phaseMs) {
      const start = performance.now();
      await firstValueFrom(client.request(payload));
      latencies.push((performance.now() - start) * 1000);
      progress.update(`${bar(overall())}  round trips ${latencies.length}`);
    }

    // Notifications as fast as the ring takes them, waiting whenever it is full; a request
    // after the last one returns only once the server has read them all (one ordered stream
    // per direction).
    let sent = 0;
    const nStart = performance.now();
    while (!stopped && performance.now() - nStart < phaseMs) {
      for (let i = 0; i < NOTIFY_BATCH && !stopped; i++) {
        sent += 1;
        if (!client.notify(payload)) await client.drained();
      }
      // Progress, and a turn for timers and signals, between batches.
      await new Promise(setImmediate);
      progress.update(`${bar(overall())}  notifications ${sent}`);
    }
    if (!stopped) await firstValueFrom(client.request(payload));
    const nSeconds = (performance.now() - nStart) / 1000;
    if (stopped) return undefined;

    latencies.sort((a, b) => a - b);
    const pick = (q: number) =>
      round(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0, 1);
    const mean = latencies.reduce((sum, x) => sum + x, 0) / Math.max(1, latencies.length);
    return {
      seconds: round((performance.now() - t0) / 1000, 1),
      messageSize: MESSAGE_SIZE,
      roundTrip: { count: latencies.length, p50Us: pick(0.5), p99Us: pick(0.99), meanUs: round(mean, 1) },
      // To 10 ms, so that the rate can be checked against the count and time printed.
      notifications: { count: sent, seconds: round(nSeconds, 2), msgsPerSec: Math.round(sent / nSeconds) },
    };
  }
}

function round(x: number, decimals: number): number {
  const scale = 10 ** decimals;
  return Math.round(x * scale) / scale;
}
