import { createError, isShmChannelError } from '../errors';
import { inspectSegment, type SegmentInfo } from '../inspect-segment';
import { SharedMemory } from '../shared-memory';
import { channelName, COMMON_HELP, ExitCode, type Command } from './command';
import { printJson, printLine, reportError } from './output';

export const rm: Command = {
  name: 'rm',
  summary: 'remove a stale channel segment (refuses a live one)',
  operands: { min: 1, max: Infinity, names: ['NAME'] },
  options: {
    force: { type: 'boolean', short: 'f' },
  },
  help: `Usage: shmchannel rm NAME... [--force] [--json]

Removes the segment of each channel NAME (/NAME) from /dev/shm if its server is dead
(a 'stale' segment in 'shmchannel ls'). Refuses, with exit 1, a segment whose server is
alive (ERR_ALREADY_OPEN, naming its pid) and an entry that is not a shmchannel segment
(ERR_INCOMPATIBLE_SEGMENT). A missing name fails with ERR_SHM_OPEN_FAILED (ENOENT).
With several names, each is tried; the exit status is 1 if any failed.

Options:
  -f, --force           remove it anyway (a live server keeps its mapping, but no new
                        client can find it)
${COMMON_HELP}
                        (one {"removed":NAME, …} line per removed name)`,

  run(invocation) {
    const force = invocation.values.force === true;
    let status: number = ExitCode.OK;
    for (const operand of invocation.positionals) {
      const name = channelName(operand);
      try {
        const info = removeSegment(name, force);
        if (invocation.json) {
          printJson({
            removed: name,
            shmchannel: info !== undefined,
            serverPid: info?.serverPid ?? 0,
            serverAlive: info?.serverAlive ?? false,
            forced: force,
          });
        } else {
          const why =
            info === undefined
              ? 'not a shmchannel segment'
              : `server pid ${info.serverPid} ${info.serverAlive ? 'is alive' : 'is not running'}`;
          printLine(`removed ${name} (${why})`);
        }
      } catch (err) {
        status = reportError('rm', invocation.json, err);
      }
    }
    return Promise.resolve(status);
  },
};

/**
 * Unlinks `name` unless a live server owns it or it is not a shmchannel segment (unless
 * `force`). Returns what its header said, undefined for a non-shmchannel entry.
 */
export function removeSegment(name: string, force: boolean): SegmentInfo | undefined {
  let info: SegmentInfo | undefined;
  try {
    info = inspectSegment(name);
  } catch (err) {
    if (isShmChannelError(err, 'ERR_SHM_OPEN_FAILED') && err.errno === 'ENOENT') {
      throw createError('ERR_SHM_OPEN_FAILED', `${name} does not exist`, { errno: 'ENOENT' });
    }
    if (!force) {
      if (isShmChannelError(err, 'ERR_INCOMPATIBLE_SEGMENT')) {
        throw createError(
          'ERR_INCOMPATIBLE_SEGMENT',
          `${name} is not a shmchannel segment (${err.message}); not removed, --force removes it anyway`,
        );
      }
      throw err;
    }
  }
  if (info?.serverAlive === true && !force) {
    throw createError(
      'ERR_ALREADY_OPEN',
      `${name} belongs to the live server pid ${info.serverPid}; not removed (stop that server, or --force)`,
      { ownerPid: info.serverPid },
    );
  }
  SharedMemory.unlink(name);
  return info;
}
