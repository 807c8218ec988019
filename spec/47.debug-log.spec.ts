import * as path from 'node:path';

import { expect } from 'chai';

import { consumerEnv, describeResult, runCommand } from './helpers/commands';
import { shmExists, uniqueName } from './helpers/names';

const CHILD = path.join(__dirname, 'helpers', 'debug-log-child.js');

/** Runs the debug-log child (see helpers/debug-log-child.ts) with NODE_DEBUG set as given. */
async function runChild(nodeDebug: string | undefined) {
  const name = uniqueName('debuglog');
  const env = consumerEnv(nodeDebug === undefined ? {} : { NODE_DEBUG: nodeDebug });
  const result = await runCommand(process.execPath, [CHILD, name], { cwd: __dirname, env, timeoutMs: 20000 });
  expect(result.code, describeResult('debug-log child', result)).to.equal(0);
  expect(result.stdout.trim()).to.equal('done');
  expect(shmExists(name)).to.equal(false);
  return { name, stderr: result.stderr };
}

/** The lines util.debuglog('shmchannel') wrote: "SHMCHANNEL <pid>: <message>". */
function debugLines(stderr: string): string[] {
  return stderr.split('\n').filter((line) => /^SHMCHANNEL \d+: /.test(line));
}

describe('NODE_DEBUG=shmchannel', function () {
  it('should log the open of each end and the goodbye of the peer to stderr', async function () {
    const { name, stderr } = await runChild('shmchannel');
    const lines = debugLines(stderr);
    expect(
      lines.some((l) => l.includes(`server ${name} open`)),
      stderr,
    ).to.equal(true);
    expect(
      lines.some((l) => l.includes(`client ${name} open`)),
      stderr,
    ).to.equal(true);
    expect(
      lines.some((l) => l.includes(`server ${name}: peer said goodbye`)),
      stderr,
    ).to.equal(true);
  });

  it('should log when shmchannel is one of several NODE_DEBUG sections', async function () {
    const { stderr } = await runChild('net,shmchannel,http');
    expect(debugLines(stderr), stderr).to.have.length.above(0);
  });

  it('should print nothing without NODE_DEBUG', async function () {
    const { stderr } = await runChild(undefined);
    expect(stderr).to.equal('');
  });

  it('should print nothing when NODE_DEBUG names other sections only', async function () {
    const { stderr } = await runChild('net');
    expect(debugLines(stderr)).to.deep.equal([]);
  });
});
