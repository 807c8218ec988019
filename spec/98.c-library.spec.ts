import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { expect } from 'chai';
import { firstValueFrom } from 'rxjs';

import { DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_RING_CAPACITY } from '../lib/channel-options';
import { describeResult, runCommand, type CommandResult } from './helpers/commands';
import { has, plainEnv } from './helpers/foreign-peers';
import { shmExists, uniqueName } from './helpers/names';
import { openChannel, releaseAll } from './helpers/resources';
import { reaches, recordStates } from './helpers/wait';

// The C library as a C user gets it (README "Using it from C"): `make -C native install
// PREFIX=...` (what `npm run build:c` runs, plus install), then a C program compiled with
// `cc prog.c $(pkg-config --cflags --libs shmchannel)`, and once more linked statically.
// pkg-config is optional: without it the flags are read from the installed shmchannel.pc.
// Skipped only where there is no C compiler or make.
//
// The commands and C programs run without the LD_PRELOAD of `npm run test:sanitize`: the
// library is not built sanitized here, and the sanitized side is the Node server in this process.

const repoRoot = path.resolve(__dirname, '..', '..');
const COMMAND_TIMEOUT_MS = 3 * 60 * 1000;

/** Cflags, then Libs (with Libs.private for a static link), read from a .pc file as pkg-config would. */
function pcFlags(pcFile: string, staticLink: boolean): string[] {
  const vars: Record<string, string> = {};
  const fields: Record<string, string> = {};
  const expand = (v: string): string => v.replace(/\$\{(\w+)\}/g, (_, k: string) => vars[k] ?? '');
  for (const line of readFileSync(pcFile, 'utf8').split('\n')) {
    const variable = /^(\w+)=(.*)$/.exec(line);
    const field = /^([\w.]+):\s*(.*)$/.exec(line);
    if (variable) vars[variable[1]] = expand(variable[2].trim());
    else if (field) fields[field[1]] = expand(field[2].trim());
  }
  const words = (s: string | undefined): string[] => (s ?? '').split(/\s+/).filter(Boolean);
  return [...words(fields.Cflags), ...words(fields.Libs), ...(staticLink ? words(fields['Libs.private']) : [])];
}

/** The enumerators of shmch_status, in order, from the header. */
function statusNames(): string[] {
  const header = readFileSync(path.join(repoRoot, 'native', 'core', 'shmchannel.h'), 'utf8');
  const body = /typedef enum shmch_status \{([^}]*)\}/.exec(header);
  if (!body) throw new Error('no shmch_status enum in shmchannel.h');
  return [...body[1].matchAll(/^\s*(SHMCH_\w+)/gm)].map((m) => m[1]);
}

// Written by the test: status names and NULL arguments, against the installed header and library.
const checkProgram = String.raw`#include <stdio.h>
#include <string.h>
#include "shmchannel.h"

static int failures = 0;
#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "line %d: %s\n", __LINE__, #cond); failures++; } } while (0)

int main(int argc, char** argv) {
  const char* name = argv[1];
  (void)argc;
  for (int s = SHMCH_OK; s <= SHMCH_E_TRUNCATED; s++) {
    printf("%s\n", shmch_status_string((shmch_status)s));
    const char* d = shmch_status_description((shmch_status)s);
    CHECK(d != NULL && d[0] != '\0');
  }
  CHECK(strcmp(shmch_status_string((shmch_status)999), "SHMCH_E_UNKNOWN") == 0);
  CHECK(strcmp(shmch_status_string((shmch_status)-1), "SHMCH_E_UNKNOWN") == 0);
  CHECK(shmch_status_description((shmch_status)999) != NULL);
  printf("defaults %u %u\n", SHMCH_DEFAULT_RING_CAPACITY, SHMCH_DEFAULT_MAX_MESSAGE_SIZE);

  shmch_options options = {SHMCH_MIN_RING_CAPACITY, 4096, 0600};
  shmch_channel* ch = (shmch_channel*)1;
  CHECK(shmch_validate_name(NULL, NULL) == SHMCH_E_INVALID_NAME);
  CHECK(shmch_create(NULL, &options, &ch, NULL) == SHMCH_E_INVALID_NAME && ch == NULL);
  CHECK(shmch_create(name, &options, NULL, NULL) == SHMCH_E_INVALID_ARG);
  CHECK(shmch_create(name, NULL, &ch, NULL) == SHMCH_E_INVALID_ARG && ch == NULL);
  CHECK(shmch_attach(name, NULL, NULL) == SHMCH_E_INVALID_ARG);
  CHECK(shmch_attach(NULL, &ch, NULL) == SHMCH_E_INVALID_NAME);
  CHECK(shmch_inspect(name, NULL, NULL) == SHMCH_E_INVALID_ARG);
  CHECK(shmch_unlink(NULL, NULL) == SHMCH_E_INVALID_NAME);

  uint8_t buf[8192];
  size_t n = 7;
  CHECK(shmch_write(NULL, SHMCH_NOTIFY, 0, 1, buf, 1) == SHMCH_E_INVALID_ARG);
  CHECK(shmch_write_frames(NULL, buf, 0, &n) == SHMCH_E_INVALID_ARG && n == 0);
  CHECK(shmch_read(NULL, buf, sizeof buf, &n) == SHMCH_E_INVALID_ARG);
  CHECK(shmch_read_announcing(NULL, buf, sizeof buf, 1, &n) == SHMCH_E_INVALID_ARG);
  CHECK(shmch_read_continuation(NULL, buf, 1, &n) == SHMCH_E_INVALID_ARG);
  CHECK(shmch_wait(NULL, 1000) == SHMCH_WAIT_TIMEOUT);
  shmch_wake(NULL);
  CHECK(shmch_watch_segment(NULL, 0) == -1);
  CHECK(shmch_check_segment(NULL) == 0);
  CHECK(shmch_peer_state(NULL) == SHMCH_PEER_NONE);
  CHECK(shmch_open_peer_fd(NULL) == -1);
  CHECK(shmch_accept_next(NULL) == SHMCH_E_INVALID_ARG);
  CHECK(shmch_drop_client(NULL) == SHMCH_E_INVALID_ARG);
  shmch_info info;
  memset(&info, 0xff, sizeof info);
  shmch_get_info(NULL, &info);
  CHECK(info.ring_capacity == 0 && info.peer_pid == 0);
  shmch_close(NULL);

  CHECK(shmch_shm_create(name, 1, 0600, NULL, NULL) == SHMCH_E_INVALID_ARG);
  CHECK(shmch_shm_open(name, NULL, NULL) == SHMCH_E_INVALID_ARG);
  CHECK(shmch_shm_data(NULL) == NULL && shmch_shm_size(NULL) == 0 && shmch_shm_truncated(NULL) == 0);
  shmch_shm_close(NULL);

  /* With a real channel: the NULL buffers and out-pointers. */
  CHECK(shmch_create(name, &options, &ch, NULL) == SHMCH_OK);
  if (ch != NULL) {
    CHECK(shmch_write(ch, SHMCH_NOTIFY, 0, 1, NULL, 1) == SHMCH_E_INVALID_ARG);
    CHECK(shmch_write_frames(ch, buf, 0, NULL) == SHMCH_E_INVALID_ARG);
    CHECK(shmch_read(ch, buf, sizeof buf, NULL) == SHMCH_E_INVALID_ARG);
    CHECK(shmch_read(ch, NULL, sizeof buf, &n) == SHMCH_E_INVALID_ARG);
    CHECK(shmch_read_announcing(ch, NULL, sizeof buf, 1, &n) == SHMCH_E_INVALID_ARG);
    CHECK(shmch_read_continuation(ch, NULL, 1, &n) == SHMCH_E_INVALID_ARG);
    CHECK(shmch_read(ch, buf, sizeof buf, &n) == SHMCH_OK && n == 0);
    shmch_get_info(ch, NULL);
    shmch_get_info(ch, &info);
    CHECK(info.ring_capacity == SHMCH_MIN_RING_CAPACITY);
    shmch_close(ch);
  }
  return failures == 0 ? 0 : 1;
}
`;

describe('the C library (make -C native install, pkg-config)', function () {
  this.timeout(COMMAND_TIMEOUT_MS);
  let work: string;
  let prefix: string;
  const pkgConfig = has('pkg-config');

  before(async function () {
    if (!has('cc') || !has('make')) {
      this.skip();
      return;
    }
    work = mkdtempSync(path.join(tmpdir(), 'shmch-c-'));
    prefix = path.join(work, 'prefix');
    const result = await runCommand(
      'make',
      ['-C', 'native', 'install', `PREFIX=${prefix}`, `OUT=${path.join(work, 'build')}`],
      { cwd: repoRoot, env: plainEnv(), timeoutMs: COMMAND_TIMEOUT_MS },
    );
    expect(result.code, describeResult('make install', result)).to.equal(0);
  });

  after(function () {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  afterEach(releaseAll);

  /** Compiles `source` against the installed library, as the README says, into `output`. */
  async function compile(source: string, output: string, link: 'shared' | 'static'): Promise<CommandResult> {
    const pcFile = path.join(prefix, 'lib', 'pkgconfig', 'shmchannel.pc');
    const env = plainEnv({ PKG_CONFIG_PATH: path.dirname(pcFile) });
    // A fully static program needs the C library's archive, which not every system installs;
    // without it the library's own archive is linked, the C library dynamically.
    const libc = spawnSync('cc', ['-print-file-name=libc.a'], { encoding: 'utf8' }).stdout.trim();
    const fullyStatic = link === 'static' && path.isAbsolute(libc) && existsSync(libc);
    if (link === 'static' && !fullyStatic) {
      const flags = pcFlags(pcFile, true).filter((f) => f !== '-lshmchannel');
      const archive = path.join(prefix, 'lib', 'libshmchannel.a');
      return runCommand('cc', [source, '-o', output, archive, ...flags], { cwd: work, env });
    }
    const staticArgs = link === 'static' ? ['-static'] : [];
    if (pkgConfig) {
      const pc = `$(pkg-config ${link === 'static' ? '--static ' : ''}--cflags --libs shmchannel)`;
      const line = `cc ${staticArgs.join(' ')} "$1" -o "$2" ${pc}`;
      return runCommand('sh', ['-c', line, 'sh', source, output], { cwd: work, env });
    }
    return runCommand('cc', [...staticArgs, source, '-o', output, ...pcFlags(pcFile, link === 'static')], {
      cwd: work,
      env,
    });
  }

  it('should install the static and shared libraries (with a soname), the header and shmchannel.pc', function () {
    for (const file of [
      'lib/libshmchannel.a',
      'lib/libshmchannel.so',
      'lib/libshmchannel.so.0',
      'include/shmchannel.h',
    ]) {
      expect(existsSync(path.join(prefix, file)), file).to.equal(true);
    }
    const pc = readFileSync(path.join(prefix, 'lib', 'pkgconfig', 'shmchannel.pc'), 'utf8');
    expect(pc).to.include(`prefix=${prefix}`);
    expect(pc).to.match(/^Libs: .*-lshmchannel/m);
    expect(pc).to.match(/^Libs\.private: .*-lstdc\+\+/m);
  });

  for (const link of ['shared', 'static'] as const) {
    it(`should let examples/c/notify.c (${link}) notify a Node server, which then sees the client leave`, async function () {
      const program = path.join(work, `notify-${link}`);
      const built = await compile(path.join(repoRoot, 'examples', 'c', 'notify.c'), program, link);
      expect(built.code, describeResult('cc', built)).to.equal(0);

      const name = uniqueName(`c-notify-${link}`);
      const server = await openChannel(name, 'server');
      const states = recordStates(server);
      const received = firstValueFrom(server.notifications$);
      // The shared build finds its library through LD_LIBRARY_PATH; the static one needs none.
      const env = plainEnv(link === 'shared' ? { LD_LIBRARY_PATH: path.join(prefix, 'lib') } : {});
      const run = await runCommand(program, [name, 'hello from', 'C ✓'], { cwd: work, env, timeoutMs: 30_000 });
      expect(run.code, describeResult('notify', run)).to.equal(0);
      expect((await received).toString()).to.equal('hello from C ✓');
      await reaches(server, 'open');
      expect(states).to.include.members(['connected', 'peer-lost']);
      expect(states.indexOf('connected')).to.be.below(states.lastIndexOf('open'));
    });
  }

  it('should name every status, and refuse NULL arguments with SHMCH_E_INVALID_ARG instead of crashing', async function () {
    const source = path.join(work, 'check.c');
    writeFileSync(source, checkProgram);
    const program = path.join(work, 'check');
    const built = await compile(source, program, 'shared');
    expect(built.code, describeResult('cc', built)).to.equal(0);
    const name = uniqueName('c-check');
    const run = await runCommand(program, [name], {
      cwd: work,
      env: plainEnv({ LD_LIBRARY_PATH: path.join(prefix, 'lib') }),
      timeoutMs: 30_000,
    });
    expect(run.code, describeResult('check', run)).to.equal(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines.slice(0, -1)).to.deep.equal(statusNames());
    expect(lines[lines.length - 1]).to.equal(`defaults ${DEFAULT_RING_CAPACITY} ${DEFAULT_MAX_MESSAGE_SIZE}`);
    expect(shmExists(name), 'the server channel unlinked its segment').to.equal(false);
  });
});
