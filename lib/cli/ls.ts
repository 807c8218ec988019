import { readdirSync, statSync } from 'node:fs';

import { isShmChannelError } from '../errors';
import { inspectSegment, type ClientInfo, type SegmentKindName } from '../inspect-segment';
import { COMMON_HELP, ExitCode, type Command } from './command';
import { errorReport, printJson, printLine } from './output';

const SHM_DIR = '/dev/shm';

/** One /dev/shm entry as `ls` reports it. */
export type SegmentEntry =
  | {
      name: string;
      shmchannel: true;
      /** 'channel' (one client), 'directory' (a server of many), or a 'connection' whose directory is gone. */
      kind: SegmentKindName;
      /** 'alive': its server runs; 'stale': left by a dead server (`shmchannel rm` removes it). */
      status: 'alive' | 'stale';
      serverPid: number;
      serverAlive: boolean;
      /** 0 when no client is attached; a directory's first client. */
      clientPid: number;
      clientAlive: boolean;
      maxClients: number;
      /** Every client: a directory's taken slots, or a channel's attached client. */
      clients: ClientInfo[];
      ringCapacity: number;
      maxMessageSize: number;
      poolCapacity: number;
      protocolVersion: number;
      size: number;
    }
  | {
      name: string;
      shmchannel: false;
      /** Why it is not listed as a channel: ERR_INCOMPATIBLE_SEGMENT, or e.g. ERR_SHM_OPEN_FAILED (EACCES). */
      code: string;
      reason: string;
      size: number;
    };

/** Every regular file in /dev/shm, inspected without attaching, sorted by name. */
function listSegments(): SegmentEntry[] {
  const entries: SegmentEntry[] = [];
  for (const dirent of readdirSync(SHM_DIR, { withFileTypes: true })) {
    if (!dirent.isFile()) continue;
    const name = `/${dirent.name}`;
    let size = 0;
    try {
      size = statSync(`${SHM_DIR}${name}`).size;
    } catch {
      continue; // removed meanwhile
    }
    try {
      const info = inspectSegment(name);
      entries.push({
        name,
        shmchannel: true,
        kind: info.kind,
        status: info.serverAlive ? 'alive' : 'stale',
        serverPid: info.serverPid,
        serverAlive: info.serverAlive,
        clientPid: info.clientPid,
        clientAlive: info.clientAlive,
        maxClients: info.maxClients,
        clients: info.clients,
        ringCapacity: info.ringCapacity,
        maxMessageSize: info.maxMessageSize,
        poolCapacity: info.poolCapacity,
        protocolVersion: info.protocolVersion,
        size,
      });
    } catch (err) {
      if (isShmChannelError(err, 'ERR_SHM_OPEN_FAILED') && err.errno === 'ENOENT') continue; // removed meanwhile
      const { code, message } = errorReport(err);
      entries.push({ name, shmchannel: false, code, reason: message, size });
    }
  }
  return foldConnections(entries).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * A server of many clients' connections (`<name>~<slot>`) are shown as its clients, not as
 * entries of their own: only a connection whose directory is gone is listed by itself.
 */
function foldConnections(entries: SegmentEntry[]): SegmentEntry[] {
  const directories = new Set(entries.filter((e) => e.shmchannel && e.kind === 'directory').map((e) => e.name));
  return entries.filter((e) => {
    if (!e.shmchannel || e.kind !== 'connection') return true;
    const tilde = e.name.lastIndexOf('~');
    return tilde < 0 || !directories.has(e.name.slice(0, tilde));
  });
}

export const ls: Command = {
  name: 'ls',
  summary: 'list the channels in /dev/shm, with their server and client pids and whether they are alive',
  operands: { min: 0, max: 0, names: [] },
  options: {
    all: { type: 'boolean', short: 'a' },
  },
  help: `Usage: shmchannel ls [--all] [--json]

Lists the shmchannel segments in /dev/shm, read without attaching: name, server pid and
whether it is alive ('stale': its server died, e.g. by SIGKILL; 'shmchannel rm NAME'
removes it, and the next server on that name reclaims it), its clients' pids ('(dead)'
after one that died; a server of many clients lists each, and their connections NAME~SLOT
are not listed apart), ring capacity, loan pool.

Options:
  -a, --all             also list the other /dev/shm entries, marked as not shmchannel
                        (or unreadable, with the reason)
${COMMON_HELP}
                        (prints {"segments":[{name, shmchannel, kind, status, serverPid,
                        serverAlive, clientPid, clientAlive, maxClients,
                        clients:[{slot, pid, alive, connected, connectionId}],
                        ringCapacity, …}]})`,

  run(invocation) {
    const all = invocation.values.all === true;
    const segments = listSegments().filter((s) => all || s.shmchannel);
    if (invocation.json) {
      printJson({ segments });
      return Promise.resolve(ExitCode.OK);
    }
    const rows = [['NAME', 'SERVER', 'STATUS', 'CLIENTS', 'RING', 'POOL']];
    for (const s of segments) {
      if (s.shmchannel) {
        const client =
          s.clients.length === 0 ? '-' : s.clients.map((c) => `${c.pid}${c.alive ? '' : ' (dead)'}`).join(', ');
        const pool = s.poolCapacity === 0 ? '-' : formatBytes(s.poolCapacity);
        rows.push([s.name, String(s.serverPid), s.status, client, formatBytes(s.ringCapacity), pool]);
      } else {
        const what = s.code === 'ERR_INCOMPATIBLE_SEGMENT' ? 'not-shmchannel' : `unreadable (${s.code})`;
        rows.push([s.name, '-', what, '-', '-', '-']);
      }
    }
    if (rows.length === 1) {
      printLine(all ? `(${SHM_DIR} is empty)` : `(no shmchannel segments in ${SHM_DIR})`);
      return Promise.resolve(ExitCode.OK);
    }
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    for (const row of rows)
      printLine(
        row
          .map((cell, i) => cell.padEnd(widths[i]))
          .join('  ')
          .trimEnd(),
      );
    return Promise.resolve(ExitCode.OK);
  },
};

function formatBytes(bytes: number): string {
  if (bytes >= 1 << 30 && bytes % (1 << 30) === 0) return `${bytes / (1 << 30)} GiB`;
  if (bytes >= 1 << 20 && bytes % (1 << 20) === 0) return `${bytes / (1 << 20)} MiB`;
  if (bytes >= 1 << 10 && bytes % (1 << 10) === 0) return `${bytes / (1 << 10)} KiB`;
  return `${bytes} B`;
}
