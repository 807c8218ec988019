// Forked by the many-clients scenarios: a server of many clients (argv: shm|socket, channel name
// or socket path, maxClients).
import { runManyServer, type ManyKind } from './many-clients';

void runManyServer(process.argv[2] as ManyKind, process.argv[3], Number(process.argv[4]));
