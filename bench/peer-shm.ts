// Forked by bench/run.ts: the shmchannel side of the benchmark (argv: channel name).
import { runShmPeer } from './transports/shm';

void runShmPeer(process.argv[2]);
