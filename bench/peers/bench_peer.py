"""bench_peer: the Python side of the bench's "runtimes" scenario (bench/scenarios/runtimes.ts).

The same roles, arguments, lines and message format as bench/peers/bench-peer.c, over the
Python package (python/shmchannel, ctypes over libshmchannel.so), on asyncio:

  bench_peer.py echo   /name              server: answers every request with its own bytes
  bench_peer.py sink   /name              server: counts 64 B notifications
  bench_peer.py rt     /name WARMUP N     client: WARMUP, then N timed 64 B round trips
  bench_peer.py source /name N            client: N 64 B notifications, then the end marker

Lines on stdout: ``ready`` (a server listens), ``batch COUNT BAD LAST_NS`` (sink, per end
marker), ``rt P50_US P99_US`` (rt), ``sent T0_NS`` (source). A 64 B notification carries its
sequence number (u32, little-endian) in its first 4 bytes; one of any other size ends a batch.
Arrival times are time.monotonic_ns(): CLOCK_MONOTONIC, the clock of Node's
process.hrtime.bigint(). Run with PYTHONPATH=python (and SHMCHANNEL_LIB naming the library the
bench built). Servers run until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import struct
import sys
import time
from typing import List

from shmchannel import Channel, ShmChannelError

SIZE = 64
CONNECT_TIMEOUT = 10.0


def percentile(sorted_values: List[float], p: float) -> float:
    """Interpolates between the two nearest ranks, as percentileSorted() in bench/stats.ts."""
    n = len(sorted_values)
    if n == 1:
        return sorted_values[0]
    rank = p / 100 * (n - 1)
    lo = int(rank)
    hi = min(n - 1, lo + 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (rank - lo)


async def serve(name: str, echo: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Channel(name, "server") as ch:
        if echo:

            async def reply(data: bytes) -> bytes:
                return data

            ch.handle(reply)
            print("ready", flush=True)
            await stop.wait()
            return

        async def count() -> None:
            expected = bad = 0
            last = 0
            async for note in ch.notifications():
                if len(note) == SIZE:
                    last = time.monotonic_ns()
                    if struct.unpack_from("<I", note)[0] != expected:
                        bad += 1
                    expected += 1
                else:
                    print(f"batch {expected} {bad} {last}", flush=True)
                    expected = bad = 0

        counting = asyncio.ensure_future(count())
        print("ready", flush=True)
        await stop.wait()
        counting.cancel()


async def round_trips(name: str, warmup: int, n: int) -> int:
    payload = bytes((i * 7 + 1) & 0xFF for i in range(SIZE))
    lat: List[float] = []
    mismatches = 0
    async with Channel(name, "client", connect_timeout=CONNECT_TIMEOUT) as ch:
        for i in range(warmup + n):
            t0 = time.monotonic_ns()
            reply = await ch.request(payload)
            t1 = time.monotonic_ns()
            if reply != payload:
                mismatches += 1
            if i >= warmup:
                lat.append((t1 - t0) / 1e3)
    lat.sort()
    print(f"rt {percentile(lat, 50):.3f} {percentile(lat, 99):.3f}", flush=True)
    if mismatches:
        print(f"bench_peer: {mismatches} replies did not echo the request", file=sys.stderr)
    return 1 if mismatches else 0


async def notifications(name: str, n: int) -> None:
    payload = bytearray(b"\xa5" * SIZE)
    async with Channel(name, "client", connect_timeout=CONNECT_TIMEOUT, close_timeout=60.0) as ch:
        t0 = time.monotonic_ns()
        for i in range(n):
            struct.pack_into("<I", payload, 0, i)
            # notify() queues what does not fit in the ring; past the queue's bound it raises
            # ERR_QUEUE_FULL and sends nothing: wait for the queue to drain, and send again.
            while True:
                try:
                    ch.notify(bytes(payload))
                    break
                except ShmChannelError as err:
                    if err.code != "ERR_QUEUE_FULL":
                        raise
                    await ch.drained()
        ch.notify(b"E")
        await ch.drained()
    print(f"sent {t0}", flush=True)


def main(argv: List[str]) -> int:
    role = argv[1] if len(argv) > 1 else ""
    want = {"echo": 3, "sink": 3, "rt": 5, "source": 4}.get(role)
    if want is None or len(argv) != want:
        print("usage: bench_peer.py echo|sink /name | rt /name WARMUP N | source /name N", file=sys.stderr)
        return 2
    name = argv[2]
    if role in ("echo", "sink"):
        asyncio.run(serve(name, role == "echo"))
        return 0
    if role == "rt":
        return asyncio.run(round_trips(name, int(argv[3]), int(argv[4])))
    asyncio.run(notifications(name, int(argv[3])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
