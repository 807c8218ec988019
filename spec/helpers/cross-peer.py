"""A peer on the Python package (python/shmchannel), for spec 98e (cross-runtime).

Same command line and same lines as spec/helpers/cross-peer.c (see its comment), so that the
spec pairs any two runtimes the same way; run with PYTHONPATH=python and SHMCHANNEL_LIB set.
Where the C peer prints "peer-left", this one prints the ShmChannelError's code
(ERR_PEER_LOST); a remote error is printed as "error ERR_REMOTE CODE|MESSAGE", and a handler
cancelled by the peer prints "cancelled TEXT".
"""

import asyncio
import sys
from typing import AsyncIterator

from shmchannel import Channel, ShmChannelError


def fnv1a(data: bytes) -> str:
    h = 2166136261
    for byte in data:
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return f"{h:08x}"


def pattern(size: int) -> bytes:
    return bytes((i * 31 + 7) % 251 for i in range(size))


def say(*parts: object) -> None:
    print(*parts, flush=True)


class Refused(Exception):
    """A handler failure with a code, which the peer sees as ERR_REMOTE with remote_code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


async def stream(count: int) -> AsyncIterator[str]:
    for i in range(count):
        yield f"part {i}"


async def single(data: bytes) -> bytes:
    if data.startswith(b"fail:"):
        _, code, message = data.decode("utf-8").split(":", 2)
        raise Refused(code, message)
    if data.startswith(b"block"):
        text = data.decode("utf-8")
        say("blocking", text)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            say("cancelled", text)
            raise
    return data[::-1]


def handler(data: bytes):  # type: ignore[no-untyped-def]
    if data.startswith(b"stream:"):
        return stream(int(data[7:]))
    return single(data)


async def ask(ch: Channel) -> None:
    say("asked")
    try:
        await ch.request(b"block")
        say("ask answered")
    except ShmChannelError as err:
        say("ask error", err.code)


async def server(name: str, ring: int, clients: int) -> None:
    async with Channel(name, "server", ring_capacity=ring, max_message_size=1 << 20) as ch:
        ch.handle(handler)
        notes = ch.notifications()

        async def listen() -> None:
            async for note in notes:
                say("notify", len(note), fnv1a(note))
                if note == b"ask":
                    asyncio.ensure_future(ask(ch))
                else:
                    ch.notify(note[::-1])

        listener = asyncio.ensure_future(listen())
        say("ready")
        for _ in range(clients):
            # Watched before the client comes, so that one that comes and goes at once is seen.
            gone = asyncio.ensure_future(ch.wait_for_state("peer-lost"))
            await asyncio.sleep(0)
            await ch.wait_for_state("connected")
            say("hello")
            await gone
            say("bye")
        listener.cancel()


async def client(name: str, size: int) -> None:
    async with Channel(name, "client", connect_timeout=20) as ch:
        notes = ch.notifications()
        big = pattern(size)
        reply = await ch.request(big, timeout=60)
        say("reply", len(reply), fnv1a(reply))
        parts = [value.decode() async for value in ch.request_stream(b"stream:3", timeout=60)]
        say("stream " + "|".join(parts))
        try:
            await ch.request('fail:E_CROSS:refused "as asked" ✓', timeout=60)
            say("no error")
        except ShmChannelError as err:
            say(f"error {err.code} {err.remote_code}|{err.message}")
        ch.notify(big)
        note = await notes.__anext__()
        say("note", len(note), fnv1a(note))


async def client_pending(name: str) -> None:
    async with Channel(name, "client", connect_timeout=20) as ch:
        pending = asyncio.ensure_future(ch.request(b"block"))
        say("sent")
        try:
            await pending
            say("pending answered")
        except ShmChannelError as err:
            say("pending error", err.code)


async def client_hold(name: str) -> None:
    async with Channel(name, "client", connect_timeout=20) as ch:
        ch.handle(handler)
        ch.notify("ask")
        await asyncio.Event().wait()


async def client_leave(name: str) -> None:
    """Leaves a request_stream of "ticks" after two values, then asks "abc"."""
    async with Channel(name, "client", connect_timeout=20) as ch:
        values = []
        async for value in ch.request_stream(b"ticks", timeout=60):
            values.append(value.decode())
            if len(values) == 2:
                break
        say("left after " + "|".join(values))
        reply = await ch.request(b"abc", timeout=60)
        say("reply", reply.decode())


def main(argv: list) -> int:
    if len(argv) == 4 and argv[0] == "server":
        asyncio.run(server(argv[1], int(argv[2]), int(argv[3])))
    elif len(argv) == 3 and argv[0] == "client":
        asyncio.run(client(argv[1], int(argv[2])))
    elif len(argv) == 2 and argv[0] in ("client-pending", "client-hold", "client-leave"):
        runs = {"client-pending": client_pending, "client-hold": client_hold, "client-leave": client_leave}
        asyncio.run(runs[argv[0]](argv[1]))
    else:
        print("usage: cross-peer.py server /name RING CLIENTS | client /name SIZE | client-pending /name |"
              " client-hold /name | client-leave /name", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
