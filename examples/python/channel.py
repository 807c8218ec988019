#!/usr/bin/env python3
"""The example of the 2017 library, in Python, on the shmchannel package. It talks to its
twins examples/channel.ts and examples/c/channel.c, either way round. Run the server, then the
client, in two terminals (from the repository, after `npm run build:c`):

    PYTHONPATH=python python3 examples/python/channel.py server "Message from server."
    PYTHONPATH=python python3 examples/python/channel.py client "Message from client."

Each side answers the other's requests ('server got "..."'), sends one request and one
notification with its message, prints everything it receives, and exits when the exchange is
over: the client once it has its reply and the server's notification, the server once its
client has left. An optional third argument names the channel (default /shmchannel-example).
Exit status 0 when the exchange went through, 1 on a failure, 2 for a usage error, 130 on
SIGINT or SIGTERM (the channel is closed first, so no segment is left in /dev/shm).
"""

import asyncio
import signal
import sys

from shmchannel import Channel, ShmChannelError


async def run(mode: str, message: str, name: str) -> int:
    peer = "client" if mode == "server" else "server"
    channel = Channel(name, mode, connect_timeout=10)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)

    async def answer(data: bytes) -> str:
        text = data.decode("utf-8", "replace")
        print(f'request from {peer}: "{text}"', flush=True)
        return f'{mode} got "{text}"'

    async def listen(notes) -> None:
        async for note in notes:
            print(f'notification from {peer}: "{note.decode("utf-8", "replace")}"', flush=True)

    async def exchange() -> None:
        # The request goes out first: its task hands it to the channel in its first step, which
        # sleep(0) lets run before notify() queues the notification behind it.
        reply = asyncio.ensure_future(channel.request(message, timeout=5))
        await asyncio.sleep(0)
        channel.notify(message)
        print(f"reply from {peer}: {(await reply).decode('utf-8', 'replace')}", flush=True)

    async def server() -> None:
        # Watched from the start, so that a client that comes and goes at once is still seen.
        gone = asyncio.ensure_future(channel.wait_for_state("peer-lost"))
        try:
            print(f"listening on {name}; start the client now", flush=True)
            await channel.wait_for_state("connected")
            print("client connected", flush=True)
            await exchange()
            await gone
            print("client disconnected", flush=True)
        finally:
            gone.cancel()

    # Subscribed before open(): the server may notify as soon as we are there.
    notes = channel.notifications()

    async def client() -> None:
        # The server sends its request before its notification: once the notification is here,
        # its request has been answered, and we can leave.
        await exchange()
        async for note in notes:
            print(f'notification from {peer}: "{note.decode("utf-8", "replace")}"', flush=True)
            return
        raise ShmChannelError("ERR_PEER_LOST", "the server left before its notification")

    # Before open(): a request that arrives with no handler is answered ERR_NO_HANDLER.
    channel.handle(answer)
    try:
        await channel.open()
        if mode == "server":
            listener = asyncio.ensure_future(listen(notes))
        work = asyncio.ensure_future(server() if mode == "server" else client())
        stop = asyncio.ensure_future(stopping.wait())
        await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        if stopping.is_set():
            work.cancel()
            print("signal: closing", flush=True)
            return 130
        work.result()
        if mode == "server":
            listener.cancel()
        return 0
    except ShmChannelError as err:
        print(f"{mode} failed: {err.message} ({err.code})", file=sys.stderr, flush=True)
        return 1
    finally:
        await channel.close()


def main() -> int:
    args = sys.argv[1:]
    if len(args) not in (2, 3) or args[0] not in ("server", "client"):
        print('usage: channel.py server|client "message" [/channel-name]', file=sys.stderr)
        return 2
    name = args[2] if len(args) == 3 else "/shmchannel-example"
    return asyncio.run(run(args[0], args[1], name))


if __name__ == "__main__":
    sys.exit(main())
