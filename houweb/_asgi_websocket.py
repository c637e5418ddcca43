"""
The ``websocket`` scope of a mounted ASGI app, on houweb's WebSocket
machinery: :class:`ASGIWebSocket` is a :class:`~houweb.WebSocket` whose
callbacks speak ASGI to the app, so autobahn does the protocol and houweb's
limits (message size, receive and send backpressure, idle pings) apply as to
any ``@webSocket``. Imported at the first upgrade request an app gets.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from twisted.logger import Logger

from ._dispatch import describe
from ._request import Request
from ._site import Call
from ._websocket import WebSocket, open_websocket

log = Logger(namespace="houweb")

#: Messages from the client waiting for the app's ``receive()``; past this,
#: houweb's own ``max_pending_receive`` pauses reading from the client.
QUEUED_MESSAGES = 16

Message = dict[str, Any]
#: An ASGI 3 application (``houweb._asgi.ASGIApplication``).
ASGIApplication = Callable[..., Any]


class ASGIWebSocket(WebSocket):
    """One WebSocket connection of an ASGI app."""

    def __init__(self, app: ASGIApplication, scope: dict[str, Any]) -> None:
        self.app = app
        self.scope = scope
        self.what = f"ASGI app {describe(app)}"
        self._incoming: asyncio.Queue[Message] = asyncio.Queue(QUEUED_MESSAGES)
        self._decision: asyncio.Future[str] | None = None
        self._task: asyncio.Task[None] | None = None
        self._accepted = False
        #: The ``websocket.disconnect`` the app got: every later ``receive()`` returns it.
        self._gone: Message | None = None

    async def _receive(self) -> Message:
        """The app's ``receive()``: after the disconnect, the disconnect again (never a hang)."""
        if self._gone is not None:
            return self._gone
        message = await self._incoming.get()
        if message["type"] == "websocket.disconnect":
            self._gone = message
        return message

    async def connect(self, request: Request) -> None:
        """The app decides: ``websocket.accept`` accepts, ``websocket.close`` refuses (403)."""
        loop = asyncio.get_running_loop()
        self._decision = loop.create_future()
        self._incoming.put_nowait({"type": "websocket.connect"})
        self._task = loop.create_task(self._run())
        either: list[asyncio.Future[Any]] = [self._decision, self._task]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if self._decision.done() and self._decision.result() == "accept":
            self._accepted = True
            await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is not None:
            await self._put({"type": "websocket.receive", "text": text_data})
        else:
            await self._put({"type": "websocket.receive", "bytes": bytes_data})

    async def disconnect(self, code: int) -> None:
        await self._put({"type": "websocket.disconnect", "code": code})

    async def _put(self, message: Message) -> None:
        """Queue ``message`` for the app, waiting while it is behind (unless it ended)."""
        if self._task is None or self._task.done():
            return
        put = asyncio.ensure_future(self._incoming.put(message))
        await asyncio.wait([put, self._task], return_when=asyncio.FIRST_COMPLETED)
        put.cancel()

    async def _run(self) -> None:
        try:
            await self.app(self.scope, self._receive, self._send)
        except Exception:  # noqa: BLE001 - logged; the connection is closed with 1011
            log.failure("houweb: {what} raised an exception (websocket)", what=self.what)
            if self._accepted:
                self.close(1011)
            return
        if self._accepted:
            self.close(1000)  # nothing happens if it is closed already

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        assert self._decision is not None
        if kind == "websocket.accept":
            if message.get("subprotocol") or message.get("headers"):
                log.warn(
                    "houweb: {what}: websocket.accept's subprotocol and headers are not "
                    "supported; accepted without them",
                    what=self.what,
                )
            if not self._decision.done():
                self._decision.set_result("accept")
        elif kind == "websocket.close":
            if not self._decision.done():
                self._decision.set_result("close")
            elif self._accepted:
                await self.close(int(message.get("code") or 1000), message.get("reason") or "")
        elif kind == "websocket.send":
            if not self._accepted:
                raise RuntimeError("websocket.send before websocket.accept")
            text = message.get("text")
            if text is not None:
                await self.send(text_data=text)
            else:
                await self.send(bytes_data=message.get("bytes") or b"")
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in a websocket scope")


def open_asgi_websocket(
    call: Call, app: ASGIApplication, scope: dict[str, Any], state: dict[str, Any] | None
) -> None:
    """Hand ``call``'s upgrade request to ``app`` as a ``websocket`` scope."""
    protocols = call.request.header("Sec-WebSocket-Protocol")
    scope["subprotocols"] = [p.strip() for p in protocols.split(",") if p.strip()]
    if state is not None:
        scope["state"] = dict(state)
    open_websocket(call, ASGIWebSocket(app, scope))
