"""What the Python package does as the Node package does: the bounded outgoing queue
(max_queued_bytes, ERR_QUEUE_FULL, drained()), cold request streams, and the error a handler
without a ``code`` sends. Run from python/: python3 -m unittest discover -s tests"""

import asyncio
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from shmchannel import Channel, ShmChannelError  # noqa: E402

_count = 0


def unique_name() -> str:
    global _count
    _count += 1
    return f"/shmch-pyparity-{os.getpid()}-{_count}"


def small_server(name: str, **options: object) -> Channel:
    """A server whose ring (4 KiB) and messages (4 KiB) are small, so its queue fills fast."""
    return Channel(name, "server", ring_capacity=4096, max_message_size=4096, **options)  # type: ignore[arg-type]


class QueueBoundTest(unittest.IsolatedAsyncioTestCase):
    async def test_default_bound_is_nodes(self) -> None:
        async with Channel(unique_name(), "server", ring_capacity=4096) as ch:
            self.assertEqual(ch.max_queued_bytes, max(64 << 20, ch.max_message_size + ch.ring_capacity))
        async with small_server(unique_name(), max_queued_bytes=10) as ch:
            self.assertEqual(ch.max_queued_bytes, 4096)  # never less than a whole message

    async def test_invalid_bound(self) -> None:
        for bad in (-1, 1.5, "x", True):
            with self.assertRaises(ShmChannelError) as caught:
                Channel("/x", "server", max_queued_bytes=bad)  # type: ignore[arg-type]
            self.assertEqual(caught.exception.code, "ERR_INVALID_SIZE")

    async def test_queue_full_then_drained_once_a_client_reads(self) -> None:
        name = unique_name()
        async with small_server(name, max_queued_bytes=8192) as server:
            # No client: the ring (4 KiB) fills, then the queue up to 8 KiB, then refusals.
            sent = 0
            with self.assertRaises(ShmChannelError) as caught:
                for _ in range(100):
                    server.notify(bytes([sent % 256]) * 1000)
                    sent += 1
                    await asyncio.sleep(0.01)
            self.assertEqual(caught.exception.code, "ERR_QUEUE_FULL")
            self.assertGreaterEqual(sent, 8)  # what the ring took and 8 KiB queued
            self.assertLessEqual(sent, 14)
            self.assertGreater(server.queued_bytes, 7000)
            # A request is refused the same way, and sends nothing.
            with self.assertRaises(ShmChannelError) as caught:
                await server.request(b"y" * 1000, timeout=1)
            self.assertIn(caught.exception.code, ("ERR_QUEUE_FULL", "ERR_PEER_LOST"))

            async with Channel(name, "client", connect_timeout=2) as client:
                notes = client.notifications()
                await asyncio.wait_for(server.drained(), 5)
                self.assertEqual(server.queued_bytes, 0)
                server.notify(b"end")
                got = []
                async for note in notes:
                    got.append(note)
                    if note == b"end":
                        break
                # What the ring held before the client came is the client's too (as in Node).
                self.assertEqual(got[-1], b"end")
                self.assertEqual([n[0] for n in got[:-1]], sorted(n[0] for n in got[:-1]))

    async def test_drained_at_once_when_nothing_waits(self) -> None:
        async with Channel(unique_name(), "server") as server:
            await asyncio.wait_for(server.drained(), 1)

    async def test_drained_before_open_and_on_close(self) -> None:
        server = small_server(unique_name(), close_timeout=0.1)
        with self.assertRaises(ShmChannelError) as caught:
            await server.drained()
        self.assertEqual(caught.exception.code, "ERR_CHANNEL_CLOSED")
        await server.open()
        for _ in range(8):
            server.notify(b"z" * 1000)
        waiting = asyncio.ensure_future(server.drained())
        await asyncio.sleep(0.1)
        self.assertFalse(waiting.done())
        await server.close()
        with self.assertRaises(ShmChannelError) as caught:
            await asyncio.wait_for(waiting, 5)
        self.assertEqual(caught.exception.code, "ERR_CHANNEL_CLOSED")


class ServedTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.name = unique_name()
        self.server = Channel(self.name, "server")
        await self.server.open()
        self.client = Channel(self.name, "client", connect_timeout=2)
        await self.client.open()
        await asyncio.wait_for(self.server.wait_for_state("connected"), 5)

    async def asyncTearDown(self) -> None:
        await self.client.close()
        await self.server.close()

    async def test_request_stream_is_cold(self) -> None:
        seen = []

        async def count(data: bytes):
            seen.append(data)
            yield data

        self.server.handle(count)
        never = self.client.request_stream(b"never")
        never.cancel()
        stream = self.client.request_stream(b"later")
        await asyncio.sleep(0.2)
        self.assertEqual(seen, [])
        self.assertEqual([v async for v in stream], [b"later"])
        self.assertEqual(seen, [b"later"])
        self.assertEqual([v async for v in never], [])

    async def test_handler_error_without_a_code(self) -> None:
        class Coded(Exception):
            code = 42  # not a str: no code, as Node's encodeRemoteError

        async def fail(data: bytes) -> bytes:
            if data == b"plain":
                raise ValueError("plain failure")
            raise Coded("numeric code")

        self.server.handle(fail)
        for data, message in ((b"plain", "plain failure"), (b"coded", "numeric code")):
            with self.assertRaises(ShmChannelError) as caught:
                await self.client.request(data, timeout=5)
            self.assertEqual(caught.exception.code, "ERR_REMOTE")
            self.assertIsNone(caught.exception.remote_code)
            self.assertEqual(caught.exception.message, message)


if __name__ == "__main__":
    unittest.main()
