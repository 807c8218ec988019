"""What a channel survives: a peer that shrinks the segment, a close or a cancel during open(),
a fast sender against a slow reader, and options out of the core's range. Run from python/:
python3 -m unittest discover -s tests"""

import asyncio
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from unittest import mock  # noqa: E402

import shmchannel.channel as channel_module  # noqa: E402
from shmchannel import Channel, ShmChannelError, _worker  # noqa: E402

_count = 0


def unique_name() -> str:
    global _count
    _count += 1
    return f"/shmch-pyrobust-{os.getpid()}-{_count}"


class TruncationTest(unittest.IsolatedAsyncioTestCase):
    async def test_a_shrunk_segment_fails_the_channel_not_the_process(self) -> None:
        name = unique_name()
        async with Channel(name, "server") as server:
            client = Channel(name, "client", connect_timeout=2)
            await client.open()
            try:
                await asyncio.wait_for(server.wait_for_state("connected"), 5)
                fd = os.open("/dev/shm" + name, os.O_RDWR)
                try:
                    os.ftruncate(fd, 0)  # what a hostile or buggy peer can do
                finally:
                    os.close(fd)
                # Without the SIGBUS guard, the first touch of the ring kills this process.
                with self.assertRaises(ShmChannelError) as caught:
                    await client.request(b"x", timeout=5)
                self.assertIn(caught.exception.code, ("ERR_PROTOCOL", "ERR_PEER_LOST", "ERR_CHANNEL_CLOSED"))
                await asyncio.wait_for(client.wait_for_state("closed"), 5)
                with self.assertRaises(ShmChannelError) as caught:
                    client.notify(b"y")
                self.assertEqual(caught.exception.code, "ERR_CHANNEL_CLOSED")
            finally:
                await client.close()


class OpenLifetimeTest(unittest.IsolatedAsyncioTestCase):
    async def test_close_before_the_open_completes_fails_the_open(self) -> None:
        name = unique_name()
        reported = threading.Event()

        class LateReport(_worker.EndpointThread):
            """Reports the open only once the test let it: close() comes first, for sure."""

            def _post(self, fn, *args):  # type: ignore[no-untyped-def]
                if fn is self._on_open:
                    reported.wait(5)
                super()._post(fn, *args)

        async with Channel(name, "server") as server:
            client = Channel(name, "client", connect_timeout=2)
            with mock.patch.object(channel_module, "EndpointThread", LateReport):
                opening = asyncio.ensure_future(client.open())
                await asyncio.sleep(0)  # its thread is attaching
                closing = asyncio.ensure_future(client.close())
                await asyncio.sleep(0.1)
                reported.set()
                await asyncio.wait_for(closing, 5)
            with self.assertRaises(ShmChannelError) as caught:
                await opening
            self.assertEqual(caught.exception.code, "ERR_CHANNEL_CLOSED")
            self.assertEqual(client.state, "closed")
            with self.assertRaises(ShmChannelError) as caught:
                client.notify(b"lost")
            self.assertEqual(caught.exception.code, "ERR_CHANNEL_CLOSED")
            with self.assertRaises(ShmChannelError) as caught:
                await client.request(b"lost", timeout=1)
            self.assertEqual(caught.exception.code, "ERR_CHANNEL_CLOSED")
            # The endpoint that did attach was closed: the server takes the next client.
            async with Channel(name, "client", connect_timeout=2) as again:
                await asyncio.wait_for(server.wait_for_state("connected"), 5)
                self.assertEqual(again.state, "connected")

    async def test_close_while_waiting_for_a_server_is_prompt(self) -> None:
        client = Channel(unique_name(), "client", connect_timeout=30)
        opening = asyncio.ensure_future(client.open())
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await asyncio.wait_for(client.close(), 2)
        with self.assertRaises(ShmChannelError) as caught:
            await opening
        self.assertEqual(caught.exception.code, "ERR_CHANNEL_CLOSED")
        self.assertLess(time.monotonic() - started, 1)

    async def test_a_cancelled_open_lets_go_and_may_be_tried_again(self) -> None:
        name = unique_name()
        client = Channel(name, "client", connect_timeout=30)
        with self.assertRaises(asyncio.TimeoutError):
            await asyncio.wait_for(client.open(), 0.2)
        self.assertEqual(client.state, "idle")
        self.assertFalse([t for t in threading.enumerate() if t.name == f"shmchannel {name}"])
        async with Channel(name, "server") as server:
            await asyncio.wait_for(client.open(), 5)  # not ERR_ALREADY_OPEN
            await asyncio.wait_for(server.wait_for_state("connected"), 5)
            await asyncio.wait_for(client.close(), 5)


class OpenAtShutdownTest(unittest.TestCase):
    def test_asyncio_run_ending_during_open_leaves_no_thread(self) -> None:
        name = unique_name()

        async def leave_it_opening() -> None:
            asyncio.ensure_future(Channel(name, "client", connect_timeout=30).open())
            await asyncio.sleep(0.1)

        asyncio.run(leave_it_opening())  # cancels the open at shutdown
        self.assertFalse([t for t in threading.enumerate() if t.name == f"shmchannel {name}"])

        async def serve_one() -> None:
            async with Channel(name, "server") as server:
                # Nothing attached late from the abandoned open: a new client gets the slot.
                async with Channel(name, "client", connect_timeout=2):
                    await asyncio.wait_for(server.wait_for_state("connected"), 5)

        asyncio.run(serve_one())


def small_server(name: str, **options: object) -> Channel:
    return Channel(name, "server", ring_capacity=4096, max_message_size=4096, **options)  # type: ignore[arg-type]


class BackpressureTest(unittest.IsolatedAsyncioTestCase):
    async def test_a_slow_reader_holds_back_the_sender(self) -> None:
        name = unique_name()
        async with small_server(name, max_queued_bytes=8192) as server:
            async with Channel(name, "client", connect_timeout=2) as client:
                await asyncio.wait_for(server.wait_for_state("connected"), 5)
                notes = client.notifications()  # subscribed, not read yet
                sent = 0
                with self.assertRaises(ShmChannelError) as caught:
                    for _ in range(3000):  # 3 MB if nothing held it back
                        server.notify(sent.to_bytes(4, "big") * 250)
                        sent += 1
                        await asyncio.sleep(0.001)
                self.assertEqual(caught.exception.code, "ERR_QUEUE_FULL")
                # What the reader may hold (a ring, 64 KiB at least), the ring, the queue.
                self.assertLess(sent, 200)
                for i in range(sent):
                    self.assertEqual(await asyncio.wait_for(notes.__anext__(), 5), i.to_bytes(4, "big") * 250)
                await asyncio.wait_for(server.drained(), 5)

    async def test_a_streaming_handler_waits_for_its_queue(self) -> None:
        name = unique_name()
        peak = 0
        async with small_server(name, max_queued_bytes=8192) as server:

            async def flood(data: bytes):
                nonlocal peak
                while True:
                    yield b"v" * 1000
                    peak = max(peak, server.queued_bytes)
                    await asyncio.sleep(0)

            server.handle(flood)
            async with Channel(name, "client", connect_timeout=2) as client:
                stream = client.request_stream(b"")
                async with stream:
                    async for _ in stream:
                        await asyncio.sleep(0.3)  # a slow reader
                        break
                self.assertGreater(peak, 0)
                self.assertLessEqual(peak, 8192 + 1000)


    async def test_a_paused_receiver_with_output_queued_sleeps_until_it_moves(self) -> None:
        name = unique_name()
        note = b"n" * 1000
        async with small_server(name) as server:
            async with Channel(name, "client", connect_timeout=2) as client:
                await asyncio.wait_for(server.wait_for_state("connected"), 5)
                to_client = client.notifications()  # subscribed, not read: the client pauses
                to_server = server.notifications()  # the same on the server
                for _ in range(150):
                    server.notify(note)
                    client.notify(note)
                await asyncio.sleep(0.3)  # both pause, each with output the other does not take
                assert client._thread is not None
                self.assertGreater(client.queued_bytes, 0)
                before = client._thread._wait_calls
                await asyncio.sleep(0.3)
                # Asleep in the core until its output moves: no 10 ms polling (that made ~30).
                self.assertLessEqual(client._thread._wait_calls - before, 3)
                for _ in range(150):
                    self.assertEqual(await asyncio.wait_for(to_server.__anext__(), 5), note)
                    self.assertEqual(await asyncio.wait_for(to_client.__anext__(), 5), note)
                await asyncio.wait_for(client.drained(), 5)
                await asyncio.wait_for(server.drained(), 5)


class RequestStreamTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.name = unique_name()
        self.server = Channel(self.name, "server")
        await self.server.open()
        self.client = Channel(self.name, "client", connect_timeout=2)
        await self.client.open()
        self.started = 0
        self.stopped = asyncio.get_running_loop().create_future()

        async def forever(data: bytes):
            self.started += 1
            try:
                i = 0
                while True:
                    yield str(i)
                    i += 1
                    await asyncio.sleep(0.01)
            finally:
                if not self.stopped.done():
                    self.stopped.set_result(True)

        self.server.handle(forever)

    async def asyncTearDown(self) -> None:
        await self.client.close()
        await self.server.close()

    async def test_cold_until_iterated(self) -> None:
        stream = self.client.request_stream(b"")
        await asyncio.sleep(0.2)
        self.assertEqual(self.started, 0)
        async with stream:
            self.assertEqual(await stream.__anext__(), b"0")
        self.assertEqual(self.started, 1)
        self.assertTrue(await asyncio.wait_for(self.stopped, 2))

    async def test_break_out_of_a_temporary_stream_cancels_at_once(self) -> None:
        async for value in self.client.request_stream(b""):
            if value == b"1":
                break
        self.assertTrue(await asyncio.wait_for(self.stopped, 1))

    async def test_the_cancel_goes_out_before_the_next_request(self) -> None:
        seen = []

        async def both(data: bytes):
            if data == b"abc":
                seen.append("abc")
                yield b"cba"
                return
            try:
                while True:
                    yield b"tick"
                    await asyncio.sleep(0.01)
            finally:
                seen.append("cancelled")

        self.server.handle(both)
        async for _ in self.client.request_stream(b"ticks"):
            break
        self.assertEqual(await self.client.request(b"abc", timeout=5), b"cba")
        await asyncio.sleep(0.1)
        self.assertEqual(seen, ["cancelled", "abc"])

    async def test_async_with_closes_a_stream_kept_in_a_variable(self) -> None:
        async with self.client.request_stream(b"") as stream:
            async for value in stream:
                if value == b"1":
                    break
            self.assertFalse(self.stopped.done())  # still referenced: not finalized
        self.assertTrue(await asyncio.wait_for(self.stopped, 1))

    @unittest.skipIf(sys.version_info < (3, 10), "contextlib.aclosing is 3.10+")
    async def test_aclosing(self) -> None:
        import contextlib

        async with contextlib.aclosing(self.client.request_stream(b"")) as stream:  # type: ignore[attr-defined]
            async for value in stream:
                break
        self.assertTrue(await asyncio.wait_for(self.stopped, 1))


class OptionRangeTest(unittest.TestCase):
    def test_timeouts_past_the_cores_int_are_refused(self) -> None:
        # 2**31 ms and more wrapped to a negative int: no limit at all.
        for option in ("connect_timeout", "close_timeout", "request_timeout"):
            for bad in (2**31 / 1000, 1e12, -1, float("nan"), float("inf")):
                with self.assertRaises(ShmChannelError, msg=f"{option}={bad}") as caught:
                    Channel("/x", "client", **{option: bad})
                self.assertEqual(caught.exception.code, "ERR_INVALID_ARG_VALUE")
            with self.assertRaises(ShmChannelError) as caught:
                Channel("/x", "client", **{option: "5"})
            self.assertEqual(caught.exception.code, "ERR_INVALID_ARG_TYPE")
        Channel("/x", "client", connect_timeout=(2**31 - 1) / 1000, close_timeout=0)
        Channel("/x", "client", connect_timeout=None)  # no limit, said so

    def test_sizes_past_uint32_are_refused(self) -> None:
        for option in ("ring_capacity", "max_message_size"):
            for bad in (2**32, -1):
                with self.assertRaises(ShmChannelError) as caught:
                    Channel("/x", "server", **{option: bad})
                self.assertEqual(caught.exception.code, "ERR_INVALID_SIZE")
        with self.assertRaises(ShmChannelError) as caught:
            Channel("/x", "server", permissions=0o1777)
        self.assertEqual(caught.exception.code, "ERR_INVALID_ARG_VALUE")


if __name__ == "__main__":
    unittest.main()
