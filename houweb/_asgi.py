"""
``registerASGIApp``: ASGI 3 applications (Starlette, FastAPI, Django's ASGI
handler, the MCP SDK's streamable-HTTP app...) mounted on a path prefix, run
on the reactor's own asyncio loop.

A mount is a target in the registry like any other, so it answers only after
the header-time guard of :class:`~houweb._channel.HouwebChannel` (Host
allow-list, Origin check, token) passed, on the ports it is bound to, and the
more specific registration wins. Per request, :class:`_HTTPCycle` speaks the
``http`` scope. A request with a body starts the app as soon as its headers
passed the guard, and the body streams to it as it arrives
(:class:`BodyStream`; houweb stops reading from the client while the app is
more than a MiB behind); the app's answer is written once the request is
routed. The response is streamed to the client, and ``send()`` waits while
the client is not reading (backpressure). A client that leaves makes ``receive()``
return ``http.disconnect``. ``Upgrade: websocket`` requests get the
``websocket`` scope through houweb's WebSocket machinery (autobahn), and each
app's ``lifespan`` runs with the server (:class:`Lifespans`).

asgiref (Django's ASGI reference library) gives the spec's types and turns
an ASGI 2 (double-callable) application into an ASGI 3 one.
"""

from __future__ import annotations

import asyncio
import io
import re
import tempfile
from collections import deque
from collections.abc import Awaitable, MutableMapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Callable, ClassVar, cast

from asgiref.compatibility import guarantee_single_callable
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import ITCPTransport
from twisted.logger import Logger

from . import _registry
from ._coroutines import event_loop
from ._dispatch import describe
from ._registry import PREFIX, Match, Ports, check_handler_path
from ._render import asks_to_close, close_after_answer
from ._response import Response, errorResponse
from ._site import Call, ServerContext
from ._target import Answer
from ._window import SendWindow

if TYPE_CHECKING:
    from ._channel import HouwebRequest
    from ._server import RunningServer

#: A header name (RFC 9110 5.6.2), and what a header value cannot hold.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
log = Logger(namespace="houweb")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApplication = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The ASGI version houweb speaks, in every scope.
ASGI = {"version": "3.0", "spec_version": "2.3"}
#: Bytes of a stored request body handed to the app per ``http.request`` message.
CHUNK = 64 * 1024
#: Bytes of a streamed request body waiting for the app above which houweb
#: stops reading from the client (until half of them are taken).
MAX_PENDING_BODY = 1024 * 1024


@dataclass(frozen=True)
class ASGITarget:
    """An ASGI application registered with :func:`registerASGIApp`."""

    application: ASGIApplication
    #: The registered path, normalised: the scope's ``root_path`` ("" for "/").
    root_path: str
    #: The app reads the body itself: houweb stores a form as sent instead of
    #: parsing it into fields and files.
    wants_raw_body: ClassVar[bool] = True

    def answer(self, call: Call) -> Answer:
        """Answer ``call``, routed here: see :func:`_answer_asgi`."""
        return _answer_asgi(call, self)

    def stream_body(
        self, context: ServerContext, web_request: HouwebRequest, match: Match, path: str
    ) -> BodyStream:
        """Start the app before its body arrived: see :func:`_stream_body`."""
        return _stream_body(context, web_request, self, path)


def register_asgi_app(
    registry: _registry.Registry, application: Any, path: str | None = None, ports: Ports = []
) -> None:
    """
    Register ``application`` into ``registry``: see
    :func:`houweb.registerASGIApp`, which is this on the default server's
    registry.
    """
    if not callable(application):
        raise TypeError("registerASGIApp takes an ASGI application (a callable)")
    path = "/" if path is None else path
    norm = check_handler_path(path)
    app = guarantee_single_callable(application)
    target = ASGITarget(app, "" if norm == "/" else norm)
    # The lifespans first: a running server routes a request to the app as
    # soon as its path is registered, and that request waits for its startup.
    registry.add_lifecycle(_server_lifespans)
    registry.add_path(PREFIX, norm, ports, target)


def _scope(call: Call, target: ASGITarget, kind: str) -> dict[str, Any]:
    """The connection scope shared by ``http`` and ``websocket``."""
    web_request, request = call.web_request, call.request
    raw_path, _, query = web_request.uri.partition(b"?")
    secure = request.isSecure()
    scheme = {"http": ("http", "https"), "websocket": ("ws", "wss")}[kind][secure]
    return {
        "type": kind,
        "asgi": dict(ASGI),
        "http_version": web_request.clientproto.decode("ascii").partition("/")[2] or "1.1",
        "scheme": scheme,
        "path": web_request.houweb_path,
        "raw_path": raw_path,
        "query_string": query,
        "root_path": target.root_path,
        "headers": [
            (name.lower(), value)
            for name, values in web_request.requestHeaders.getAllRawHeaders()
            for value in values
        ],
        "client": list(request.clientAddress()),
        "server": list(request.serverAddress()),
        # houweb's own (the spec's place for server extensions): what
        # houweb's MCP tools need to call API functions as /api does.
        "extensions": {"houweb": {"call": call, "context": call.context}},
    }


class _StoredBody:
    """A body twisted.web received whole (in a temp file past 100 kB), handed out in chunks."""

    def __init__(self, content: Any) -> None:
        self._content = content

    async def next(self) -> tuple[bytes, bool]:
        """:returns: the next chunk and whether more follows."""
        chunk = self._content.read(CHUNK) if self._content is not None else b""
        return chunk, len(chunk) == CHUNK


class BodyStream:
    """
    A body handed to the app as it arrives: fed by the channel (the
    request's body sink), read by ``receive()``. When more than
    :data:`MAX_PENDING_BODY` bytes wait for the app, houweb stops reading
    from the client until the app caught up (backpressure).
    """

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._chunks: deque[bytes] = deque()
        self._pending = 0
        self._ended = False
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        #: Where the body goes once the app answers before reading it all
        #: (:meth:`spill`), with how much was written and read.
        self._spill: IO[bytes] | None = None
        self._spilled = 0
        self._unspilled = 0

    def spill(self) -> None:
        """
        The app answers before it read the whole body, and its answer can
        only be written once the request is routed, when the whole body has
        arrived: stop holding the client back (or neither side would move
        again), and keep what the app has not read in a temp file, where it
        may still read it.
        """
        if self._spill is not None or self._ended:
            return
        self._spill = tempfile.TemporaryFile()  # noqa: SIM115 - closed by release()
        if self._paused:
            self._paused = False
            self._transport.resumeProducing()

    def feed(self, data: bytes) -> None:
        """A part of the body arrived."""
        if not data:
            return
        if self._spill is not None:
            try:
                self._spill.seek(0, io.SEEK_END)
                self._spill.write(data)
            except OSError:
                log.failure("houweb: could not store a request body an ASGI app has not read")
                self._transport.abortConnection()
                return
            self._spilled += len(data)
            self._wake()
            return
        self._chunks.append(data)
        self._pending += len(data)
        if self._pending > MAX_PENDING_BODY and not self._paused:
            self._paused = True
            self._transport.pauseProducing()
        self._wake()

    def end(self) -> None:
        """The whole body arrived."""
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def release(self) -> None:
        """The request is over: read from the client again (the next request)."""
        self._chunks.clear()
        self._pending = 0
        if self._spill is not None:
            self._spill.close()
            self._spilled = self._unspilled = 0
        if self._paused:
            self._paused = False
            self._transport.resumeProducing()

    async def next(self) -> tuple[bytes, bool]:
        """:returns: the next part of the body and whether more follows."""
        while not self._chunks and not self._on_disk() and not self._ended:
            self._waiter = self._loop.create_future()
            await self._waiter
        if self._chunks:
            chunk = self._chunks.popleft()
            self._pending -= len(chunk)
        elif self._on_disk():
            assert self._spill is not None
            self._spill.seek(self._unspilled)
            chunk = self._spill.read(CHUNK)
            self._unspilled += len(chunk)
        else:
            chunk = b""
        if self._paused and self._pending <= MAX_PENDING_BODY // 2:
            self._paused = False
            self._transport.resumeProducing()
        return chunk, bool(self._chunks) or self._on_disk() > 0 or not self._ended

    def _on_disk(self) -> int:
        """:returns: how many spilled bytes the app has not read yet."""
        return self._spilled - self._unspilled


class _HTTPCycle:
    """
    One request of the ``http`` scope, between the app and twisted.web. The
    app may start before the request is routed (its body streaming in,
    :func:`_stream_body`); it writes nothing until :meth:`attach`.
    """

    def __init__(
        self,
        web_request: HouwebRequest,
        app: ASGIApplication,
        scope: dict[str, Any],
        body: Any,
        loop: Any,
    ) -> None:
        self.web_request = web_request
        self.app = app
        self.loop = loop
        self.scope = scope
        self.what = f"ASGI app {describe(app)}"
        self.call: Call | None = None
        self.answered: Deferred[Response] = Deferred()
        self._body = body
        self._body_done = False
        self._started: Message | None = None
        self._finished = False
        #: The Content-Length the app declared (``None``: none, or no body
        #: may follow: HEAD, 1xx, 204, 304), and the body bytes sent so far.
        self._declared: int | None = None
        self._sent = 0
        self._gone = False
        self._attached: asyncio.Future[None] = loop.create_future()
        self._left: asyncio.Future[None] = loop.create_future()
        self._window = SendWindow(loop)
        web_request.notifyFinish().addBoth(self._ended)
        # The app hears of a client's end of input as of its leaving (http.disconnect).
        web_request.houweb_leaves_at_end_of_input = True

    def attach(self, call: Call) -> Deferred[Response]:
        """
        The request was routed to this app: from now on the app's answer is
        written. :returns: a Deferred that fires only with an answer houweb
        sends instead of the app's (503: the app did not start).
        """
        self.call = call
        self.scope["extensions"]["houweb"]["call"] = call
        self.web_request.defaultContentType = None  # the app's headers, not twisted.web's text/html
        self.web_request.registerProducer(self._window, True)
        if not self._attached.done():
            self._attached.set_result(None)
        return self.answered

    def _ended(self, result: object) -> None:
        """The response finished, or the client left: ``receive()`` says disconnect."""
        if not self._finished:
            self._gone = True
        self._window.stopProducing()
        release = getattr(self._body, "release", None)
        if release is not None:
            release()
        if not self._left.done():
            self._left.set_result(None)

    async def _routed(self) -> bool:
        """Wait until routed here. :returns: ``False`` if the client left first."""
        if not self._attached.done():
            await asyncio.wait({self._attached, self._left}, return_when=asyncio.FIRST_COMPLETED)
        return self._attached.done() and not self._gone

    async def run(self, lifespan: _Lifespan | None) -> None:
        if lifespan is not None:
            await lifespan.started()
            if lifespan.failed is not None:
                if await self._routed() and not self.answered.called:
                    assert self.call is not None
                    message = f"the application did not start: {lifespan.failed}"
                    self.answered.callback(errorResponse(self.call.request, message, 503))
                return
            if self._gone:
                return  # the client left while the app started: nobody to answer
            if lifespan.state is not None:
                self.scope["state"] = dict(lifespan.state)
        try:
            await self.app(self.scope, self.receive, self.send)
        except Exception:  # noqa: BLE001 - the app's failure is logged and answered
            log.failure("houweb: {what} raised an exception", what=self.what)
            await self._fail("Internal server error")
            return
        if not self._finished and not self._gone:
            log.error("houweb: {what} returned without finishing its response", what=self.what)
            await self._fail("the application sent no complete response")

    async def _fail(self, message: str) -> None:
        if not await self._routed() or self._finished:
            return
        assert self.call is not None
        if self._started is None:
            response = errorResponse(self.call.request, message, 500)
            self._finished = True
            self.web_request.unregisterProducer()
            self.web_request.setResponseCode(500)
            for name, value in response.headerLines():
                self.web_request.setHeader(name, value)
            body = response.body()
            self.web_request.setHeader("Content-Length", str(len(body)))
            self.web_request.write(body)
            self.web_request.finish()
        else:
            # Part of the answer is out: cut the connection so the client
            # cannot take it for a whole one.
            cast(ITCPTransport, self.web_request.channel.transport).abortConnection()

    def _body_fits(self, size: int, more: bool) -> None:
        """
        Check the body against the Content-Length the app declared: bytes
        past it would be read by the client as the start of the next answer
        on the connection, and an answer short of it would leave the client
        waiting. Either way the connection is cut before they go out.
        """
        assert self._declared is not None
        self._sent += size
        if self._sent > self._declared or (not more and self._sent < self._declared):
            self._finished = True
            if self.web_request.channel is not None:
                cast(ITCPTransport, self.web_request.channel.transport).abortConnection()
            raise RuntimeError(
                f"http.response.body: {'at least ' if more else ''}{self._sent} body bytes "
                f"for a declared Content-Length of {self._declared}; connection cut"
            )

    async def receive(self) -> Message:
        if not self._body_done and not self._gone:
            part = asyncio.ensure_future(self._body.next())
            await asyncio.wait({part, self._left}, return_when=asyncio.FIRST_COMPLETED)
            if part.done():
                chunk, more = part.result()
                self._body_done = not more
                return {"type": "http.request", "body": chunk, "more_body": more}
            part.cancel()
        await asyncio.shield(self._left)
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if not self._attached.done():
            spill = getattr(self._body, "spill", None)
            if spill is not None:
                spill()  # the answer waits for the whole body: let it arrive
        if not await self._routed() or self._finished:
            return  # the client left (or the answer is done): dropped, as spec 2.3 allows
        if kind == "http.response.start":
            if self._started is not None:
                raise RuntimeError("http.response.start sent twice")
            # Checked before anything is set: a bad start still gets a clean 500.
            status = message["status"]
            if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
                raise TypeError(
                    f"http.response.start: status must be an int 100-599, not {status!r}"
                )
            headers = [
                (_header_name(_header_bytes(name)), _header_value(_header_bytes(value)))
                for name, value in message.get("headers", ())
            ]
            declared = _declared_length(headers)
            self._started = message
            if self.web_request.method != b"HEAD" and status >= 200 and status not in (204, 304):
                self._declared = declared
            self.web_request.setResponseCode(status)
            for name, value in headers:
                if name.lower() == b"connection":
                    # The server's to say, once: the app's "close" is honoured.
                    if asks_to_close(value.decode("latin-1")):
                        close_after_answer(self.web_request)
                    continue
                self.web_request.responseHeaders.addRawHeader(name, value)
        elif kind == "http.response.body":
            if self._started is None:
                raise RuntimeError("http.response.body before http.response.start")
            body = bytes(message.get("body", b""))
            if self._declared is not None:
                self._body_fits(len(body), bool(message.get("more_body", False)))
            if body:
                self.web_request.write(body)
            if not message.get("more_body", False):
                self._finished = True
                self.web_request.unregisterProducer()
                self.web_request.finish()
            else:
                await self._window.wait()
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in an http scope")


def _declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """:returns: the Content-Length among an app's response headers, checked."""
    values = {value.strip() for name, value in headers if name.lower() == b"content-length"}
    if not values:
        return None
    if len(values) > 1 or not all(value.isdigit() for value in values):
        raise ValueError(f"http.response.start: bad Content-Length {sorted(values)!r}")
    return int(values.pop())


def _header_name(name: bytes) -> bytes:
    """:returns: ``name`` if it is a token (twisted.web would refuse it only once set)."""
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"http.response.start: header name {name!r} is not a token")
    return name


def _header_value(value: bytes) -> bytes:
    """:returns: ``value`` if it holds no control character but HTAB (RFC 9110 5.5)."""
    if _CTL.search(value):
        raise ValueError(f"http.response.start: header value {value!r} holds a control character")
    return value


def _header_bytes(value: object) -> bytes:
    """:returns: a header name or value of ``http.response.start`` (the spec says bytes)."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"http.response.start: header names and values are bytes, not {value!r}")
    return bytes(value)


class Lifespans:
    """
    The ``lifespan`` of each ASGI app one server serves: started when the
    server listens (or at the app's first request, if it was registered
    later), shut down once the server's requests are done. A request waits
    for its app's startup to complete.
    """

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self._apps: dict[int, _Lifespan] = {}

    def start(self) -> None:
        for target in self.server.registry.targets():
            if isinstance(target, ASGITarget):
                self.ready(target.application)

    def ready(self, app: ASGIApplication) -> _Lifespan:
        """:returns: ``app``'s lifespan, started now if it was not."""
        lifespan = self._apps.get(id(app))
        if lifespan is None:
            lifespan = self._apps[id(app)] = _Lifespan(app, event_loop(self.server.reactor))
        return lifespan

    def stop(self) -> Deferred[Any]:
        waits = [
            Deferred.fromFuture(asyncio.ensure_future(lifespan.stop()))
            for lifespan in self._apps.values()
        ]
        return gatherResults(waits) if waits else succeed(None)


class _Lifespan:
    """One app's ``lifespan`` scope, running from start-up to shutdown."""

    def __init__(self, app: ASGIApplication, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.what = f"ASGI app {describe(app)}"
        self.state: dict[str, Any] | None = {}
        self.failed: str | None = None
        self._loop = loop
        self._started: asyncio.Future[None] = loop.create_future()
        self._stopped: asyncio.Future[None] = loop.create_future()
        self._stop_asked: asyncio.Future[None] = loop.create_future()
        self._events = ["lifespan.startup"]
        self._task = loop.create_task(self._run())

    async def started(self) -> None:
        await asyncio.shield(self._started)

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": dict(ASGI), "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except Exception as exc:  # noqa: BLE001 - an app without lifespan raises here
            if not self._started.done():
                # The spec's way of saying "no lifespan support": serve without.
                log.debug(
                    "houweb: {what} has no lifespan ({error}); serving it without",
                    what=self.what,
                    error=repr(exc),
                )
                self.state = None
            else:
                log.failure("houweb: {what}: lifespan raised", what=self.what)
        finally:
            self._done(self._started)
            self._done(self._stopped)

    def _done(self, future: asyncio.Future[None]) -> None:
        if not future.done():
            future.set_result(None)

    async def _receive(self) -> Message:
        if self._events:
            return {"type": self._events.pop(0)}
        await asyncio.shield(self._stop_asked)
        return {"type": "lifespan.shutdown"}

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind in ("lifespan.startup.failed", "lifespan.shutdown.failed"):
            log.error(
                "houweb: {what}: {kind}: {message}",
                what=self.what,
                kind=kind,
                message=message.get("message", ""),
            )
        if kind == "lifespan.startup.failed":
            self.failed = message.get("message", "") or "lifespan startup failed"
        if kind.startswith("lifespan.startup."):
            self._done(self._started)
        elif kind.startswith("lifespan.shutdown."):
            self._done(self._stopped)

    async def stop(self) -> None:
        """Send ``lifespan.shutdown`` and wait for the app to complete it."""
        await self.started()
        self._done(self._stop_asked)
        await asyncio.shield(self._stopped)


def _server_lifespans(server: RunningServer) -> Lifespans:
    lifespans = Lifespans(server)
    server.context.extensions["asgi"] = lifespans
    return lifespans


def _lifespans(call: Call) -> Lifespans | None:
    return call.context.extensions.get("asgi")


def _stream_body(
    context: ServerContext, web_request: HouwebRequest, target: ASGITarget, path: str
) -> BodyStream:
    """
    A request with a body for an app: start the app now, the body streaming
    to it as it arrives; :meth:`ASGITarget.answer` attaches the request once routed.
    """
    channel = web_request.channel
    loop = event_loop(context.reactor)
    raw_target = getattr(channel, "_path", None) or b"/"  # Twisted's (private) record of the target
    raw_path, _, query = raw_target.partition(b"?")
    peer = channel.houweb_transport().getPeer()
    local = channel.houweb_local
    version = (getattr(channel, "_version", None) or b"HTTP/1.1").decode("ascii")
    scope = {
        "type": "http",
        "asgi": dict(ASGI),
        "http_version": version.partition("/")[2] or "1.1",
        "method": (getattr(channel, "_command", None) or b"GET").decode("ascii"),
        "scheme": "https" if channel.houweb_secure else "http",
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "root_path": target.root_path,
        "headers": _headers(web_request),
        "client": [getattr(peer, "host", ""), getattr(peer, "port", 0)],
        "server": [getattr(local, "host", ""), getattr(local, "port", 0)],
        # The call is known once the request is routed (attach), by the
        # time the app has read the whole body.
        "extensions": {"houweb": {"call": None, "context": context}},
    }
    stream = BodyStream(channel.transport, loop)
    cycle = _HTTPCycle(web_request, target.application, scope, stream, loop)
    web_request.houweb_asgi_cycle = cycle
    lifespans: Lifespans | None = context.extensions.get("asgi")
    lifespan = lifespans.ready(target.application) if lifespans is not None else None
    loop.create_task(cycle.run(lifespan))
    return stream


def _headers(web_request: HouwebRequest) -> list[tuple[bytes, bytes]]:
    return [
        (name.lower(), value)
        for name, values in web_request.requestHeaders.getAllRawHeaders()
        for value in values
    ]


def _answer_asgi(call: Call, target: ASGITarget) -> Response | Deferred[Response]:
    early: _HTTPCycle | None = getattr(call.web_request, "houweb_asgi_cycle", None)
    if early is not None:
        return early.attach(call)  # started when its body began to arrive
    lifespans = _lifespans(call)
    lifespan = lifespans.ready(target.application) if lifespans is not None else None
    loop = event_loop(call.context.reactor)
    if _is_upgrade(call.request.header("Upgrade")):
        answered: Deferred[Response] = Deferred()

        async def upgrade() -> None:
            if lifespan is not None:
                await lifespan.started()
                if lifespan.failed is not None:
                    message = f"the application did not start: {lifespan.failed}"
                    answered.callback(errorResponse(call.request, message, 503))
                    return
            web_request = call.web_request
            if web_request.finished or web_request._disconnected:  # the client left meanwhile
                return
            from ._asgi_websocket import open_asgi_websocket

            state = lifespan.state if lifespan is not None else None
            open_asgi_websocket(call, target.application, _scope(call, target, "websocket"), state)

        loop.create_task(upgrade())
        # autobahn writes the handshake; the router forgets this Deferred
        # once the connection ends.
        return answered
    scope = _scope(call, target, "http")
    scope["method"] = call.request.method()
    cycle = _HTTPCycle(
        call.web_request, target.application, scope, _StoredBody(call.web_request.content), loop
    )
    answered = cycle.attach(call)
    loop.create_task(cycle.run(lifespan))
    # The cycle writes the answer itself; the router forgets this Deferred
    # once the request is finished.
    return answered


def _is_upgrade(upgrade: str) -> bool:
    """:returns: whether an ``Upgrade`` header asks for a WebSocket (without importing autobahn)."""
    return "websocket" in (token.strip() for token in upgrade.lower().split(","))
