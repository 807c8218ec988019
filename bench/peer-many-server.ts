// Forked by the many-clients scenarios: a server of many clients (argv: shm|socket, channel name
// or socket path, then shmchannel's maxClients and pollWindowUs, '' for the defaults).
import { numberArg, runManyServer, type ManyKind } from './many-clients';

const [kind, address, maxClients, pollWindowUs] = process.argv.slice(2);
void runManyServer(kind as ManyKind, address, numberArg(maxClients), numberArg(pollWindowUs));
