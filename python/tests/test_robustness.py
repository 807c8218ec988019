"""What a channel survives: a peer that shrinks the segment, a close or a cancel during open(),
a fast sender against a slow reader, and options out of the core's range. Run from python/:
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
