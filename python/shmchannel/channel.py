"""Channel: one end of a shmchannel, for asyncio. Same semantics as the Node package's Channel."""

from __future__ import annotations

import asyncio
import collections
import ctypes
import inspect
from typing import (
    Any,
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Deque,
    Dict,
    List,
    Optional,
    Set,
    Tuple,
    Union,
)

from . import _native
from ._worker import RETRY, EndpointThread, Received, held_cost
from .errors import (
    ShmChannelError,
    closed_error,
    open_error,
    peer_lost_error,
    remote_error,
    status_error,
)

#: What may be sent: bytes-like, or a str (sent as UTF-8).
Data = Union[bytes, bytearray, memoryview, str]
#: A request handler: a coroutine function returning the single response (None: no value), or
#: an async generator function yielding a streamed response.
Handler = Callable[[bytes], Union[Awaitable[Optional[Data]], AsyncIterator[Data]]]

_STATES = ("idle", "open", "connected", "peer-lost", "closed")
# The default bound of the outgoing queue is never below this (Node's MIN_QUEUE_BOUND).
_MIN_QUEUE_BOUND = 64 << 20
# The longest timeout the core takes: an int of ms (a larger one would wrap to a negative value,
# which the core reads as no limit).
_MAX_TIMEOUT_S = (2**31 - 1) / 1000


def _seconds(name: str, value: Any, allow_none: bool = False) -> Optional[int]:
    """A timeout option in seconds, as the core's int of ms; ERR_INVALID_ARG_VALUE out of range."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ShmChannelError("ERR_INVALID_ARG_TYPE", f"{name} must be a number of seconds, not {value!r}")
    if not 0 <= value <= _MAX_TIMEOUT_S:  # NaN fails this too
        raise ShmChannelError(
            "ERR_INVALID_ARG_VALUE", f"{name} must be between 0 and {_MAX_TIMEOUT_S} seconds, not {value!r}"
        )
    return int(value * 1000)


def _whole(name: str, value: Any, low: int, high: int, code: str) -> int:
    """An integer option that the core takes as a C integer; `code` out of range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ShmChannelError("ERR_INVALID_ARG_TYPE", f"{name} must be an int, not {value!r}")
    if not low <= value <= high:
        raise ShmChannelError(code, f"{name} must be between {low} and {high}, not {value!r}")
    return value


def _to_bytes(data: Data) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise ShmChannelError(
        "ERR_INVALID_ARG_TYPE", f"data must be bytes, bytearray, memoryview or str, not {type(data).__name__}"
    )


class _Held:
    """Received bytes counted against the endpoint thread's hold limit, given back once every
    holder took (or dropped) them. Touches no event loop: safe from __del__ on any thread."""

    __slots__ = ("thread", "cost", "holders")

    def __init__(self, thread: Optional[EndpointThread], cost: int, holders: int) -> None:
        self.thread = thread
        self.cost = cost
        self.holders = holders

    def take(self) -> None:
        self.holders -= 1
        if self.holders <= 0 and self.thread is not None:
            thread, self.thread = self.thread, None
            thread.release(self.cost)


class _Pending:
    """A request of ours: its id once sent, and what arrived for it."""

    __slots__ = ("id", "queue", "finished", "timer")

    def __init__(self) -> None:
        self.id: Optional[int] = None
        self.queue: "asyncio.Queue[tuple]" = asyncio.Queue()
        self.finished = False
        self.timer: Optional[asyncio.TimerHandle] = None

    def drop_values(self) -> None:
        """Gives back the values nobody will read (the request ended or was given up)."""
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if item[0] == "value":
                item[2].take()


class RequestStream:
    """The response to one request, value by value: ``async for value in ch.request_stream(data)``.

    Cold, like the Node package's request(): nothing is sent until the iteration starts (the
    first ``__anext__``), and the timeout runs from then. Raises ShmChannelError as
    Channel.request() does.

    Leaving ``async for value in ch.request_stream(data)`` early (``break``, an exception)
    cancels the request at the peer's handler at once: under CPython the dropped stream sends
    CANCEL right there, on the loop's thread, before anything sent after the loop (elsewhere, or
    off the loop, the iteration's async generator is closed by asyncio on its loop, which cancels
    a little later). A stream kept in a variable lives as long as the variable: close it
    explicitly, with ``async with ch.request_stream(data) as stream: async for value in stream:
    ...``, ``contextlib.aclosing(...)`` (Python 3.10+), ``await stream.aclose()`` or ``cancel()``.
    """

    def __init__(self, channel: "Channel", pending: _Pending, payload: bytes, wait: Optional[float]) -> None:
        self._channel = channel
        self._pending = pending
        self._values = channel._stream_values(pending, payload, wait)

    def __aiter__(self) -> "RequestStream":
        return self

    def __anext__(self) -> Awaitable[bytes]:
        return self._values.__anext__()

    def __del__(self) -> None:
        # Only on the loop's own thread while it runs (a dropped temporary of `async for`):
        # then the CANCEL goes out before whatever the caller sends next. Anywhere else this
        # touches nothing; the generator, dropped with us, is closed by asyncio on its loop.
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return
        if running is self._channel._loop:
            self._channel._cancel(self._pending)

    async def __aenter__(self) -> "RequestStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def cancel(self) -> None:
        """Gives up the request (sends CANCEL if it is in flight; before the iteration started,
        nothing is ever sent). Call it on the loop's thread."""
        self._channel._cancel(self._pending)

    async def aclose(self) -> None:
        """Gives up the request, as cancel(), and ends the iteration."""
        self.cancel()
        await self._values.aclose()


class _Inbox:
    """One subscriber's notifications, apart from Notifications so that the channel's set of
    subscribers does not keep a dropped Notifications alive."""

    __slots__ = ("items", "waiter", "__weakref__")

    def __init__(self) -> None:
        self.items: Deque[Optional[Tuple[bytes, _Held]]] = collections.deque()
        self.waiter: Optional["asyncio.Future[None]"] = None

    def push(self, item: Optional[Tuple[bytes, _Held]]) -> None:
        """On the loop."""
        self.items.append(item)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def drop(self) -> None:
        """Gives back what nobody will read. Touches no loop (also run by __del__)."""
        while self.items:
            item = self.items.popleft()
            if item is not None:
                item[1].take()


class Notifications:
    """Notifications from the peer as they arrive, from the moment this object was made.

    ``async for note in ch.notifications()``; ends when the channel closes (or, on a client,
    when its server leaves). Leaving the loop early unsubscribes. What arrives waits here until
    it is read, and the channel receives nothing more (the peer's writes wait in the ring)
    while about a ring's worth is unread: read it, or ``aclose()`` a subscription you stopped
    reading.
    """

    def __init__(self, channel: "Channel") -> None:
        self._channel = channel
        self._inbox = _Inbox()
        self._ended = False
        channel._subscribers.add(self._inbox)
        if channel._ended_streams:
            self._inbox.push(None)

    def __aiter__(self) -> "Notifications":
        return self

    async def __anext__(self) -> bytes:
        inbox = self._inbox
        while True:
            if self._ended:
                raise StopAsyncIteration
            if inbox.items:
                item = inbox.items.popleft()
                if item is None:
                    self._stop()
                    raise StopAsyncIteration
                data, held = item
                held.take()
                return data
            inbox.waiter = asyncio.get_running_loop().create_future()
            try:
                await inbox.waiter
            finally:
                inbox.waiter = None

    def _stop(self) -> None:
        self._ended = True
        self._channel._subscribers.discard(self._inbox)
        self._inbox.drop()

    async def aclose(self) -> None:
        """Stops receiving."""
        self._stop()

    def __del__(self) -> None:
        self._stop()


class Channel:
    """One end of a channel over POSIX shared memory, driven by the C core.

    ``mode`` 'server' creates the segment (and serves one client after another); 'client'
    attaches, waiting up to ``connect_timeout`` seconds for the server (of one client, or of
    many clients, such as a Node server's default: then also for the connection that server
    makes it). Use it as
    ``async with Channel('/name', 'client') as ch: ...`` (open, then close), or call
    :meth:`open` and :meth:`close`.

    Options mirror the Node package's (seconds instead of ms): ``ring_capacity`` and
    ``max_message_size`` and ``permissions`` (server), ``connect_timeout`` (client, 0: one try,
    None: no limit), ``close_timeout`` (how long close() waits for queued messages), ``request_timeout`` (the
    default ``timeout`` of requests), ``max_queued_bytes`` (the bound of the outgoing queue used
    while the ring is full: default ``max_message_size + ring_capacity``, at least 64 MiB, and
    never less than ``max_message_size``; past it notify() and request() raise ERR_QUEUE_FULL
    and send nothing; :meth:`drained` waits for the queue to empty). Timeouts are at most
    2147483.647 s (the core's 32-bit ms): outside 0 .. that, ERR_INVALID_ARG_VALUE.
    """

    def __init__(
        self,
        name: str,
        mode: str,
        *,
        ring_capacity: int = 0,
        max_message_size: int = 0,
        permissions: int = 0o600,
        connect_timeout: Optional[float] = 5.0,
        close_timeout: float = 2.0,
        request_timeout: Optional[float] = None,
        max_queued_bytes: Optional[int] = None,
    ) -> None:
        if mode not in ("server", "client"):
            raise ShmChannelError("ERR_INVALID_ARG_VALUE", f"mode must be 'server' or 'client', not {mode!r}")
        if not isinstance(name, str):
            raise ShmChannelError("ERR_INVALID_ARG_TYPE", "name must be a str")
        if max_queued_bytes is not None and (
            not isinstance(max_queued_bytes, int) or isinstance(max_queued_bytes, bool) or max_queued_bytes < 0
        ):
            raise ShmChannelError("ERR_INVALID_SIZE", f"max_queued_bytes must be a whole number >= 0, not {max_queued_bytes!r}")
        self.name = name
        self.mode = mode
        self._max_queued_option = max_queued_bytes
        #: The bound of the outgoing queue in force (known once open).
        self.max_queued_bytes = 0
        self._waiting_bytes = 0  # handed to the endpoint's thread, not yet taken by the core
        self._core_queued = 0  # in the core's queue, as its thread last told
        self._drain_waiters: List["asyncio.Future[None]"] = []
        connect_ms = _seconds("connect_timeout", connect_timeout, allow_none=True)
        self._close_timeout_ms = _seconds("close_timeout", close_timeout)
        if request_timeout is not None:
            _seconds("request_timeout", request_timeout)
        self._options = _native.EndpointOptions(
            ring_capacity=_whole("ring_capacity", ring_capacity, 0, 2**32 - 1, "ERR_INVALID_SIZE"),
            max_message_size=_whole("max_message_size", max_message_size, 0, 2**32 - 1, "ERR_INVALID_SIZE"),
            mode=_whole("permissions", permissions, 0, 0o777, "ERR_INVALID_ARG_VALUE"),
            queue_limit=0,
            connect_timeout_ms=-1 if connect_ms is None else connect_ms,
        )
        self._connect_timeout = connect_timeout
        self._request_timeout = request_timeout
        self._state = "idle"
        self._state_waiters: List[tuple] = []
        self._thread: Optional[EndpointThread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._closing: Optional["asyncio.Future[None]"] = None
        self._ended_streams = False
        self._pending: Dict[int, _Pending] = {}
        self._unsent: Set[_Pending] = set()
        self._handler: Optional[Handler] = None
        self._serving: Dict[int, "asyncio.Task[None]"] = {}
        self._subscribers: Set[_Inbox] = set()
        self.max_message_size = 0
        self.ring_capacity = 0

    # -- lifetime ----------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """'idle', 'open' (a server without a client), 'connected', 'peer-lost' or 'closed'."""
        return self._state

    @property
    def is_open(self) -> bool:
        return self._state in ("open", "connected", "peer-lost")

    async def open(self) -> None:
        """Creates (server) or attaches to (client) the segment. Raises ShmChannelError:
        ERR_ALREADY_OPEN, ERR_CHANNEL_BUSY (another client, or every slot of a server of many
        taken), ERR_TIMEOUT (no server, or no connection made by a server of many, within
        connect_timeout), ERR_RESOURCE_LIMIT (a server of many could not make the connection),
        ERR_SHM_OPEN_FAILED, ERR_INVALID_NAME, ERR_INCOMPATIBLE_SEGMENT, ERR_CHANNEL_CLOSED
        (after close(), or close() called while it waited). Cancelling it (a task cancel,
        ``asyncio.wait_for``) gives up at once and leaves the channel idle: open() may be
        called again."""
        if self._closing is not None:
            raise closed_error("a channel is opened once: it was closed")
        if self._thread is not None:
            raise ShmChannelError("ERR_ALREADY_OPEN", "the channel is already open")
        loop = asyncio.get_running_loop()
        self._loop = loop
        opened: "asyncio.Future[None]" = loop.create_future()

        def on_open(status: int, err: _native.Error, info: Optional[_native.Info]) -> None:
            if opened.done():
                return  # open() was cancelled: its thread is aborted and joined
            if self._closing is not None:
                # close() came first: the state stays "closed"; the thread closes the endpoint.
                opened.set_exception(closed_error("the channel was closed while it was opening"))
                return
            if status != _native.OK or info is None:
                waited = self.mode == "client" and self._connect_timeout != 0
                opened.set_exception(open_error(status, err, waited))
                return
            self.max_message_size = info.max_message_size
            self.ring_capacity = info.ring_capacity
            bound = self._max_queued_option
            if bound is None:
                bound = max(_MIN_QUEUE_BOUND, info.max_message_size + info.ring_capacity)
            self.max_queued_bytes = max(bound, info.max_message_size)
            self._set_state("connected" if self.mode == "client" else "open")
            opened.set_result(None)

        self._thread = EndpointThread(
            loop,
            self.name,
            _native.SERVER if self.mode == "server" else _native.CLIENT,
            self._options,
            on_open,
            self._on_messages,
            self._on_ended,
            self._on_queued,
        )
        thread = self._thread
        thread.start()
        try:
            await opened
        except ShmChannelError:
            thread.join()
            if self._thread is thread:
                self._thread = None
            raise
        except asyncio.CancelledError:
            # A timeout (asyncio.wait_for) or a cancelled task: give up the open, and let
            # nothing attach later. The core sees the abort within ~10 ms; an endpoint that
            # opened meanwhile is closed at once. The channel is idle again.
            thread.abort()
            thread.join()
            if self._thread is thread:
                self._thread = None
            raise

    async def close(self) -> None:
        """Sends what is queued (up to close_timeout), says BYE, ends notification streams,
        fails pending requests with ERR_CHANNEL_CLOSED, cancels the handlers running, and
        (server) removes the segment. Idempotent."""
        if self._closing is None:
            loop = asyncio.get_running_loop()
            self._closing = loop.create_future()
            self._end_drain_waiters(closed_error("the channel was closed before its queue drained"))
            self._shut(closed_error("the channel was closed while the request was pending"))
            thread = self._thread
            if thread is None:
                self._closing.set_result(None)
            else:
                closing = self._closing

                def on_closed(status: int) -> None:
                    if not closing.done():
                        closing.set_result(None)

                thread.close(self._close_timeout_ms, on_closed)
            self._set_state("closed")
        await asyncio.shield(self._closing)
        if self._thread is not None:
            self._thread.join()

    async def __aenter__(self) -> "Channel":
        await self.open()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def wait_for_state(self, state: str) -> None:
        """Resolves the next time the channel reaches `state` (at once if it is there now).
        Raises ERR_CHANNEL_CLOSED if the channel closes first."""
        if state not in _STATES:
            raise ShmChannelError("ERR_INVALID_ARG_VALUE", f"no state {state!r}")
        if self._state == state:
            return
        if self._state == "closed":
            raise closed_error(f"the channel closed while waiting for {state!r}")
        future: "asyncio.Future[None]" = asyncio.get_running_loop().create_future()
        self._state_waiters.append((state, future))
        await future

    def _set_state(self, state: str) -> None:
        if state == self._state:
            return
        self._state = state
        waiters, self._state_waiters = self._state_waiters, []
        for wanted, future in waiters:
            if future.done():
                continue
            if wanted == state:
                future.set_result(None)
            elif state == "closed":
                future.set_exception(closed_error(f"the channel closed while waiting for {wanted!r}"))
            else:
                self._state_waiters.append((wanted, future))

    # -- sending -----------------------------------------------------------------------------

    def _check_send(self, data: Data) -> bytes:
        if self._state == "idle":
            raise closed_error("not open: call open() first")
        if self._state == "closed":
            raise closed_error()
        payload = _to_bytes(data)
        if len(payload) > self.max_message_size:
            raise ShmChannelError(
                "ERR_MESSAGE_TOO_LARGE", f"{len(payload)} bytes is more than max_message_size {self.max_message_size}"
            )
        return payload

    def _send(self, call: Callable[[int], int], what: str, size: int = 0) -> None:
        """Queues a send on the endpoint's thread; a refusal past E_FULL is retried, others dropped."""

        def run(ep: int) -> Any:
            status = call(ep)
            return RETRY if status == _native.E_FULL else status

        self._submit(run, size)

    def _submit(self, run: Callable[[int], Any], size: int, done: Optional[Callable[[Any], None]] = None) -> None:
        """Hands `run` to the endpoint's thread, counting `size` bytes as queued until it ran."""
        assert self._thread is not None
        self._waiting_bytes += size

        def ran(result: Any) -> None:
            self._waiting_bytes -= size
            if done is not None:
                done(result)
            self._check_drained()

        self._thread.submit(run, ran)

    def _reserve(self, size: int) -> None:
        """Raises ERR_QUEUE_FULL unless `size` more bytes may wait in the outgoing queue."""
        waiting = self.queued_bytes
        if waiting + size > self.max_queued_bytes:
            raise ShmChannelError(
                "ERR_QUEUE_FULL",
                f"{waiting} bytes wait in the outgoing queue, and {size} more would pass "
                f"max_queued_bytes ({self.max_queued_bytes})",
            )

    @property
    def queued_bytes(self) -> int:
        """Bytes sent but not yet in the ring (the outgoing queue): what max_queued_bytes bounds."""
        return self._waiting_bytes + self._core_queued

    async def drained(self) -> None:
        """Resolves once nothing waits in the outgoing queue (at once if nothing does): all sent
        so far is in the ring. Raises ERR_PEER_LOST if the peer leaves first, ERR_PROTOCOL if
        the channel fails, ERR_CHANNEL_CLOSED if it closes first (or is not open)."""
        if self._state == "idle":
            raise closed_error("not open: call open() first")
        if self._state == "closed":
            raise closed_error()
        if self.queued_bytes == 0:
            return
        assert self._loop is not None and self._thread is not None
        future: "asyncio.Future[None]" = self._loop.create_future()
        self._drain_waiters.append(future)
        await future

    def _on_queued(self, queued: int) -> None:
        self._core_queued = queued
        self._check_drained()

    def _check_drained(self) -> None:
        if self.queued_bytes == 0 and self._drain_waiters:
            self._end_drain_waiters(None)

    def _end_drain_waiters(self, err: Optional[ShmChannelError]) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for future in waiters:
            if future.done():
                continue
            if err is None:
                future.set_result(None)
            else:
                future.set_exception(err)

    def notify(self, data: Data) -> None:
        """Sends a notification. Raises ERR_CHANNEL_CLOSED (not open, closed, or a client whose
        server left), ERR_MESSAGE_TOO_LARGE, ERR_INVALID_ARG_TYPE, ERR_QUEUE_FULL (the outgoing
        queue is at max_queued_bytes: nothing was sent; retry after drained()). What does not
        fit in the ring now is queued and sent in order as the peer reads."""
        payload = self._check_send(data)
        self._reserve(len(payload))
        lib = _native.load()
        self._send(lambda ep: lib.shmch_endpoint_notify(ep, payload, len(payload)), "notify", len(payload))

    async def request(self, data: Data, timeout: Optional[float] = None) -> bytes:
        """Sends a request and returns its response: the last value the handler sent (b'' if
        it completed without one). ``timeout`` (seconds; default request_timeout) fails it
        with ERR_TIMEOUT and cancels it at the peer. Raises ShmChannelError: ERR_REMOTE (with
        ``remote_code``), ERR_NO_HANDLER, ERR_TIMEOUT, ERR_PEER_LOST, ERR_CHANNEL_CLOSED,
        ERR_MESSAGE_TOO_LARGE, ERR_QUEUE_FULL, ERR_PROTOCOL. Cancelling the awaiting task cancels
        the request."""
        last = b""
        async with self.request_stream(data, timeout=timeout) as stream:
            async for value in stream:
                last = value
        return last

    def request_stream(self, data: Data, timeout: Optional[float] = None) -> RequestStream:
        """A request and its streamed response (see RequestStream): sent when the iteration
        starts. Errors are raised by the iteration, as for request(); a wrong type of data or
        timeout at once."""
        payload = _to_bytes(data)
        wait = timeout if timeout is not None else self._request_timeout
        if wait is not None and wait <= 0:
            raise ShmChannelError("ERR_INVALID_ARG_VALUE", "timeout must be a positive number of seconds")
        return RequestStream(self, _Pending(), payload, wait)

    async def _stream_values(self, pending: _Pending, payload: bytes, wait: Optional[float]) -> AsyncGenerator[bytes, None]:
        """The iteration of a RequestStream. Its body runs at the first __anext__ (cold); its
        finally, however it ends (the end of the response, an error, aclose(), or asyncio
        finalizing a dropped generator on its loop), gives the request up."""
        try:
            if not pending.finished:
                self._start_request(pending, payload, wait)
            while True:
                if pending.finished and pending.queue.empty():
                    return
                item = await pending.queue.get()
                if item[0] == "value":
                    item[2].take()
                    yield item[1]
                    continue
                self._finish(pending)
                if item[0] == "complete":
                    return
                raise item[1]
        finally:
            self._cancel(pending)
            pending.drop_values()

    def _start_request(self, pending: _Pending, payload: bytes, wait: Optional[float]) -> None:
        try:
            self._check_send(payload)
            if self.mode == "server" and self._state != "connected":
                raise peer_lost_error("no client is connected")
            self._reserve(len(payload))
        except ShmChannelError as err:
            pending.finished = True
            pending.queue.put_nowait(("error", err))
            return
        assert self._thread is not None and self._loop is not None
        lib = _native.load()
        self._unsent.add(pending)
        if wait is not None:
            pending.timer = self._loop.call_later(wait, self._time_out, pending, wait)

        def run(ep: int) -> Any:
            rid = ctypes.c_uint32()
            status = lib.shmch_endpoint_request(ep, payload, len(payload), ctypes.byref(rid))
            return RETRY if status == _native.E_FULL else (status, rid.value)

        def sent(result: tuple) -> None:
            status, rid = result
            self._unsent.discard(pending)
            if status != _native.OK:
                self._fail(pending, self._send_error(status, "request"))
                return
            pending.id = rid
            if pending.finished:
                self._send_cancel(rid)  # given up before it was on the wire
            else:
                self._pending[rid] = pending

        self._submit(run, len(payload), sent)

    def _send_error(self, status: int, what: str) -> ShmChannelError:
        if status == _native.E_CLOSED:
            return peer_lost_error(f"{what}: the peer left") if self._state != "closed" else closed_error()
        return status_error(status, what)

    def _send_cancel(self, rid: int) -> None:
        if self._thread is None or self._closing is not None:
            return
        lib = _native.load()
        self._thread.submit(lambda ep: lib.shmch_endpoint_cancel(ep, rid))

    def _time_out(self, pending: _Pending, wait: float) -> None:
        pending.timer = None
        self._fail(pending, ShmChannelError("ERR_TIMEOUT", f"no response within {wait} s"))

    def _finish(self, pending: _Pending) -> None:
        """The request ended (its COMPLETE or ERROR was taken): forget it."""
        pending.finished = True
        if pending.timer is not None:
            pending.timer.cancel()
            pending.timer = None
        if pending.id is not None and self._pending.get(pending.id) is pending:
            del self._pending[pending.id]

    def _fail(self, pending: _Pending, err: ShmChannelError) -> None:
        """Ends a request here with `err` (timeout, peer lost, close), cancelling it at the peer."""
        if pending.finished:
            return
        in_flight = pending.id is not None and self._pending.get(pending.id) is pending
        self._finish(pending)
        pending.queue.put_nowait(("error", err))
        if in_flight and err.code in ("ERR_TIMEOUT",):
            self._send_cancel(pending.id)  # type: ignore[arg-type]

    def _cancel(self, pending: _Pending) -> None:
        """The caller gave up (left the loop early): CANCEL if it is in flight."""
        if pending.finished:
            return
        in_flight = pending.id is not None and self._pending.get(pending.id) is pending
        self._finish(pending)
        if in_flight:
            self._send_cancel(pending.id)  # type: ignore[arg-type]

    # -- receiving ---------------------------------------------------------------------------

    def notifications(self) -> Notifications:
        """Notifications from now on, as an async iterator (see Notifications)."""
        return Notifications(self)

    def handle(self, handler: Optional[Handler]) -> None:
        """Sets the request handler (None: none; the peer's requests then fail with
        ERR_NO_HANDLER). ``handler(data)`` is a coroutine function (its result is the single
        response; None completes without a value) or an async generator function (each value
        yielded is sent as it comes: a streamed response). An exception fails the request at
        the peer with ERR_REMOTE: its ``code`` attribute, if a str, becomes ``remote_code``,
        and str(exception) the message. When the peer cancels, the handler's task is cancelled."""
        self._handler = handler

    def _on_messages(self, batch: List[Received]) -> None:
        thread = self._thread
        unheld = 0  # held bytes of messages nobody keeps, given back at once
        for kind, rid, data, error_message, error_code in batch:
            cost = held_cost(data)
            if kind == _native.NOTIFY:
                subscribers = list(self._subscribers)
                if subscribers:
                    held = _Held(thread, cost, len(subscribers))
                    for inbox in subscribers:
                        inbox.push((data, held))
                    continue
            elif kind == _native.RESPONSE:
                pending = self._pending.get(rid)
                if pending is not None:
                    pending.queue.put_nowait(("value", data, _Held(thread, cost, 1)))
                    continue
            elif kind == _native.COMPLETE:
                pending = self._pending.pop(rid, None)
                if pending is not None:
                    pending.queue.put_nowait(("complete",))
            elif kind == _native.ERROR:
                pending = self._pending.pop(rid, None)
                if pending is not None:
                    pending.queue.put_nowait(("error", remote_error(error_message or "", error_code)))
            elif kind == _native.REQUEST:
                self._on_request(rid, data)
            elif kind == _native.CANCEL:
                task = self._serving.pop(rid, None)
                if task is not None:
                    task.cancel()
            elif kind == _native.HELLO:
                self._set_state("connected")
            elif kind == _native.BYE:
                self._on_peer_left()
            unheld += cost
        if unheld and thread is not None:
            thread.release(unheld)

    def _on_peer_left(self) -> None:
        self._shut(peer_lost_error(), end_streams=self.mode == "client")
        if self._state != "closed":
            self._set_state("peer-lost")
            if self.mode == "server":
                self._set_state("open")

    def _on_ended(self, status: int) -> None:
        """The endpoint is over (a client whose server left, or a failed channel)."""
        if status in (_native.E_PROTOCOL, _native.E_TRUNCATED):
            self._shut(status_error(status, "the channel failed"))
        else:
            self._shut(peer_lost_error())
        if self._state != "closed":
            self._set_state("closed")

    def _shut(self, err: ShmChannelError, end_streams: bool = True) -> None:
        """Fails every request in flight both ways and drained() waiters; ends notification
        streams if asked."""
        self._end_drain_waiters(err)
        for pending in list(self._pending.values()) + list(self._unsent):
            self._fail(pending, err)
        self._pending.clear()
        self._unsent.clear()
        for task in self._serving.values():
            task.cancel()
        self._serving.clear()
        if end_streams and not self._ended_streams:
            self._ended_streams = True
            for inbox in self._subscribers:
                inbox.push(None)

    def _on_request(self, rid: int, data: bytes) -> None:
        lib = _native.load()
        handler = self._handler
        if handler is None:
            message = b"no handler for requests on this channel"
            self._send(lambda ep: lib.shmch_endpoint_fail(ep, rid, b"ERR_NO_HANDLER", message), "fail")
            return
        assert self._loop is not None
        task = self._loop.create_task(self._serve_request(handler, rid, data))
        self._serving[rid] = task

    def _answer(self, rid: int, value: Data, *, last: bool) -> None:
        payload = _to_bytes(value)
        lib = _native.load()
        call = lib.shmch_endpoint_reply if last else lib.shmch_endpoint_respond

        def run(ep: int) -> Any:
            status = call(ep, rid, payload, len(payload))
            if status == _native.E_INVALID_SIZE:
                message = f"the response of {len(payload)} bytes is larger than max_message_size".encode()
                return lib.shmch_endpoint_fail(ep, rid, b"ERR_MESSAGE_TOO_LARGE", message)
            return RETRY if status == _native.E_FULL else status

        self._submit(run, len(payload))

    async def _serve_request(self, handler: Handler, rid: int, data: bytes) -> None:
        lib = _native.load()
        try:
            result = handler(data)
            if inspect.isasyncgen(result):
                try:
                    async for value in result:
                        if self._serving.get(rid) is None:
                            return
                        self._answer(rid, value, last=False)
                        if self.queued_bytes > self.max_queued_bytes:
                            # A generator that yields faster than the peer reads waits here,
                            # as notify() callers do after ERR_QUEUE_FULL.
                            await self.drained()
                finally:
                    await result.aclose()
                if self._serving.get(rid) is not None:
                    self._send(lambda ep: lib.shmch_endpoint_complete(ep, rid), "complete")
            else:
                value = await result  # type: ignore[misc]
                if self._serving.get(rid) is None:
                    return
                if value is None:
                    self._send(lambda ep: lib.shmch_endpoint_complete(ep, rid), "complete")
                else:
                    self._answer(rid, value, last=True)
        except asyncio.CancelledError:
            pass  # the peer cancelled, left, or the channel closed: nothing more may be sent
        except Exception as exc:  # the handler failed: the peer gets ERR_REMOTE
            if self._serving.get(rid) is None:
                return
            code = getattr(exc, "code", None)
            code_bytes = code.encode("utf-8") if isinstance(code, str) else None
            message = str(exc.message if isinstance(exc, ShmChannelError) else exc).encode("utf-8")
            self._send(lambda ep: lib.shmch_endpoint_fail(ep, rid, code_bytes, message), "fail")
        finally:
            if self._serving.get(rid) is asyncio.current_task():
                del self._serving[rid]
