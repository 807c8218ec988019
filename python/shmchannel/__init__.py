"""shmchannel: POSIX shared-memory channels between processes, for asyncio.

A binding of the C core (libshmchannel.so, built by ``npm run build:c``) with the semantics and
error codes of the Node package: notifications, requests and streamed responses between a
Python, Node or C process on the same machine.

    async with Channel('/demo', 'client') as ch:
        print(await ch.request(b'ping', timeout=5))
"""

from .channel import Channel, Data, Handler, Notifications, RequestStream
from .errors import ShmChannelError

__all__ = ["Channel", "Data", "Handler", "Notifications", "RequestStream", "ShmChannelError"]
__version__ = "0.1.0"
