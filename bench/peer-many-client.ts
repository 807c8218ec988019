// Forked by the many-clients scenarios: one client of a server of many (argv: shm|socket,
// channel name or socket path, warm-up round trips).
import { runManyClient, type ManyKind } from './many-clients';

void runManyClient(process.argv[2] as ManyKind, process.argv[3], Number(process.argv[4]));
