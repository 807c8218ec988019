// Forked by the many-clients scenarios: one client of a server of many (argv: shm|socket,
// channel name or socket path, warm-up round trips, then shmchannel's pollWindowUs, '' for the
// default).
import { numberArg, runManyClient, type ManyKind } from './many-clients';

const [kind, address, warmup, pollWindowUs] = process.argv.slice(2);
void runManyClient(kind as ManyKind, address, Number(warmup), numberArg(pollWindowUs));
