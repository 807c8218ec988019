import { defer, filter, firstValueFrom, of, tap } from 'rxjs';

import { Channel } from '../channel';
import { handleWith } from '../operators/handle-with';
import { channelName, COMMON_HELP, ExitCode, stringOption, type Command } from './command';
import { MAX_CLIENTS_HELP, SERVER_OPTIONS, serverOptionsOf, watchClients } from './channel-end';
import { runCommand } from './exec-command';
import { dataFields, dataPreview, errorReport, printJson, printLine, printStatus } from './output';
import { onStopSignal } from './signals';

export const serve: Command = {
  name: 'serve',
  summary: 'be the server of a channel: answer requests (echo, or a command per request)',
  operands: { min: 1, max: 1, names: ['NAME'] },
  options: {
    exec: { type: 'string', short: 'e' },
    quiet: { type: 'boolean', short: 'q' },
    ...SERVER_OPTIONS,
  },
  help: `Usage: shmchannel serve NAME [--exec CMD] [--max-clients N] [--quiet] [--json]

Creates the channel NAME (/NAME) and answers every request of every client until SIGINT
or SIGTERM, then closes it (the segment is removed) and exits 0. Without --exec a request
is answered with its own data (echo). Prints each notification and request it receives on
stdout, and each client that connects or leaves (pid, connection id) on stderr.

Options:
  -e, --exec CMD        answer each request by running CMD with /bin/sh: the request data
                        is its stdin, its stdout the response; a non-zero exit fails the
                        request (ERR_REMOTE, remote code ERR_EXEC_FAILED, its stderr as the
                        message); a cancelled request kills CMD
  -q, --quiet           do not print each message (only status)
${MAX_CLIENTS_HELP}
${COMMON_HELP}
                        (JSON Lines: one {"event":…} object per line)

Examples:
  shmchannel serve demo
  shmchannel serve demo --exec 'tr a-z A-Z'`,

  async run(invocation) {
    const name = channelName(invocation.positionals[0]);
    const exec = stringOption(invocation.values, 'exec');
    const quiet = invocation.values.quiet === true;
    const { json } = invocation;
    const log = (event: object, text: string): void => {
      if (quiet) return;
      if (json) printJson(event);
      else printLine(text);
    };

    const options = serverOptionsOf(invocation.values);
    const stop = onStopSignal();
    const server = new Channel(name, 'server', options);
    try {
      await server.open();
    } catch (err) {
      stop.dispose();
      throw err;
    }
    if (json) printJson({ event: 'ready', name, pid: process.pid });
    else
      printStatus(
        'serve',
        `serving ${name} (pid ${process.pid})${exec === undefined ? ', echo' : `, exec ${JSON.stringify(exec)}`}; Ctrl-C stops`,
      );

    watchClients(
      server,
      options,
      (client) => {
        if (json) log({ event: 'connected', clientPid: client.pid, clientId: client.id }, '');
        else printStatus('serve', `client connected (pid ${client.pid}${idText(client.id)})`);
      },
      (client) => {
        if (json) log({ event: 'disconnected', clientPid: client.pid, clientId: client.id }, '');
        else printStatus('serve', `client left (pid ${client.pid}${idText(client.id)})`);
      },
    );
    server.clientErrors$.subscribe((err) => {
      if (json) log({ event: 'client-dropped', code: err.code, message: err.message }, '');
      else printStatus('serve', `dropped a client: ${err.message} (${err.code})`);
    });
    // A broken channel (its segment lost pages) errors its streams and closes itself.
    let failure: unknown;
    server.notifications$.subscribe({
      next: (data) => log({ event: 'notification', ...dataFields(data) }, `notification ${dataPreview(data)}`),
      error: (err: unknown) => (failure = err),
    });
    server.requests$
      .pipe(
        handleWith((data, request) => {
          log({ event: 'request', id: request.id, ...dataFields(data) }, `request ${request.id} ${dataPreview(data)}`);
          request.cancelled$.subscribe(() => log({ event: 'cancelled', id: request.id }, `cancelled ${request.id}`));
          const answer = exec === undefined ? of(data) : defer(() => runCommand(exec, data));
          return answer.pipe(
            tap({
              next: (value) =>
                log(
                  { event: 'response', id: request.id, ...dataFields(value) },
                  `response ${request.id} ${dataPreview(value)}`,
                ),
              error: (err: unknown) => {
                const e = errorReport(err);
                log(
                  { event: 'error', id: request.id, code: e.code, message: e.message },
                  `error ${request.id} ${e.code}: ${e.message}`,
                );
              },
            }),
          );
        }),
      )
      .subscribe({ error: (err: unknown) => (failure ??= err) });

    const ended = firstValueFrom(server.state$.pipe(filter((s) => s === 'closed')));
    const how = await Promise.race([stop.received, ended]);
    await server.close();
    stop.dispose();
    if (how === 'closed') {
      // Closed by itself: only a failure does that.
      throw failure ?? new Error(`channel ${name} closed unexpectedly`);
    }
    if (json) printJson({ event: 'closed', signal: how });
    else printStatus('serve', `${how}: closed ${name}`);
    return ExitCode.OK;
  },
};

/** ", connection 3" for a client of a server of many; nothing for the one client of a server of one. */
function idText(id: number): string {
  return id === 0 ? '' : `, connection ${id}`;
}
