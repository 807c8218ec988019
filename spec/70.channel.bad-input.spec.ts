import { expect } from 'chai';
import { lastValueFrom, toArray } from 'rxjs';

import { Channel, type ChannelOptions, type Mode } from '../lib/index';
import { expectFailsCode, expectThrowsCode } from './helpers/expect-error';
import { NAME_PREFIX, shmExists, uniqueName } from './helpers/names';
import { Peer } from './helpers/peer';
import { channel, openChannel, releaseAll } from './helpers/resources';
import { reaches } from './helpers/wait';

// Values of the wrong type on purpose: the API must refuse them at run time.
const BAD_DATA: unknown[] = [42, { data: 'x' }, null, undefined, [1, 2], true];

/**
 * API.md says names are checked in the constructor but does not say when options are, so an
 * option may be refused by the constructor or by open(); either way nothing may be created.
 */
async function expectOptionRefused(mode: Mode, options: unknown, code: string): Promise<void> {
  const name = uniqueName('opt');
  await expectFailsCode(
    () => channel(name, mode, options as ChannelOptions),
    (ch) => ch.open(),
    code,
  );
  expect(shmExists(name), `segment created despite ${JSON.stringify(options)}`).to.equal(false);
}

describe('new Channel() with bad arguments', function () {
  afterEach(releaseAll);

  it('should refuse invalid names with ERR_INVALID_NAME', function () {
    const tooLong = `/${'x'.repeat(255)}`; // 256 bytes
    const tooLongInBytes = `/${'é'.repeat(128)}`; // 129 characters but 257 bytes
    for (const bad of ['no-slash', 'a/', '/a/b', '//', '', '/', '/.', '/..', tooLong, tooLongInBytes]) {
      for (const mode of ['server', 'client'] as const) {
        expectThrowsCode(() => new Channel(bad, mode), 'ERR_INVALID_NAME');
      }
    }
  });

  // API.md: the name is "checked in the constructor: ERR_INVALID_NAME"; a non-string is not a
  // POSIX shm name either, so we expect the same code rather than ERR_INVALID_ARG_TYPE.
  it('should refuse a name that is not a string with ERR_INVALID_NAME', function () {
    for (const bad of [42, undefined, null, {}]) {
      expectThrowsCode(() => new Channel(bad as string, 'server'), 'ERR_INVALID_NAME');
    }
  });

  it('should accept and open a name of exactly 255 bytes', async function () {
    const name = `${NAME_PREFIX}long-`.padEnd(255, 'x');
    expect(Buffer.byteLength(name)).to.equal(255);
    // One client: a server of many takes 251 bytes at most (its connections are <name>~<slot>).
    const server = await openChannel(name, 'server', { maxClients: 1 });
    expect(shmExists(name)).to.equal(true);
    await openChannel(name, 'client');
    await reaches(server, 'connected');
  });

  it('should refuse a mode other than server or client with ERR_INVALID_ARG_VALUE', function () {
    for (const bad of ['SERVER', 'Client', 'both', '', undefined, null, 1]) {
      expectThrowsCode(() => new Channel(uniqueName('mode'), bad as Mode), 'ERR_INVALID_ARG_VALUE');
    }
  });

  it('should refuse options that are not an object with ERR_INVALID_ARG_TYPE', async function () {
    for (const bad of [42, 'fast', true]) await expectOptionRefused('server', bad, 'ERR_INVALID_ARG_TYPE');
  });

  it('should refuse a ringCapacity that is not a power of two from 4 KiB to 1 GiB with ERR_INVALID_SIZE', async function () {
    for (const ringCapacity of [5000, 2048, 0, -4096, 2 ** 31, 4096.5, NaN]) {
      await expectOptionRefused('server', { ringCapacity }, 'ERR_INVALID_SIZE');
    }
  });

  it('should refuse a maxMessageSize outside 1 B … 1 GiB with ERR_INVALID_SIZE', async function () {
    for (const maxMessageSize of [0, -1, 2 ** 30 + 1, 1.5]) {
      await expectOptionRefused('server', { maxMessageSize }, 'ERR_INVALID_SIZE');
    }
  });

  it('should refuse bad permissions with ERR_INVALID_ARG_VALUE', async function () {
    for (const permissions of [-1, 0o1000, 1.5]) {
      await expectOptionRefused('server', { permissions }, 'ERR_INVALID_ARG_VALUE');
    }
  });

  it('should refuse a negative connectTimeout with ERR_INVALID_ARG_VALUE', async function () {
    for (const connectTimeout of [-1, NaN]) {
      await expectOptionRefused('client', { connectTimeout }, 'ERR_INVALID_ARG_VALUE');
    }
  });

  it('should refuse a negative requestTimeout with ERR_INVALID_ARG_VALUE', async function () {
    for (const requestTimeout of [-5, NaN]) {
      await expectOptionRefused('server', { requestTimeout }, 'ERR_INVALID_ARG_VALUE');
    }
  });

  // API.md keeps ERR_INVALID_SIZE for "ring capacity, message size or segment size"; a queue
  // bound is none of these, so it falls under "a bad mode or option value".
  it('should refuse a negative maxQueuedBytes with ERR_INVALID_SIZE (it is a size)', async function () {
    await expectOptionRefused('server', { maxQueuedBytes: -1 }, 'ERR_INVALID_SIZE');
  });

  it('should refuse options of the wrong type with ERR_INVALID_ARG_TYPE', async function () {
    await expectOptionRefused('server', { ringCapacity: '4096' }, 'ERR_INVALID_ARG_TYPE');
    await expectOptionRefused('server', { maxMessageSize: true }, 'ERR_INVALID_ARG_TYPE');
    await expectOptionRefused('server', { permissions: '600' }, 'ERR_INVALID_ARG_TYPE');
    await expectOptionRefused('client', { connectTimeout: '100' }, 'ERR_INVALID_ARG_TYPE');
  });
});

describe('Bad data', function () {
  afterEach(releaseAll);

  async function clientOfEchoPeer(): Promise<{ client: Channel; peer: Peer }> {
    const name = uniqueName('baddata');
    const peer = await Peer.spawn({ name, mode: 'server' });
    await peer.handle({ kind: 'echo' });
    const client = await openChannel(name, 'client');
    return { client, peer };
  }

  it('should make notify() throw ERR_INVALID_ARG_TYPE for data that is not Buffer, Uint8Array or string, and keep working', async function () {
    const { client, peer } = await clientOfEchoPeer();
    for (const bad of BAD_DATA) expectThrowsCode(() => client.notify(bad as string), 'ERR_INVALID_ARG_TYPE');
    client.notify('good');
    expect((await peer.collect(1)).map((r) => r.text)).to.deep.equal(['good']);
  });

  it('should make request() fail with ERR_INVALID_ARG_TYPE for bad data, send nothing, and keep working', async function () {
    const { client, peer } = await clientOfEchoPeer();
    for (const bad of BAD_DATA) {
      await expectFailsCode(
        () => client.request(bad as string),
        (r) => lastValueFrom(r),
        'ERR_INVALID_ARG_TYPE',
      );
    }
    const values = await lastValueFrom(client.request('good').pipe(toArray()));
    expect(values.map((v) => v.toString())).to.deep.equal(['good']);
    expect((await peer.stats()).texts).to.deep.equal(['good']);
  });

  it('should refuse a bad request timeout: ERR_INVALID_ARG_VALUE for a value, ERR_INVALID_ARG_TYPE for a type', async function () {
    const { client } = await clientOfEchoPeer();
    await expectFailsCode(
      () => client.request('x', { timeout: -1 }),
      (r) => lastValueFrom(r),
      'ERR_INVALID_ARG_VALUE',
    );
    await expectFailsCode(
      () => client.request('x', { timeout: 'soon' as unknown as number }),
      (r) => lastValueFrom(r),
      'ERR_INVALID_ARG_TYPE',
    );
  });

  it('should make respond() and next() throw ERR_INVALID_ARG_TYPE for bad data, leaving the request answerable', async function () {
    const name = uniqueName('badrespond');
    const server = await openChannel(name, 'server');
    const codes: (string | undefined)[] = [];
    server.requests$.subscribe((request) => {
      for (const bad of BAD_DATA) {
        for (const send of [() => request.respond(bad as string), () => request.next(bad as string)]) {
          try {
            send();
            codes.push(undefined);
          } catch (err) {
            codes.push((err as { code?: string }).code);
          }
        }
      }
      request.respond('ok');
    });
    const peer = await Peer.spawn({ name, mode: 'client' });
    const result = await peer.request({ text: 'hi' });
    expect(codes).to.deep.equal(Array(BAD_DATA.length * 2).fill('ERR_INVALID_ARG_TYPE'));
    expect(result.error).to.equal(undefined);
    expect(result.values.map((v) => v.text)).to.deep.equal(['ok']);
  });
});
