"""
The twisted.web side of a connection: houweb's HTTPChannel and Request
subclasses. They record header names as sent, enforce ``max_request_size``
while the body arrives (before ``100 Continue``), parse ``multipart/form-data``
bodies as they arrive instead of buffering them, and keep the site's count of
connections and requests in flight for graceful shutdown.
"""

from __future__ import annotations

import io
import re
import socket
import struct
import sys
from typing import TYPE_CHECKING, Any, Callable, Protocol, Union, cast
from urllib.parse import unquote_to_bytes

from twisted.internet import error, tcp
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IDelayedCall, IHalfCloseableProtocol, ITransport
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from twisted.web import http, resource, server
from twisted.web.http import _IdentityTransferDecoder
from twisted.web.http_headers import Headers, _nameEncoder
from twisted.web.iweb import INonQueuedRequestFactory
from zope.interface import implementer

from ._body import RequestBody
from ._date import HttpDate
from ._head import LENGTH_DIGITS, Head, split_head
from ._render import SERVER
from ._status import label
from ._uploads import (
    FORM_URLENCODED,
    MULTIPART_FORM,
    FormError,
    FormReceiver,
    UploadedFile,
    form_receiver,
    not_stored,
)
from ._writethrough import write_now

if TYPE_CHECKING:
    from ._config import ServerConfig
    from ._guards import HeaderGuard
    from ._settings import Settings
    from ._uploads import MemoryBudget

#: The local address of a connection (houweb listens on TCP).
LocalAddress = Union[IPv4Address, IPv6Address]

_SERVER = SERVER.encode("ascii")
#: twisted.web's codes whose answers have no body (204, 304), read once:
#: ``twisted.web.http`` is a deprecation proxy, slow to read an attribute of
#: (so is ``_IdentityTransferDecoder``, imported above rather than read per
#: request through ``http.``).
_NO_BODY_CODES = frozenset(http.NO_BODY_CODES)
log = Logger(namespace="houweb")


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


#: An absolute-form request target (RFC 9112 section 3.2.2): scheme, authority, the rest.
_ABSOLUTE_FORM = re.compile(rb"(?i:https?)://([^/?#]*)([/?].*)?", re.DOTALL)


def origin_form(target: bytes) -> tuple[bytes, bytes | None]:
    """
    Reduce a request target to the origin form houweb routes (a path and
    query, RFC 9112 section 3.2).

    :returns: ``(path_and_query, authority)``: an origin-form target as is
        with ``None``; an absolute-form one (``http://host:port/path?q``)
        reduced to its path (``/`` when empty) and query, with its authority,
        which replaces the Host header (RFC 9112 section 3.2.2).
    :raises ValueError: for anything else: a target without a leading ``/``,
        ``*`` (asterisk form), ``host:port`` (authority form), a URL of another
        scheme, with user information or with no host.
    """
    if target.startswith(b"/"):
        return target, None
    match = _ABSOLUTE_FORM.fullmatch(target)
    if match is None or not match.group(1) or b"@" in match.group(1):
        raise ValueError("the request target must be a path starting with '/'")
    rest = match.group(2) or b"/"
    return (b"/" + rest if rest.startswith(b"?") else rest), match.group(1)


#: Where ``tcpi_bytes_acked`` lies in Linux's ``struct tcp_info`` (Linux 4.1+).
_BYTES_ACKED = struct.Struct("=Q")
_BYTES_ACKED_OFFSET = 120


def bytes_taken(transport: Any) -> int | None:
    """
    :returns: how many bytes the client has acknowledged on this connection
        so far (it took them from the network), from the kernel's TCP_INFO;
        ``None`` where that is not known (not Linux, not TCP, the connection gone).
    """
    for _ in range(3):  # a TLS transport wraps the TCP one
        if isinstance(transport, tcp.Connection):
            break
        transport = getattr(transport, "transport", None)
    else:
        return None
    option = getattr(socket, "TCP_INFO", None)
    if option is None:
        return None
    try:
        info = transport.getHandle().getsockopt(socket.IPPROTO_TCP, option, 256)
    except (OSError, AttributeError):  # AttributeError: lost (Twisted deletes .socket)
        return None
    if len(info) < _BYTES_ACKED_OFFSET + _BYTES_ACKED.size:
        return None
    return int(_BYTES_ACKED.unpack_from(info, _BYTES_ACKED_OFFSET)[0])


class BodySink(Protocol):
    """Takes a request's body as it arrives (an ASGI app's: ``_asgi.BodyStream``)."""

    def feed(self, data: bytes) -> None:
        """Some more of the body."""

    def end(self) -> None:
        """The body is complete."""


class ChannelContext(Protocol):
    """What a channel reads of its server (``_site.ServerContext``)."""

    config: ServerConfig
    guard: HeaderGuard
    settings: Settings
    form_memory: MemoryBudget


class ChannelSite(Protocol):
    """
    What a channel asks of the site that made it (``_site.HouwebSite``),
    declared here so that this module needs nothing of ``_site``.
    """

    houweb: ChannelContext
    #: The Date header's value, formatted once a second.
    houweb_date: HttpDate

    @property
    def houweb_max_request_size(self) -> int: ...

    def houweb_admit(self, channel: HouwebChannel) -> bool: ...

    def connection_closed(self, channel: HouwebChannel) -> None: ...

    def houweb_track(self, web_request: HouwebRequest) -> None: ...

    def houweb_wants_raw_body(self, target: bytes, local: LocalAddress | None) -> bool: ...

    def houweb_body_streamer(
        self, method: bytes, target: bytes, local: LocalAddress | None, web_request: HouwebRequest
    ) -> BodySink | None: ...

    def houweb_rejection(
        self,
        status: int,
        message: str,
        method: bytes,
        target: bytes,
        web_request: HouwebRequest,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> bytes: ...


@implementer(IHalfCloseableProtocol)
class HouwebChannel(http.HTTPChannel):
    """
    An HTTP/1.1 channel that can refuse a request before reading its body,
    and that answers a client that half-closes its side (see
    :meth:`readConnectionLost`).
    """

    #: Set by the site's buildProtocol.
    site: ChannelSite
    houweb_local: LocalAddress
    houweb_secure: bool
    #: The client's address (see :meth:`getPeer`); ``None`` on a connection refused.
    houweb_peer: Any = None

    houweb_closing = False
    _houweb_rejected = False
    #: The client sent the end of its input (see :meth:`readConnectionLost`).
    houweb_input_ended = False
    #: The authority of an absolute-form target, until the headers are in.
    _houweb_authority: bytes | None = None
    #: Aborts the connection if the client takes nothing for idle_timeout.
    _houweb_drain_timer: IDelayedCall | None = None
    #: Pipelined request bytes read but not yet parsed, held while the
    #: transport's buffer is full (see :meth:`requestDone`).
    _houweb_held: bytes | None = None
    #: The protocol this connection was handed to by :meth:`upgrade`.
    houweb_upgraded: Any = None
    #: Read a request head that arrives whole in one piece (nearly all do)
    #: with :func:`houweb._head.split_head` rather than line by line; the
    #: tests turn it off to answer the same bytes both ways.
    houweb_whole_heads = True

    def connectionMade(self) -> None:
        super().connectionMade()
        if not self.site.houweb_admit(self):
            self.refuse(503, "too many connections; try again later")
            return
        # Asked once per connection, not per request (getsockname is a syscall).
        transport = self.houweb_transport()
        self.houweb_local = cast(LocalAddress, transport.getHost())
        self.houweb_peer = transport.getPeer()
        self.houweb_secure = bool(super().isSecure())

    def houweb_transport(self) -> ITransport:
        """:returns: the transport, which a connected channel always has."""
        assert self.transport is not None
        return self.transport

    def getHost(self) -> LocalAddress:
        """
        The local address, as found when the connection was made: twisted.web
        asks for every request (a getsockname call), Klein for every route.
        """
        return self.houweb_local

    def getPeer(self) -> Any:
        """
        The client's address, as found when the connection was made:
        twisted.web asks for every request (the transport makes a new
        address object each time).
        """
        peer = self.houweb_peer
        return super().getPeer() if peer is None else peer

    def isSecure(self) -> bool:
        """Whether the connection is TLS, as found when it was made (Klein asks twice a request)."""
        return self.houweb_secure

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stop_drain_timer()
        if self.houweb_upgraded is not None:
            self.houweb_upgraded.connectionLost(reason)
        super().connectionLost(reason)
        self.site.connection_closed(self)

    def readConnectionLost(self) -> None:
        """
        The client sent the end of its input (``shutdown(SHUT_WR)``, as
        ``nc -N`` and many scripts do) but may still read: the requests it
        sent whole, pipelined ones included, are answered in order, and then
        the connection closes; a request cut short (its head or body
        incomplete) is never run. twisted.web took the end of input for a
        lost connection and answered nothing.

        A client that closed its socket entirely sends the same end of input:
        for a plain handler, which runs to its end anyway, that is known only
        once its answer is written (its kernel then resets the connection,
        which :meth:`connectionLost` cleans up as before). A request served by
        a mounted ASGI app, which can act on it, takes the end of input for
        the client leaving, as before (and as uvicorn does): the app gets
        ``http.disconnect`` at once.
        A WebSocket connection closes, as it did (the protocol sees it lost).
        Under TLS, Twisted's TLS layer never asks this: it loses the
        connection as before.
        """
        self.houweb_input_ended = True
        if self.houweb_upgraded is not None:
            self.houweb_transport().loseConnection()
            return
        if any(request.houweb_leaves_at_end_of_input for request in self.requests):
            # An ASGI app is told the client left (http.disconnect) at the end
            # of input, as uvicorn tells it: the connection is lost now, as
            # twisted.web would have it.
            transport: Any = self.transport
            transport.connectionLost(Failure(error.ConnectionDone()))
            return
        self._close_if_answered()

    def writeConnectionLost(self) -> None:
        """Houweb never half-closes its own side; if it is closed, so is the connection."""
        self.houweb_transport().loseConnection()

    def _close_if_answered(self) -> None:
        """
        After the end of the client's input: close the connection once no
        request read whole waits for its answer or to be parsed.
        """
        if not self.houweb_input_ended or self.houweb_upgraded is not None:
            return
        transport: Any = self.transport
        if transport is None or transport.disconnecting:
            return
        if self._houweb_held is not None or self._dataBuffer:
            return  # pipelined requests read and not parsed yet
        if any(request._houweb_arrived for request in self.requests):
            return  # answered first (requestDone calls back)
        self.loseConnection()

    def pauseProducing(self) -> None:
        """The transport's buffer is full: the client must take some within idle_timeout."""
        super().pauseProducing()
        self.houweb_waiting_to_write()

    def resumeProducing(self) -> None:
        """The transport sent everything it held: the client is reading."""
        self._stop_drain_timer()
        super().resumeProducing()
        held = self._houweb_held
        if held is not None and not self._waitingForTransport:
            self._houweb_held = None
            if self._savedTimeOut:
                self.setTimeout(self._savedTimeOut)
            self.dataReceived(held)
            self._close_if_answered()

    def requestDone(self, request: Any) -> None:
        """
        The answer is finished. twisted.web then parses the next pipelined
        request at once, even while the transport's buffer is full (it only
        stops reading the socket): a client that sends many small requests
        for a large answer and never reads would have every answer queued in
        memory (7 KB of requests for a 1 MB answer: 196 MB). While the
        transport waits for the client, the requests already read are held
        until it drains (:meth:`resumeProducing`), like those not read yet.
        Meanwhile the drain timer (:meth:`houweb_waiting_to_write`) decides
        how long the client may take, not the idle timeout.
        """
        if not (self.persistent and self._waitingForTransport and self._dataBuffer):
            super().requestDone(request)
            self._close_if_answered()
            return
        held = b"".join(self._dataBuffer)
        self._dataBuffer = []
        super().requestDone(request)  # nothing left to parse
        self._houweb_held = held
        self._savedTimeOut = self.setTimeout(None)
        self._networkProducer.pauseProducing()

    def houweb_waiting_to_write(self) -> None:
        """
        Data waits for the client to read it (the transport's buffer is
        full, or the socket's for ``sendfile``): unless the transport drains
        within ``idle_timeout`` (it then resumes this channel) or the client
        takes some bytes in that time (see :func:`bytes_taken`), the
        connection is aborted, so a client that never reads cannot hold its
        connection, its file handle and its buffers for ever, while one that
        reads slowly but steadily gets its whole answer.
        """
        if self._houweb_drain_timer is None or not self._houweb_drain_timer.active():
            self._arm_drain_timer(bytes_taken(self.transport))

    def _arm_drain_timer(self, taken: int | None) -> None:
        timeout = self.site.houweb.config.idle_timeout
        # HTTPFactory.buildProtocol sets callLater to the reactor's, which
        # passes arguments on; Twisted declares TimeoutMixin's (period, func).
        self._houweb_drain_timer = self.callLater(  # type: ignore[call-arg]
            timeout, self._not_draining, timeout, taken
        )

    def _stop_drain_timer(self) -> None:
        if self._houweb_drain_timer is not None and self._houweb_drain_timer.active():
            self._houweb_drain_timer.cancel()
        self._houweb_drain_timer = None

    def _not_draining(self, timeout: float, taken: int | None) -> None:
        """
        ``idle_timeout`` passed without the transport draining: if the
        client took some bytes meanwhile (a slow but steady reader, whose
        socket buffer never empties within the timeout), wait another
        ``idle_timeout``; otherwise drop it.
        """
        self._houweb_drain_timer = None
        transport: Any = self.transport
        now = bytes_taken(transport)
        if now is not None and taken is not None and now > taken:
            self._arm_drain_timer(now)
            return
        log.info(
            "houweb: aborting the connection of {peer}: it read nothing for {timeout:g}s",
            peer=str(transport.getPeer()),
            timeout=timeout,
        )
        transport.abortConnection()

    #: The status line and headers of the response being written, held until
    #: its first body bytes (or the end of the request's ``write``), so that
    #: both leave in one send.
    _houweb_head: bytes | None = None

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        """
        Hold the status line and headers (as twisted.web writes them) for the
        body bytes that follow: :meth:`HouwebRequest.write` sends them
        before it returns, with the body if it had any.
        """
        if not isinstance(headers, Headers):
            super().writeHeaders(version, code, reason, headers)
            return
        head = [version, b" ", code, b" ", reason, b"\r\n"]
        for name, values in headers.getAllRawHeaders():
            for value in values:
                head.extend((name, b": ", value, b"\r\n"))
        head.append(b"\r\n")
        self._houweb_head = b"".join(head)

    def write(self, data: bytes) -> None:
        head = self._houweb_head
        if head is not None:
            self._houweb_head = None
            self._houweb_send([head, data])
        else:
            self._houweb_send([data])

    def writeSequence(self, iovec: Any) -> None:
        head = self._houweb_head
        if head is not None:
            self._houweb_head = None
            self._houweb_send([head, *iovec])
        else:
            self._houweb_send(list(iovec))

    def houweb_flush_head(self) -> None:
        """Send the status line and headers still held (a response without body bytes yet)."""
        head = self._houweb_head
        if head is not None:
            self._houweb_head = None
            self._houweb_send([head])

    def _houweb_send(self, pieces: list[bytes]) -> None:
        """Write ``pieces``: at once when the socket takes them (see :mod:`houweb._writethrough`)."""
        write_now(self.transport, *pieces)

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
        if self._houweb_authority is not None and name.strip().lower() == b"host":
            return True  # the target's authority is the Host (see _target_received)
        if colon and self.requests:
            self.requests[-1].houweb_header_lines.append(
                (_text(name.strip()), _text(value.strip(b" \t")))
            )
            if len(value) > LENGTH_DIGITS and name.lower() == b"content-length":
                line = self._length_line(name, value)
        return bool(super().headerReceived(line))

    def _length_line(self, name: bytes, value: bytes) -> bytes:
        """
        A long Content-Length: Twisted's ``int()`` raises on more than
        ``sys.get_int_max_str_digits()`` digits (4300; out of
        ``dataReceived``: a traceback logged, the connection dropped without
        an answer). Leading zeros are dropped, and a number still too long is
        replaced by one as long as ``int()`` takes, which is past any size
        limit: the end of the head answers it with 413, after the Host and
        Origin checks, as any other too large a body.

        :returns: the header line for Twisted.
        """
        most = _int_digits()
        digits = value.strip(b" \t")
        if not most or len(digits) <= most or not digits.isdigit():
            return name + b":" + value  # int() takes it, or Twisted answers 400
        significant = digits.lstrip(b"0") or b"0"
        return name + b":" + (significant if len(significant) <= most else b"9" * most)

    def allHeadersReceived(self) -> None:
        request = self.requests[-1]
        site = self.site
        path = getattr(self, "_path", None) or b"/"
        local = self.houweb_local
        refusal = site.houweb.guard.refusal(
            self._command, request.requestHeaders, local.port, self.houweb_secure, path
        )
        if refusal is not None:
            self.reject(refusal.status, refusal.message, refusal.headers)
            return
        limit = site.houweb_max_request_size
        if self.length is not None and self.length > limit:
            self.reject(413, too_large(limit))
            return
        if self.length or request.requestHeaders.hasHeader(b"transfer-encoding"):
            # A body is coming: its target may take it as it arrives (an ASGI app).
            request.houweb_streamer = site.houweb_body_streamer(self._command, path, local, request)
        if request.houweb_streamer is not None:
            pass  # the target reads the raw body itself
        elif request.houweb_media_type() in (FORM_URLENCODED, MULTIPART_FORM):
            # Only a form's target matters (a route lookup per request costs).
            request.houweb_raw_body = site.houweb_wants_raw_body(path, local)
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
        if self._houweb_held is not None:
            self._houweb_held += data  # after the requests held (see requestDone)
            self._networkProducer.pauseProducing()
            return
        head = self._whole_head(data)
        if head is None:
            super().dataReceived(data)
        else:
            self.resetTimeout()
            self._head_received(head)
            rest = data[head.end :]
            transport = self.transport
            if rest and transport is not None and not transport.disconnecting:  # type: ignore[attr-defined]
                LineReceiver.dataReceived(self, rest)
        if self.requests:
            self.requests[-1].houweb_still_arriving()

    def _whole_head(self, data: bytes) -> Head | None:
        """
        :returns: the request head at the start of ``data`` when it is whole
            there and plain (see :mod:`houweb._head`) and this channel is
            waiting for a request line with nothing held back; ``None`` when
            the bytes must go through Twisted's line-by-line reading.
        """
        if (
            not self.houweb_whole_heads
            or not self.line_mode
            or self._buffer  # part of a line is held
            or self._busyReceiving  # bytes handed back while a read is parsed
            or self.paused
            or self._HTTPChannel__first_line != 1
            or not self.persistent
        ):
            return None
        return split_head(data, self._houweb_head_limit, self.maxHeaders)

    @property
    def _houweb_head_limit(self) -> int:
        """The most bytes a head read whole may have: none of its lines is then too long."""
        return min(self.MAX_LENGTH, self.totalHeadersSize)

    def _head_received(self, head: Head) -> None:
        """
        Take a whole request head as Twisted's ``lineReceived`` and
        ``headerReceived`` (and houweb's hooks on them) would line by line,
        leaving the channel and the request in the same state: the request
        made and queued, its headers (names canonicalised, as sent in
        ``houweb_header_lines``), the body's length and decoder; then the
        end of the head as Twisted handles it.
        """
        factory: Any = self.requestFactory
        if INonQueuedRequestFactory.providedBy(factory):
            request = factory(self)
        else:
            request = factory(self, len(self.requests))
        self.requests.append(request)
        self._HTTPChannel__first_line = 0
        self._receivedHeaderSize = head.size
        self._command = head.method
        self._path = head.target
        self._version = head.version
        raw = request.requestHeaders._rawHeaders
        lines = request.houweb_header_lines
        encode = _nameEncoder.encode
        for name, value in head.headers:
            lines.append((_text(name), _text(value)))
            raw.setdefault(encode(name), []).append(value)
        self._receivedHeaderCount = len(head.headers)
        if head.length:
            self.length = head.length
            self._transferDecoder = _IdentityTransferDecoder(
                head.length, request.handleContentChunk, self._finishRequestBody
            )
        self.allHeadersReceived()
        if self.length == 0:
            self.allContentReceived()
        else:
            self.setRawMode()

    def lineReceived(self, line: bytes) -> None:
        if self._houweb_rejected:
            return
        if not line and self._houweb_authority is not None:
            self._authority_is_host()
            super().lineReceived(line)  # a last Host line pending in Twisted is dropped too
            self._houweb_authority = None
            return
        started = len(self.requests)
        super().lineReceived(line)
        if len(self.requests) > started and not self._houweb_rejected and hasattr(self, "_path"):
            self._target_received()

    def _target_received(self) -> None:
        """
        The request line is in: keep an origin-form target, reduce an
        absolute-form one to its path, refuse anything else with 400 (a
        target that is not a path would never be routed).
        """
        try:
            # Twisted's own (private) record of the target, which it hands to the request
            self._path, self._houweb_authority = origin_form(self._path)
        except ValueError as exc:
            self.refuse(400, str(exc))

    def _authority_is_host(self) -> None:
        """
        The headers are in (Host lines were dropped): the absolute-form
        target's authority becomes the Host header, before anything checks it.
        """
        authority = self._houweb_authority
        assert authority is not None
        request = self.requests[-1]
        request.requestHeaders.setRawHeaders(b"host", [authority])
        request.houweb_header_lines.append(("Host", _text(authority)))

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
        """
        The request is whole. twisted.web turns the idle timeout off while it
        is answered (``setTimeout(None)``: its timer cancelled) and on again
        when it is done (a new timer): a cancel and a ``callLater`` per
        request, 2% of the reactor thread. Here the timeout is off as
        twisted.web has it (``timeOut`` is ``None``, the value kept to put
        back) but its timer is left armed: moved on when the request is done
        (``setTimeout`` resets it), and ignored by :meth:`timeoutConnection`
        should it fire while the request is answered.
        """
        if self._houweb_rejected:
            return
        timeout = self.timeOut
        if timeout:
            self.timeOut = None
            self._savedTimeOut = timeout
        super().allContentReceived()

    def timeoutConnection(self) -> None:
        """
        The idle timer fired: close the connection, unless the idle timeout
        is off (a request is being answered; see :meth:`allContentReceived`):
        then the timer was only left armed, and the request's end arms it anew.
        """
        if self.timeOut is None:
            return
        super().timeoutConnection()

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
        transport = self.houweb_transport()
        transport.write(payload)
        transport.loseConnection()

    def lineLengthExceeded(self, line: bytes) -> None:
        """A request line (414) or header line (431) too long to read."""
        if self.requests:
            self.refuse(431, "header line too long")
        else:
            self.refuse(414, "request line too long")

    def refuse(self, status: int, text: str) -> None:
        """Answer a plain error and close, reading nothing more."""
        self._houweb_rejected = True
        transport = self.houweb_transport()
        transport.write(plain_error(status, text))
        transport.loseConnection()

    def stopWhenIdle(self) -> None:
        """Close now if idle; otherwise close after the response in progress."""
        self.houweb_closing = True
        if self.houweb_upgraded is not None:
            self.houweb_upgraded.stopWhenIdle()
        elif not self.requests:
            self.houweb_transport().loseConnection()
        else:
            self.persistent = False
            for request in self.requests:
                if not request.startedWriting:
                    # Its answer says so: a client would otherwise send its
                    # next request on the connection, to have it dropped.
                    request.responseHeaders.setRawHeaders(b"Connection", [b"close"])


def _no_body(data: bytes) -> None:
    """What a HEAD or 204/304 answer's later writes do: nothing (twisted.web's choice)."""


def _drop(data: bytes) -> None:
    """Where the rest of a body that cannot be stored goes."""


def plain_error(status: int, text: str) -> bytes:
    """:returns: a minimal ``text/plain`` error answer that closes the connection."""
    body = text.encode("utf-8") + b"\n"
    return (
        f"HTTP/1.1 {label(status)}\r\nServer: {SERVER}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("ascii") + body


def _int_digits() -> int:
    """:returns: the most digits ``int()`` takes from a string, 0 for no limit."""
    return int(getattr(sys, "get_int_max_str_digits", lambda: 0)())


def too_large(limit: int) -> str:
    """:returns: the message of a 413."""
    return f"request body exceeds the maximum request size of {limit} bytes"


class HouwebRequest(server.Request):
    """
    A twisted.web request that counts its body against the size limit and
    streams a ``multipart/form-data`` body into a :class:`FormReceiver`.
    """

    #: The channel it arrived on (twisted.web sets it to ``None`` when the
    #: request is over).
    channel: HouwebChannel
    #: The decoded path, set by the site's guard (``_site._Guard``).
    houweb_path: str
    #: The kind of target it was routed to, for the metrics (``_site``).
    houweb_target_type: type | None
    #: The ASGI cycle started before the body arrived (``_asgi``).
    houweb_asgi_cycle: object
    #: The end of the client's input is taken for the client leaving (an
    #: ASGI app's request: the app is told ``http.disconnect``), not for a
    #: half close to answer (see ``HouwebChannel.readConnectionLost``).
    houweb_leaves_at_end_of_input = False

    #: ``(post_lists, files)`` of a parsed multipart body, for the snapshot.
    houweb_form: tuple[dict[str, list[str]], dict[str, UploadedFile]] | None = None
    #: Why the body could not be parsed or stored (the snapshot answers with
    #: its status: 400, 413, 507...).
    houweb_body_error: FormError | None = None
    houweb_upload: FormReceiver | None = None
    #: The target reads the raw body itself (a WSGI app reads ``wsgi.input``):
    #: houweb neither parses nor limits its form, whatever its type.
    houweb_raw_body = False
    #: Takes the body as it arrives (``feed``, then ``end``), for a target
    #: that reads it while it arrives (an ASGI app); see ``houweb_body_streamer``.
    houweb_streamer: BodySink | None = None
    #: The body, once it has arrived: taken from twisted.web (whose
    #: ``content`` becomes a reader of it) so that the houweb.Request owns it.
    houweb_body: RequestBody | None = None
    #: Fires ``request_timeout`` after the request began to arrive, unless it has.
    _houweb_deadline: IDelayedCall | None = None
    _houweb_arrived = False
    _houweb_media_type: str | None = None

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
            self.content = io.BytesIO()
            self.houweb_body_sink = _drop

    def gotLength(self, length: int | None) -> None:
        """
        The headers are in: a ``multipart/form-data`` body is parsed as it
        arrives rather than stored (unless its target wants the raw body: a
        WSGI app). The temp files of a body cut short or bad are deleted when
        the request is over; those of a complete one belong to the Request.
        """
        if self.houweb_streamer is not None:
            self.content = io.BytesIO()  # the body goes to the target, not here
            self.houweb_body_sink = self.houweb_streamer.feed
            return
        receiver = (
            None
            if length == 0 or self.houweb_raw_body or self.houweb_media_type() != MULTIPART_FORM
            else self._form_receiver()
        )
        if receiver is None:
            super().gotLength(length)
            return
        self.houweb_upload = receiver
        self.content = io.BytesIO()  # Request.body() of a multipart request is b""
        self.houweb_body_sink = receiver.feed
        self.notifyFinish().addBoth(lambda _: receiver.discard())

    def _form_receiver(self) -> FormReceiver | None:
        content_type = _text(self.requestHeaders.getRawHeaders(b"content-type", [b""])[0])
        context = self.channel.site.houweb
        return form_receiver(
            content_type,
            context.config.max_in_memory_file_upload_size,
            budget=context.form_memory,
            max_fields_size=context.settings.data_upload_max_memory_size,
            max_fields=context.settings.data_upload_max_number_fields,
            max_files=context.settings.data_upload_max_number_files,
        )

    def houweb_media_type(self) -> str:
        """
        :returns: the body's media type, lower case, without parameters
            (read once the headers are in, then remembered: the channel, the
            body's reader and the snapshot each ask).
        """
        media = self._houweb_media_type
        if media is None:
            content_type = _text(self.requestHeaders.getRawHeaders(b"content-type", [b""])[0])
            media = self._houweb_media_type = content_type.split(";", 1)[0].strip().lower()
        return media

    def _own_body(self) -> None:
        """
        The body is complete: the Request will own it (with what its form
        holds in memory). twisted.web keeps a reader of its own (a WSGI
        app's ``wsgi.input``), which its ``close()`` when the response
        finishes or the client leaves does not close.
        """
        held = (self.houweb_upload.memory,) if self.houweb_upload is not None else ()
        stored: Any = self.content
        self.houweb_body = RequestBody(stored, held)
        self.content = self.houweb_body.reader()

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
        self.houweb_streamer = None
        # twisted.web forgets its reader of the body when the response is
        # finished, but only closes it when the client leaves (a WSGI app
        # keeps its own reference as ``wsgi.input``).
        self.content = None

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
        if self.houweb_streamer is not None:
            self.houweb_streamer.end()
        super().requestReceived(command, path, version)

    def finish(self) -> None:
        super().finish()
        self._let_go()

    def connectionLost(self, reason: Failure) -> None:
        self._cancel_deadline()
        super().connectionLost(reason)
        self._let_go()

    def setHeader(self, name: bytes | str, value: bytes | str) -> None:
        # twisted.web's process() sets "Server: TwistedWeb/<version>": houweb
        # names itself, without a version (a handler may set its own).
        if value is server.version:
            value = _SERVER
        super().setHeader(name, value)

    def write(self, data: bytes) -> None:
        super().write(data)
        # twisted.web's first write gives the channel the status line and
        # headers, then the body bytes if any: nothing stays held after it.
        channel = self.channel
        if channel is not None and channel._houweb_head is not None:
            channel.houweb_flush_head()

    def houweb_answer(
        self, code: int, reason: bytes, headers: dict[bytes, list[bytes]], body: bytes
    ) -> bool:
        """
        Send a complete answer and finish the request, as twisted.web's
        ``setResponseCode``, ``setHeader``, ``write`` and ``finish`` would for
        it, with the same bytes, but built in one go and sent in one write
        (those layers took about twice as long: 8 against 4 µs for a
        hello-world answer). The request's ``responseHeaders`` end up as twisted.web
        leaves them; twisted.web's own ``finish`` then logs the request,
        fires ``notifyFinish`` and moves on to the next pipelined request or
        closes the connection as ``checkPersistence`` decided.

        :param headers: the response's headers as :func:`houweb._render.raw_headers`
            makes them (canonical names, sanitised values, no framing headers,
            Connection only as ``close``, which closes the connection after):
            each replaces twisted.web's of that name (Server, Date...).
        :returns: ``False``, having changed nothing, when twisted.web's own
            path must write it: something was written already, the client
            left, or twisted.web has more to add (an encoder, cookies,
            Last-Modified, an ETag, a faked HEAD).
        """
        channel = self.channel
        if (
            self.startedWriting
            or self.finished
            or self._disconnected
            or channel is None
            or self._encoder is not None
            or self._inFakeHead
            or self.cookies
            or self.lastModified is not None
            or self.etag is not None
        ):
            return False
        self.code = code
        self.code_message = reason
        if b"Connection" in headers:  # the handler's "close" (raw_headers drops any other)
            channel.persistent = False
        raw = self.responseHeaders._rawHeaders
        raw.update(headers)
        bodiless = code in _NO_BODY_CODES
        if code < 200:
            # A 1xx is no final answer (RFC 9110 15.2): sent without a body
            # (twisted.web sent one, chunked, which a client reads as the
            # start of the next answer), and the connection closed, as the
            # client would otherwise wait on it for the final answer.
            bodiless = True
            channel.persistent = False
            raw[b"Connection"] = [b"close"]
        if not bodiless:
            raw[b"Content-Length"] = [b"%d" % len(body)]
            if body and b"Content-Type" not in raw and self.defaultContentType is not None:
                raw[b"Content-Type"] = [self.defaultContentType]
        self.startedWriting = 1
        head = [self.clientproto, b" %d " % code, reason, b"\r\n"]
        for name, values in raw.items():
            for value in values:
                head += (name, b": ", value, b"\r\n")
        head.append(b"\r\n")
        if bodiless or self.method == b"HEAD":
            self.write = _no_body  # type: ignore[method-assign]  # as twisted.web does
            write_now(channel.transport, b"".join(head))
        else:
            self.sentLength += len(body)
            write_now(channel.transport, b"".join(head), body)
        self.finish()
        return True

    def process(self) -> None:
        """
        As twisted.web's ``Request.process``, but its Server and Date headers
        are set straight in the headers it holds: houweb's name (a handler
        may set its own), and the date the site formats once a second, not
        for every request (the same bytes: ``http.datetimeToString``'s).
        """
        site: Any = self.channel.site  # a HouwebSite: twisted.web's Site too
        site.houweb_track(self)
        if self.path == b"*":
            super().process()  # its own answer; houweb refuses such targets earlier
            return
        self.site = site
        raw = self.responseHeaders._rawHeaders
        raw[b"Server"] = [_SERVER]
        raw[b"Date"] = [site.houweb_date.now()]
        self.prepath = []
        self.postpath = list(map(unquote_to_bytes, self.path[1:].split(b"/")))
        try:
            target = site.getResourceFor(self)
            if resource._IEncodingResource.providedBy(target):
                encoder = target.getEncoder(self)
                if encoder is not None:
                    self._encoder = encoder
            self.render(target)
        except BaseException:  # noqa: BLE001 - as twisted.web's process: its 500
            self.processingFailed(Failure())
