"""
The twisted.web side of a connection: houweb's HTTPChannel and Request
subclasses. They record header names as sent, enforce ``max_request_size``
while the body arrives (before ``100 Continue``), parse ``multipart/form-data``
bodies as they arrive instead of buffering them, and keep the site's count of
connections and requests in flight for graceful shutdown.
"""

from __future__ import annotations

import io
from typing import Any, Callable

from twisted.web import http, server

from ._body import RequestBody
from ._render import SERVER
from ._status import label
from ._uploads import FormError, FormReceiver, form_receiver, not_stored

_SERVER = SERVER.encode("ascii")


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class HouwebChannel(http.HTTPChannel):
    """An HTTP/1.1 channel that can refuse a request before reading its body."""

    houweb_closing = False
    _houweb_rejected = False
    #: The protocol this connection was handed to by :meth:`upgrade`.
    houweb_upgraded: Any = None

    def connectionMade(self) -> None:
        super().connectionMade()
        if not self.site.houweb_admit(self):
            self.refuse(503, "too many connections; try again later")
            return
        # Asked once per connection, not per request (getsockname is a syscall).
        self.houweb_local = self.transport.getHost()
        self.houweb_secure = bool(super().isSecure())

    def getHost(self) -> Any:
        """
        The local address, as found when the connection was made: twisted.web
        asks for every request (a getsockname call), Klein for every route.
        """
        return self.houweb_local

    def isSecure(self) -> bool:
        """Whether the connection is TLS, as found when it was made (Klein asks twice a request)."""
        return self.houweb_secure

    def connectionLost(self, reason: Any) -> None:
        if self.houweb_upgraded is not None:
            self.houweb_upgraded.connectionLost(reason)
        super().connectionLost(reason)
        self.site.connection_closed(self)

    def upgrade(self, protocol: Any, first: bytes) -> None:
        """
        Hand this connection to ``protocol`` (a WebSocket, after its upgrade
        request): it gets ``first`` and then every byte that arrives, and the
        connection's end. The HTTP request stays open, so the connection is
        counted until it closes; at shutdown ``protocol.stopWhenIdle()`` is
        asked to close it.
        """
        self.setTimeout(None)
        self.houweb_upgraded = protocol
        protocol.makeConnection(self.transport)
        protocol.dataReceived(first)

    def headerReceived(self, line: bytes) -> bool:
        name, colon, value = line.partition(b":")
        if colon and self.requests:
            self.requests[-1].houweb_header_lines.append(
                (_text(name.strip()), _text(value.strip(b" \t")))
            )
        return bool(super().headerReceived(line))

    def allHeadersReceived(self) -> None:
        request = self.requests[-1]
        refusal = self.site.houweb.guard.refusal(
            self._command,
            request.requestHeaders,
            self.houweb_local.port,
            self.houweb_secure,
            self._path,
        )
        if refusal is not None:
            self.reject(refusal.status, refusal.message, refusal.headers)
            return
        limit = self.site.houweb_max_request_size
        if self.length is not None and self.length > limit:
            self.reject(413, too_large(limit))
            return
        super().allHeadersReceived()

    def checkPersistence(self, request: Any, version: bytes) -> bool:
        if self.houweb_closing:
            request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
            return False
        return bool(super().checkPersistence(request, version))

    def dataReceived(self, data: bytes) -> None:
        if self.houweb_upgraded is not None:
            self.houweb_upgraded.dataReceived(data)
            return
        if self._houweb_rejected:
            return
        super().dataReceived(data)
        if self.requests:
            self.requests[-1].houweb_still_arriving()

    def lineReceived(self, line: bytes) -> None:
        if not self._houweb_rejected:
            super().lineReceived(line)

    def _respondToBadRequestAndDisconnect(self) -> None:
        self._houweb_rejected = True
        super()._respondToBadRequestAndDisconnect()

    def rawDataReceived(self, data: bytes) -> None:
        # Bytes that came with an upgrade request (the first WebSocket frames)
        # are read in raw mode before dataReceived is redirected.
        if self.houweb_upgraded is not None:
            self.houweb_upgraded.dataReceived(data)
        elif not self._houweb_rejected:
            super().rawDataReceived(data)

    def allContentReceived(self) -> None:
        if not self._houweb_rejected:
            super().allContentReceived()

    def reject(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        """
        Answer the request being received with an error and close the
        connection without reading the rest of its body.

        :param headers: more headers for the answer.
        """
        request = self.requests[-1]
        payload = self.site.houweb_rejection(
            status,
            message,
            getattr(self, "_command", None) or b"GET",
            getattr(self, "_path", None) or b"/",
            request,
            headers,
        )
        self._houweb_rejected = True
        self.transport.write(payload)
        self.transport.loseConnection()

    def lineLengthExceeded(self, line: bytes) -> None:
        """A request line (414) or header line (431) too long to read."""
        if self.requests:
            self.refuse(431, "header line too long")
        else:
            self.refuse(414, "request line too long")

    def refuse(self, status: int, text: str) -> None:
        """Answer a plain error and close, reading nothing more."""
        self._houweb_rejected = True
        self.transport.write(plain_error(status, text))
        self.transport.loseConnection()

    def stopWhenIdle(self) -> None:
        """Close now if idle; otherwise close after the response in progress."""
        self.houweb_closing = True
        if self.houweb_upgraded is not None:
            self.houweb_upgraded.stopWhenIdle()
        elif not self.requests:
            self.transport.loseConnection()
        else:
            self.persistent = False


def _drop(data: bytes) -> None:
    """Where the rest of a body that cannot be stored goes."""


def plain_error(status: int, text: str) -> bytes:
    """:returns: a minimal ``text/plain`` error answer that closes the connection."""
    body = text.encode("utf-8") + b"\n"
    return (
        f"HTTP/1.1 {label(status)}\r\nServer: {SERVER}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("ascii") + body


def too_large(limit: int) -> str:
    """:returns: the message of a 413."""
    return f"request body exceeds the maximum request size of {limit} bytes"


class HouwebRequest(server.Request):
    """
    A twisted.web request that counts its body against the size limit and
    streams a ``multipart/form-data`` body into a :class:`FormReceiver`.
    """

    #: ``(post_lists, files)`` of a parsed multipart body, for the snapshot.
    houweb_form: Any = None
    #: Why the body could not be parsed or stored (the snapshot answers with
    #: its status: 400, 413, 507...).
    houweb_body_error: FormError | None = None
    houweb_upload: FormReceiver | None = None
    #: The body, once it has arrived: taken from twisted.web (whose
    #: ``content`` becomes a reader of it) so that the houweb.Request owns it.
    houweb_body: RequestBody | None = None
    #: Fires ``request_timeout`` after the request began to arrive, unless it has.
    _houweb_deadline: Any = None
    _houweb_arrived = False

    def __init__(self, channel: Any, *args: Any, **kwargs: Any) -> None:
        # houweb reads forms itself; twisted.web's own parsing would load a
        # multipart body whole into memory (request.args).
        kwargs.setdefault("parsePOSTFormSubmission", False)
        super().__init__(channel, *args, **kwargs)
        self.houweb_header_lines: list[tuple[str, str]] = []
        self.houweb_received = 0
        self.houweb_body_sink: Callable[[bytes], None] | None = None

    def handleContentChunk(self, data: bytes) -> None:
        if self.channel is None or self.channel._houweb_rejected:
            return
        self.houweb_received += len(data)
        limit = self.channel.site.houweb_max_request_size
        if self.houweb_received > limit:
            self.channel.reject(413, too_large(limit))
            return
        if self.houweb_body_sink is not None:
            self.houweb_body_sink(data)
        else:
            self._store(data)

    def _store(self, data: bytes) -> None:
        """
        Add ``data`` to the body twisted.web keeps (in a temp file above
        100 000 bytes). If the disk is full, the rest of the body is read
        and dropped, and the request answered with the error.
        """
        try:
            super().handleContentChunk(data)
        except OSError as exc:
            self.houweb_body_error = not_stored(exc)
            stored: Any = self.content
            stored.close()  # an unnamed temp file: closing deletes it
            self.content = io.BytesIO()  # type: ignore[assignment]
            self.houweb_body_sink = _drop

    def gotLength(self, length: int | None) -> None:
        """
        The headers are in: a ``multipart/form-data`` body is parsed as it
        arrives rather than stored (unless its target wants the raw body: a
        WSGI app). The temp files of a body cut short or bad are deleted when
        the request is over; those of a complete one belong to the Request.
        """
        receiver = None if length == 0 else self._form_receiver()
        if receiver is None:
            super().gotLength(length)
            return
        self.houweb_upload = receiver
        self.content = io.BytesIO()  # Request.body() of a multipart request is b""
        self.houweb_body_sink = receiver.feed
        self.notifyFinish().addBoth(lambda _: receiver.discard())

    def _form_receiver(self) -> FormReceiver | None:
        content_type = _text(self.requestHeaders.getRawHeaders(b"content-type", [b""])[0])
        site: Any = self.channel.site
        context = site.houweb
        receiver = form_receiver(
            content_type,
            context.config.max_in_memory_file_upload_size,
            budget=context.form_memory,
            max_fields_size=context.settings.data_upload_max_memory_size,
            max_fields=context.settings.data_upload_max_number_fields,
            max_files=context.settings.data_upload_max_number_files,
        )
        if receiver is not None and site.houweb_wants_raw_body(
            getattr(self.channel, "_path", None) or b"/",
            getattr(self.channel, "houweb_local", None),
        ):
            receiver.discard()
            return None
        return receiver

    def _own_body(self) -> None:
        """
        The body is complete: the Request will own it (with what its form
        holds in memory). twisted.web keeps a reader of its own, whose
        ``close()`` when the response finishes or the client leaves closes
        only that reader.
        """
        held = (self.houweb_upload.memory,) if self.houweb_upload is not None else ()
        stored: Any = self.content
        self.houweb_body = RequestBody(stored, held)
        self.content = self.houweb_body.reader()  # type: ignore[assignment]

    def _let_go(self) -> None:
        """
        The request is over: what it received is the houweb.Request's alone
        now (Klein keeps this request in a reference cycle, so anything left
        here would live until the garbage collector runs).
        """
        self.houweb_body = None
        self.houweb_form = None
        self.houweb_upload = None
        self.houweb_body_sink = None

    def _finish_form(self) -> None:
        if self.houweb_upload is None:
            return
        try:
            self.houweb_form = self.houweb_upload.finish()
        except FormError as exc:
            self.houweb_body_error = exc

    def houweb_still_arriving(self) -> None:
        """
        The channel read what it had: if this request is not whole yet, its
        headers and body must arrive within ``request_timeout`` (trickling
        clients), however often they send a byte. A request read whole in one
        go (nearly all of them) never needs the timer, saving a callLater
        and a cancel per request (+4% req/s on hello-world).
        """
        if self._houweb_arrived or self._houweb_deadline is not None or self.channel is None:
            return
        timeout = self.channel.site.houweb.config.request_timeout
        self._houweb_deadline = self.channel.callLater(timeout, self._too_slow)

    def _cancel_deadline(self) -> None:
        if self._houweb_deadline is not None and self._houweb_deadline.active():
            self._houweb_deadline.cancel()

    def _too_slow(self) -> None:
        if self.channel is not None and self.channel.requests and self.channel.requests[-1] is self:
            timeout = self.channel.site.houweb.config.request_timeout
            self.channel.reject(408, f"request did not arrive within {timeout:g} seconds")

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self._houweb_arrived = True
        self._cancel_deadline()
        self._finish_form()
        self._own_body()
        super().requestReceived(command, path, version)

    def finish(self) -> None:
        super().finish()
        self._let_go()

    def connectionLost(self, reason: Any) -> None:
        self._cancel_deadline()
        super().connectionLost(reason)
        self._let_go()

    def setHeader(self, name: bytes | str, value: bytes | str) -> None:
        # twisted.web's process() sets "Server: TwistedWeb/<version>": houweb
        # names itself, without a version (a handler may set its own).
        if value is server.version:
            value = _SERVER
        super().setHeader(name, value)

    def process(self) -> None:
        self.channel.site.houweb_track(self)
        super().process()
