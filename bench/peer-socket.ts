// Forked by bench/run.ts: the Unix-socket side of the benchmark (argv: socket path).
import { runSocketPeer } from './transports/socket';

runSocketPeer(process.argv[2]);
