"""The Python package against itself, across two endpoints of this process and real /dev/shm
segments. Needs libshmchannel.so (npm run build:c, or SHMCHANNEL_LIB). Run from python/:
python3 -m unittest discover -s tests"""

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
    return f"/shmch-pytest-{os.getpid()}-{_count}"


class ChannelTest(unittest.IsolatedAsyncioTestCase):
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
        self.assertFalse(os.path.exists("/dev/shm" + self.name))

    async def test_request_single_value(self) -> None:
        async def echo(data: bytes) -> bytes:
            return b"got " + data

        self.server.handle(echo)
        self.assertEqual(await self.client.request("hi", timeout=5), b"got hi")

    async def test_request_from_server(self) -> None:
        async def echo(data: bytes) -> bytes:
            return data

        self.client.handle(echo)
        self.assertEqual(await self.server.request(b"back", timeout=5), b"back")

    async def test_streamed_response(self) -> None:
        async def count(data: bytes):
            for i in range(int(data)):
                yield str(i)

        self.server.handle(count)
        self.assertEqual([v async for v in self.client.request_stream(b"4")], [b"0", b"1", b"2", b"3"])

    async def test_leaving_a_stream_early_cancels_the_handler(self) -> None:
        stopped = asyncio.get_running_loop().create_future()

        async def forever(data: bytes):
            try:
                i = 0
                while True:
                    yield str(i)
                    i += 1
                    await asyncio.sleep(0.01)
            finally:
                stopped.set_result(True)

        self.server.handle(forever)
        async for value in self.client.request_stream(b""):
            if value == b"2":
                break
        self.assertTrue(await asyncio.wait_for(stopped, 5))

    async def test_remote_error_with_code(self) -> None:
        class Refused(Exception):
            code = "E_REFUSED"

        async def refuse(data: bytes) -> bytes:
            raise Refused("not today")

        self.server.handle(refuse)
        with self.assertRaises(ShmChannelError) as caught:
            await self.client.request(b"x", timeout=5)
        self.assertEqual(caught.exception.code, "ERR_REMOTE")
        self.assertEqual(caught.exception.remote_code, "E_REFUSED")
        self.assertEqual(caught.exception.message, "not today")

    async def test_no_handler(self) -> None:
        with self.assertRaises(ShmChannelError) as caught:
            await self.client.request(b"x", timeout=5)
        self.assertEqual(caught.exception.code, "ERR_NO_HANDLER")

    async def test_timeout_cancels_at_the_handler(self) -> None:
        cancelled = asyncio.get_running_loop().create_future()

        async def slow(data: bytes) -> bytes:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set_result(True)
                raise
            return b""

        self.server.handle(slow)
        with self.assertRaises(ShmChannelError) as caught:
            await self.client.request(b"x", timeout=0.2)
        self.assertEqual(caught.exception.code, "ERR_TIMEOUT")
        self.assertTrue(await asyncio.wait_for(cancelled, 5))

    async def test_notifications_both_ways(self) -> None:
        to_client = self.client.notifications()
        to_server = self.server.notifications()
        self.server.notify("down")
        self.client.notify(b"up")
        self.assertEqual(await asyncio.wait_for(to_client.__anext__(), 5), b"down")
        self.assertEqual(await asyncio.wait_for(to_server.__anext__(), 5), b"up")

    async def test_message_larger_than_the_ring(self) -> None:
        big = os.urandom(3 * self.server.ring_capacity + 12345)

        async def echo(data: bytes) -> bytes:
            return data

        self.server.handle(echo)
        self.assertEqual(await self.client.request(big, timeout=10), big)

    async def test_too_large(self) -> None:
        with self.assertRaises(ShmChannelError) as caught:
            self.client.notify(b"x" * (self.client.max_message_size + 1))
        self.assertEqual(caught.exception.code, "ERR_MESSAGE_TOO_LARGE")

    async def test_peer_lost_while_pending(self) -> None:
        async def slow(data: bytes) -> bytes:
            await asyncio.sleep(30)
            return b""

        self.server.handle(slow)
        pending = asyncio.ensure_future(self.server.request(b"x"))
        self.client.handle(slow)
        await asyncio.sleep(0.05)
        await self.client.close()
        with self.assertRaises(ShmChannelError) as caught:
            await asyncio.wait_for(pending, 5)
        self.assertEqual(caught.exception.code, "ERR_PEER_LOST")

    async def test_closed(self) -> None:
        await self.client.close()
        with self.assertRaises(ShmChannelError) as caught:
            self.client.notify(b"x")
        self.assertEqual(caught.exception.code, "ERR_CHANNEL_CLOSED")
        with self.assertRaises(ShmChannelError) as caught:
            await self.client.request(b"x")
        self.assertEqual(caught.exception.code, "ERR_CHANNEL_CLOSED")

    async def test_client_sees_server_leave(self) -> None:
        notes = self.client.notifications()
        await self.server.close()
        self.assertEqual([n async for n in notes], [])
        await asyncio.wait_for(self.client.wait_for_state("closed"), 5)

    async def test_second_client_after_the_first_left(self) -> None:
        async def echo(data: bytes) -> bytes:
            return data

        self.server.handle(echo)
        await self.client.close()
        await asyncio.wait_for(self.server.wait_for_state("open"), 5)
        self.client = Channel(self.name, "client", connect_timeout=2)
        await self.client.open()
        self.assertEqual(await self.client.request(b"again", timeout=5), b"again")


class OpenTest(unittest.IsolatedAsyncioTestCase):
    async def test_no_server_times_out(self) -> None:
        with self.assertRaises(ShmChannelError) as caught:
            await Channel(unique_name(), "client", connect_timeout=0.2).open()
        self.assertEqual(caught.exception.code, "ERR_TIMEOUT")

    async def test_no_server_at_once(self) -> None:
        with self.assertRaises(ShmChannelError) as caught:
            await Channel(unique_name(), "client", connect_timeout=0).open()
        self.assertEqual(caught.exception.code, "ERR_SHM_OPEN_FAILED")
        self.assertEqual(caught.exception.errno, "ENOENT")

    async def test_invalid_name_and_mode(self) -> None:
        with self.assertRaises(ShmChannelError) as caught:
            await Channel("no-slash", "server").open()
        self.assertEqual(caught.exception.code, "ERR_INVALID_NAME")
        with self.assertRaises(ShmChannelError) as caught:
            Channel("/x", "both")
        self.assertEqual(caught.exception.code, "ERR_INVALID_ARG_VALUE")

    async def test_second_server(self) -> None:
        name = unique_name()
        async with Channel(name, "server"):
            with self.assertRaises(ShmChannelError) as caught:
                await Channel(name, "server").open()
            self.assertEqual(caught.exception.code, "ERR_ALREADY_OPEN")
            self.assertEqual(caught.exception.owner_pid, os.getpid())


if __name__ == "__main__":
    unittest.main()
