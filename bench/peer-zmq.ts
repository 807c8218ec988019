// Forked by bench/run.ts: the ZeroMQ side of the benchmark (argv: ipc socket file).
import { runZmqPeer } from './transports/zmq';

void runZmqPeer(process.argv[2]);
