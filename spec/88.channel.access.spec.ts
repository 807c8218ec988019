import { spawnSync } from 'node:child_process';

import { expect } from 'chai';

import { uniqueName } from './helpers/names';
import { Peer, PeerError } from './helpers/peer';
import { openChannel, releaseAll } from './helpers/resources';
import { reaches } from './helpers/wait';

const NOBODY = { uid: 65534, gid: 65534 };

// Needs root (to become another user) and setpriv (util-linux); CI runs as root.
const canSwitchUser = process.getuid?.() === 0 && spawnSync('setpriv', ['--version']).status === 0;

describe('Access to a channel by another user', function () {
  before(function () {
    if (!canSwitchUser) this.skip();
  });
  afterEach(releaseAll);

  it('should refuse a client of another uid on a default (0600) channel with EACCES', async function () {
    const name = uniqueName('access');
    await openChannel(name, 'server');
    const stranger = Peer.start({ name, mode: 'client', runAs: NOBODY, options: { connectTimeout: 0 } });
    const err = await stranger.ready.then(
      () => expect.fail('a client of another user attached to a 0600 channel'),
      (e: unknown) => e as PeerError,
    );
    expect(err.code).to.equal('ERR_SHM_OPEN_FAILED');
    expect(err.errno).to.equal('EACCES');
    expect(err.message).to.match(/permission denied/i);
  });

  it('should let another uid in when the server widens the permissions', async function () {
    const name = uniqueName('access-wide');
    const server = await openChannel(name, 'server', { permissions: 0o666 });
    server.requests$.subscribe((req) => req.respond(`hello ${req.data.toString()}`));
    const stranger = await Peer.spawn({ name, mode: 'client', runAs: NOBODY });
    await reaches(server, 'connected');
    const result = await stranger.request({ text: 'nobody' });
    expect(result.values.map((v) => v.text)).to.deep.equal(['hello nobody']);
  });
});
