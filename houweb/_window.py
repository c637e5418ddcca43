"""
:class:`SendWindow`: whether a client takes what is written to it, as a
Twisted push producer that asyncio code can wait on. A WebSocket's sends and
an ASGI app's response body both wait on one, so a client that does not read
holds its writer back instead of growing the server's memory.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer


@implementer(IPushProducer)
class SendWindow:
    """
    Registered as the producer of a request (or connection), it is paused by
    the transport when the transport's buffer passes its high-water mark and
    resumed once the buffer is empty.

    :param reading: told ``False`` when the client stops taking what is
        written (a WebSocket stops reading from it too, so a ping flood's
        pongs are not queued without bound), ``True`` when it takes it again.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, reading: Callable[[bool], None] = lambda _: None
    ) -> None:
        self._loop = loop
        self._reading = reading
        self.paused = False
        #: Bytes written while paused: sent but not taken.
        self.backlog = 0
        self._waiters: list[asyncio.Future[None]] = []

    def wait(self) -> asyncio.Future[None]:
        """:returns: a future done once the buffer drained (or the connection ended)."""
        future = self._loop.create_future()
        if self.paused:
            self._waiters.append(future)
        else:
            future.set_result(None)
        return future

    def pauseProducing(self) -> None:
        self.paused = True
        self._reading(False)

    def resumeProducing(self) -> None:
        self.paused = False
        self.backlog = 0
        self._reading(True)
        self._wake()

    def stopProducing(self) -> None:
        """The connection is gone: nobody waits any more (later writes are dropped)."""
        self.paused = False
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)
