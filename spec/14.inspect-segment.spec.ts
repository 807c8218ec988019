// inspectSegment: a channel segment's header read without attaching (what `shmchannel ls`
// shows, 96.cli.spec.ts): who owns it, whether they are alive, and its sizes.
import { writeFileSync } from 'node:fs';

import { expect } from 'chai';

import { inspectSegment, SharedMemory } from '../lib/index';
import { PROTOCOL_VERSION } from '../lib/protocol';
import { expectThrowsCode } from './helpers/expect-error';
import { shmExists, uniqueName } from './helpers/names';
import { Peer } from './helpers/peer';
import { openChannel, releaseAll, unlinkLater } from './helpers/resources';
import { Layout } from './helpers/segment-layout';
import { reaches } from './helpers/wait';

describe('inspectSegment()', function () {
  afterEach(releaseAll);

  it('should report a live server: its pid, alive, ring capacity, max message size, pool size, and no client', async function () {
    const name = uniqueName('inspect-live');
    const server = await Peer.spawn({
      name,
      mode: 'server',
      options: { ringCapacity: 65536, maxMessageSize: 4096, poolSize: 3 * 4096 },
    });
    expect(inspectSegment(name)).to.deep.equal({
      name,
      kind: 'directory',
      maxClients: 16,
      clients: [],
      connectionId: 0,
      protocolVersion: PROTOCOL_VERSION,
      ringCapacity: 65536,
      maxMessageSize: 4096,
      poolCapacity: 3 * 4096,
      serverPid: server.pid,
      serverAlive: true,
      clientPid: 0,
      clientAlive: false,
    });
  });

  it('should report the pid of an attached client, alive', async function () {
    const name = uniqueName('inspect-client');
    const server = await openChannel(name, 'server');
    const client = await Peer.spawn({ name, mode: 'client' });
    await reaches(server, 'connected');
    expect(inspectSegment(name)).to.include({
      serverPid: process.pid,
      serverAlive: true,
      clientPid: client.pid,
      clientAlive: true,
    });
  });

  it('should report the client slot free once the server has let a closed client go', async function () {
    const name = uniqueName('inspect-client-gone');
    const server = await openChannel(name, 'server');
    const client = await Peer.spawn({ name, mode: 'client' });
    await reaches(server, 'connected');
    await client.close();
    await reaches(server, 'open');
    expect(inspectSegment(name)).to.include({ serverAlive: true, clientPid: 0, clientAlive: false });
  });

  it("should report a SIGKILLed server's segment as not alive, with the dead server's pid", async function () {
    const name = uniqueName('inspect-dead');
    unlinkLater(name);
    const server = await Peer.spawn({ name, mode: 'server', options: { ringCapacity: 8192 } });
    const pid = server.pid;
    await server.kill('SIGKILL');
    expect(shmExists(name)).to.equal(true);
    expect(inspectSegment(name)).to.include({ serverPid: pid, serverAlive: false, ringCapacity: 8192 });
  });

  it('should read without attaching: a client still connects afterwards', async function () {
    const name = uniqueName('inspect-no-attach');
    const server = await openChannel(name, 'server');
    inspectSegment(name);
    inspectSegment(name);
    const client = await openChannel(name, 'client', { connectTimeout: 0 });
    await reaches(server, 'connected');
    expect(inspectSegment(name).clientPid).to.equal(process.pid);
    expect(client.isOpen).to.equal(true);
  });

  it('should refuse an object that is not a shmchannel segment with ERR_INCOMPATIBLE_SEGMENT', function () {
    const small = uniqueName('inspect-raw');
    unlinkLater(small);
    SharedMemory.create(small, 64).close(); // smaller than any segment header
    expect(expectThrowsCode(() => inspectSegment(small), 'ERR_INCOMPATIBLE_SEGMENT').message).to.match(
      /segment size out of range$/,
    );
    const foreign = uniqueName('inspect-foreign');
    unlinkLater(foreign);
    writeFileSync(`/dev/shm${foreign}`, Buffer.alloc(8192, 0x07), { mode: 0o600 });
    expect(expectThrowsCode(() => inspectSegment(foreign), 'ERR_INCOMPATIBLE_SEGMENT').message).to.match(
      /not a shmchannel segment \(bad magic\)$/,
    );
  });

  it('should refuse a segment of another protocol version with ERR_INCOMPATIBLE_SEGMENT', async function () {
    const name = uniqueName('inspect-version');
    unlinkLater(name);
    const server = await Peer.spawn({ name, mode: 'server', options: { ringCapacity: 8192 } });
    await server.kill('SIGKILL');
    const segment = SharedMemory.open(name);
    try {
      segment.buffer.writeUInt32LE(PROTOCOL_VERSION + 1, Layout.version);
    } finally {
      segment.close();
    }
    const err = expectThrowsCode(() => inspectSegment(name), 'ERR_INCOMPATIBLE_SEGMENT');
    // Both versions named: which one the segment speaks, which one this library does.
    expect(err.message).to.include(
      `protocol version ${PROTOCOL_VERSION + 1}, this library version ${PROTOCOL_VERSION}`,
    );
  });

  it('should fail with ERR_SHM_OPEN_FAILED and errno ENOENT for a name that does not exist', function () {
    const err = expectThrowsCode(() => inspectSegment(uniqueName('inspect-none')), 'ERR_SHM_OPEN_FAILED');
    expect(err).to.include({ errno: 'ENOENT', syscall: 'shm_open' });
  });

  it('should refuse an invalid name with ERR_INVALID_NAME', function () {
    for (const bad of ['no-slash', '/', '/a/b', '/.', '/..']) {
      expectThrowsCode(() => inspectSegment(bad), 'ERR_INVALID_NAME');
    }
  });
});
