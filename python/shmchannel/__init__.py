"""shmchannel: POSIX shared-memory channels between processes, for asyncio.

A binding of the C core (libshmchannel.so, built by ``npm run build:c``) with the semantics and
error codes of the Node package: notifications, requests and streamed responses between a
Python, Node or C process on the same machine.

    async with Channel('/demo', 'client') as ch:
        print(await ch.request(b'ping', timeout=5))

Installed with ``python3 -m pip install ./python`` from the repository (offline: the package's
own backend compiles the core into it). Reachable from Python: notifications, requests, cold
streamed responses, cancellation, timeouts, remote errors with codes, waiting for a server, a
server's next client, and the bounded outgoing queue (``max_queued_bytes``, ``ERR_QUEUE_FULL``,
``queued_bytes``, ``drained()``). Messages a peer sends by loan arrive copied. Not yet: sending
by loan, borrowed views, notify_many, codecs (the C message API has none of these); a server of
many clients (a Python server takes one client at a time; a Python client connects to a server of
either kind, of many as one of its connections).
"""

from .channel import Channel, Data, Handler, Notifications, RequestStream
from .errors import ShmChannelError

__all__ = ["Channel", "Data", "Handler", "Notifications", "RequestStream", "ShmChannelError"]
__version__ = "0.1.0"
