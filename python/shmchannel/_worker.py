"""The thread that owns one endpoint.

An endpoint belongs to one thread (shmchannel_message.h): this thread opens it, makes every
call on it, blocks in shmch_endpoint_wait() between events, and closes it. The event loop
hands it work through a queue and shmch_endpoint_wake() (the one call allowed from another
thread); it hands the loop what arrived through loop.call_soon_threadsafe(). Nothing polls.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import threading
import time
from typing import Any, Callable, Deque, List, Optional, Tuple

from . import _native

# A received message, copied out of the endpoint: (kind, id, data, error_message, error_code).
Received = Tuple[int, int, bytes, Optional[str], Optional[str]]

# A unit of work: a function of the endpoint returning a result, and a callback for the result
# run on the event loop (or None). A function that returns _RETRY is tried again once the
# endpoint is writable (its send met SHMCH_E_FULL); everything after it waits, keeping order.
Command = Tuple[Callable[[int], Any], Optional[Callable[[Any], None]]]
RETRY = object()

# How often a wait looks at the core's outgoing queue while the loop awaits drained() and bytes
# are still queued in the core: its wait reports SHMCH_EV_WRITABLE only after a refused send,
# not when a queue that never refused anything empties (see the package README).
DRAIN_CHECK_MS = 10


def _decode(text: Optional[bytes]) -> Optional[str]:
    return None if text is None else text.decode("utf-8", "replace")


class EndpointThread(threading.Thread):
    """Runs one shmch_endpoint; see the module docstring."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        name: str,
        role: int,
        options: _native.EndpointOptions,
        on_open: Callable[[int, _native.Error, Optional[_native.Info]], None],
        on_messages: Callable[[List[Received]], None],
        on_ended: Callable[[int], None],
        on_queued: Callable[[int], None],
    ) -> None:
        super().__init__(name=f"shmchannel {name}", daemon=True)
        self._lib = _native.load()
        self._loop = loop
        self._name = name.encode("utf-8")
        self._role = role
        self._options = options
        self._on_open = on_open
        self._on_messages = on_messages
        self._on_ended = on_ended
        self._on_queued = on_queued
        self._core_queued = 0  # shmch_endpoint_queued() as last told to the loop
        # Set by the loop while drained() is awaited (a bool: written and read whole under the GIL).
        self.drain_wanted = False
        self._commands: Deque[Command] = collections.deque()
        self._event = threading.Event()  # wakes the thread once its endpoint has ended
        self._ep_lock = threading.Lock()  # guards _ep_for_wake against the free in close
        self._ep_for_wake: Optional[int] = None
        self._close_timeout_ms: Optional[int] = None
        self._on_closed: Optional[Callable[[int], None]] = None

    # -- called from the event loop -------------------------------------------------------

    def submit(self, fn: Callable[[int], Any], done: Optional[Callable[[Any], None]] = None) -> None:
        """Queues `fn(ep)` for this thread and wakes it."""
        self._commands.append((fn, done))
        self._wake()

    def close(self, timeout_ms: int, done: Callable[[int], None]) -> None:
        """Runs what is queued, then shmch_endpoint_close(ep, timeout_ms); `done(status)`."""
        self._on_closed = done
        self._close_timeout_ms = timeout_ms
        self._wake()

    def _wake(self) -> None:
        self._event.set()
        with self._ep_lock:
            if self._ep_for_wake is not None:
                self._lib.shmch_endpoint_wake(self._ep_for_wake)

    # -- this thread ------------------------------------------------------------------------

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the loop was closed under us: nobody is left to tell

    def run(self) -> None:
        lib = self._lib
        ep = ctypes.c_void_p()
        err = _native.Error()
        status = lib.shmch_endpoint_open(self._name, self._role, ctypes.byref(self._options), ctypes.byref(ep), ctypes.byref(err))
        if status != _native.OK:
            self._post(self._on_open, status, err, None)
            return
        info = _native.Info()
        lib.shmch_get_info(lib.shmch_endpoint_channel(ep), ctypes.byref(info))
        with self._ep_lock:
            self._ep_for_wake = ep.value
        self._post(self._on_open, status, err, info)
        try:
            self._serve(ep.value)
        finally:
            with self._ep_lock:
                self._ep_for_wake = None
            timeout = self._close_timeout_ms if self._close_timeout_ms is not None else 0
            closed = lib.shmch_endpoint_close(ep.value, timeout)
            if self._on_closed is not None:
                self._post(self._on_closed, closed)

    def _run_commands(self, ep: int) -> bool:
        """Runs queued commands in order; False if one must wait for room in the ring."""
        while self._commands:
            fn, done = self._commands[0]
            result = fn(ep)
            if result is RETRY:
                return False
            self._commands.popleft()
            # Before the result: the loop must never see the bytes leave its count before the
            # core's queue, which may have taken them, is counted (drained() would resolve early).
            self._report_queued(ep)
            if done is not None:
                self._post(done, result)
        return True

    def _receive_all(self, ep: int, msg: _native.Message) -> Optional[int]:
        """Hands the loop everything receivable; the status if the endpoint has ended."""
        batch: List[Received] = []
        ended: Optional[int] = None
        while True:
            status = self._lib.shmch_endpoint_receive(ep, ctypes.byref(msg))
            if status != _native.OK:
                ended = status
                break
            if msg.kind == 0:
                break
            data = ctypes.string_at(msg.data, msg.size) if msg.size else b""
            batch.append((msg.kind, msg.id, data, _decode(msg.error_message), _decode(msg.error_code)))
            if len(batch) >= 256:
                self._post(self._on_messages, batch)
                batch = []
        if batch:
            self._post(self._on_messages, batch)
        return ended

    def _serve(self, ep: int) -> None:
        lib = self._lib
        msg = _native.Message()
        ended = False
        while True:
            self._event.clear()
            drained = self._run_commands(ep)
            if self._close_timeout_ms is not None:
                if not drained and not ended:
                    self._flush_pending(ep)
                return
            if not ended:
                status = self._receive_all(ep, msg)
                if status is not None:
                    ended = True
                    self._post(self._on_ended, status)
                    continue  # the commands queued meanwhile now fail at once
                self._report_queued(ep)
                slice_ms = DRAIN_CHECK_MS if self.drain_wanted and self._core_queued else -1
                lib.shmch_endpoint_wait(ep, slice_ms)
            else:
                # The client's endpoint is over and its wait would return at once: sleep on our
                # own event until the loop queues something or closes.
                self._event.wait()

    def _report_queued(self, ep: int) -> None:
        """Tells the loop how many bytes the core holds in its queue, when that changed."""
        queued = self._lib.shmch_endpoint_queued(ep)
        if queued != self._core_queued:
            self._core_queued = queued
            self._post(self._on_queued, queued)

    def _flush_pending(self, ep: int) -> None:
        """On close: gives the commands still waiting for room close_timeout to go out."""
        assert self._close_timeout_ms is not None
        deadline = time.monotonic() + self._close_timeout_ms / 1000
        while True:
            left = int((deadline - time.monotonic()) * 1000)
            if left <= 0:
                return
            if self._lib.shmch_endpoint_flush(ep, left) not in (_native.OK, _native.E_FULL):
                return
            if self._run_commands(ep):
                return
