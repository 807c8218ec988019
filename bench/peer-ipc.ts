// Forked by bench/run.ts: the child_process IPC side of the benchmark.
import { runIpcPeer } from './transports/ipc';

runIpcPeer();
