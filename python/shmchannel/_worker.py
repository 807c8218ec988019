"""The thread that owns one endpoint.

An endpoint belongs to one thread (shmchannel_message.h): this thread opens it, makes every
call on it, blocks in shmch_endpoint_wait() between events, and closes it. The event loop
hands it work through a queue and shmch_endpoint_wake() (the one call allowed from another
thread); it hands the loop what arrived through loop.call_soon_threadsafe(). Nothing polls.

What arrived is bounded: the thread counts the bytes it handed the loop (``held``), the loop
gives them back (:meth:`EndpointThread.release`) as its consumers take them, and the thread
stops receiving while more than ``hold_limit`` are held. The core then copies nothing more out
of the ring, so the peer's writes wait there: the same backpressure as in Node.
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

# What a received message counts for against hold_limit besides its bytes (its Python objects).
MESSAGE_OVERHEAD = 64


def held_cost(data: bytes) -> int:
    """What one received message counts for against the hold limit."""
    return len(data) + MESSAGE_OVERHEAD


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
        self._channel_name = name.encode("utf-8")  # not _name: Thread.name is that
        self._role = role
        self._options = options
        self._on_open = on_open
        self._on_messages = on_messages
        self._on_ended = on_ended
        self._on_queued = on_queued
        self._core_queued = 0  # shmch_endpoint_queued() as last told to the loop
        self._wait_calls = 0  # waits of the paused branch, for the tests: it must sleep, not poll
        # Set once the endpoint is open, from the ring's size (see the module docstring).
        self.hold_limit = 1 << 20
        self._held = 0  # bytes handed to the loop and not given back (under _held_lock)
        self._held_lock = threading.Lock()
        # Set (to 1) to make a client's waiting shmch_endpoint_open() give up (SHMCH_E_CLOSED).
        self._abort_flag = ctypes.c_int(0)
        options.abort_flag = ctypes.pointer(self._abort_flag)
        self._finished = False  # run() is over (under _ep_lock)
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
        """Runs what is queued, then shmch_endpoint_close(ep, timeout_ms); `done(status)` on
        the loop once the thread is over (also when the open failed or was aborted). A client's
        open still waiting for its server gives up."""
        with self._ep_lock:
            self._close_timeout_ms = timeout_ms
            finished = self._finished
            if not finished:
                self._on_closed = done
        if finished:
            self._post(done, _native.E_CLOSED)
        self.abort()
        self._wake()

    def abort(self) -> None:
        """Makes a pending shmch_endpoint_open() give up (a plain store: the core reads it
        atomically); an endpoint already open closes at once (close timeout 0)."""
        self._abort_flag.value = 1
        with self._ep_lock:
            if self._close_timeout_ms is None:
                self._close_timeout_ms = 0
        self._wake()

    def release(self, size: int) -> None:
        """Gives back `size` held bytes (the loop's consumers took them); any thread."""
        with self._held_lock:
            paused = self._held >= self.hold_limit
            self._held -= size
            resume = paused and self._held < self.hold_limit
        if resume:
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
        closed = _native.E_CLOSED
        try:
            err = _native.Error()
            status = lib.shmch_endpoint_open(
                self._channel_name, self._role, ctypes.byref(self._options), ctypes.byref(ep), ctypes.byref(err)
            )
            if status != _native.OK:
                self._post(self._on_open, status, err, None)
                return
            info = _native.Info()
            lib.shmch_get_info(lib.shmch_endpoint_channel(ep), ctypes.byref(info))
            self.hold_limit = max(info.ring_capacity, 64 << 10)
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
        finally:
            with self._ep_lock:
                self._finished = True
                done, self._on_closed = self._on_closed, None
            if done is not None:
                self._post(done, closed)

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

    def _paused(self) -> bool:
        return self._held >= self.hold_limit  # an int read whole under the GIL

    def _receive_all(self, ep: int, msg: _native.Message) -> Optional[int]:
        """Hands the loop what is receivable, up to the hold limit; the status if the
        endpoint has ended."""
        batch: List[Received] = []
        cost = 0
        ended: Optional[int] = None
        while not self._paused():
            status = self._lib.shmch_endpoint_receive(ep, ctypes.byref(msg))
            if status != _native.OK:
                ended = status
                break
            if msg.kind == 0:
                break
            data = ctypes.string_at(msg.data, msg.size) if msg.size else b""
            batch.append((msg.kind, msg.id, data, _decode(msg.error_message), _decode(msg.error_code)))
            with self._held_lock:
                self._held += held_cost(data)
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
            if ended:
                # The client's endpoint is over and its wait would return at once: sleep on our
                # own event until the loop queues something or closes.
                self._event.wait()
                continue
            status = self._receive_all(ep, msg)
            if status is not None:
                ended = True
                self._post(self._on_ended, status)
                continue  # the commands queued meanwhile now fail at once
            self._report_queued(ep)
            if not self._paused():
                # Wakes for what arrives, room for a refused send, the queue emptying
                # (SHMCH_EV_DRAINED, for drained()), the peer leaving, or the loop.
                lib.shmch_endpoint_wait(ep, -1)
                continue
            # Paused: a message waiting to be received must not end the wait, or it would
            # return at once. With output queued, sleep in the core until it moves (the wait
            # writes what fits), the peer leaves, or the loop wakes us; else on our own event.
            if self._core_queued:
                bits = lib.shmch_endpoint_wait_for(ep, _native.EV_WRITABLE | _native.EV_DRAINED, -1)
                self._wait_calls += 1
                self._report_queued(ep)
                if bits & _native.EV_PEER_LEFT and self._core_queued:
                    # Nothing moves our output once the peer left: wait for the loop.
                    self._event.wait()
            else:
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
