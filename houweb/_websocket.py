"""
WebSockets (hwebserver): ``@webSocket(path)`` registers a :class:`WebSocket`
subclass; every connection gets an instance of its own.

The protocol is autobahn's (RFC 6455: handshake checks, framing, masking,
fragmentation, ping/pong, UTF-8 checks, the close handshake). WebSocket paths
live in the same route table and on the same ports as URL handlers: an
``Upgrade: websocket`` request routed to a WebSocket is handed, connection and
all, to an autobahn server protocol (:class:`_Connection`), which reads the
handshake again and asks the instance's ``connect()`` whether to accept.

The instance's callbacks run on the reactor thread, one at a time and in
order: ``connect``, then ``receive`` once per message, then ``disconnect``
once, for every connection whose ``connect`` called ``accept()``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import struct
import threading
from collections import deque
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from typing import Any, Callable, TypeVar, cast

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import main, tcp
from twisted.internet.defer import Deferred
from twisted.logger import Logger, LogLevel
from twisted.python import threadable

from . import _registry
from ._channel import HouwebRequest, bytes_taken
from ._coroutines import bridge, event_loop
from ._dispatch import describe
from ._reactor import HouwebReactor
from ._registry import EXACT, PREFIX, Ports, check_handler_path
from ._render import SERVER
from ._request import Request
from ._response import Response, errorResponse
from ._site import Call
from ._target import Answer
from ._window import SendWindow
from ._writethrough import write_now
from ._ws_frames import (
    TEXT,
    Gathering,
    SpareBuffers,
    frame_size,
    header_incomplete,
    read_frames,
    unmask_in_place,
)

log = Logger(namespace="houweb")

W = TypeVar("W", bound=type)

#: Bytes read from a WebSocket's socket at a time (Twisted's default is
#: 64 KiB): a 1 MiB message arrives in 4 reads and passes through autobahn's
#: frame parser 4 times instead of 16. Twisted's transport uses the same
#: figure as the send buffer's high-water mark, past which a send waits.
READ_SIZE = 256 * 1024
#: Seconds ``connect()`` has to accept before the handshake fails.
HANDSHAKE_TIMEOUT = 30.0
#: Close codes a server may send (RFC 6455 section 7.4, IANA registry).
_SENDABLE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1012, 1013, 1014})
#: What a queued message costs beyond its payload (objects, callbacks), in
#: bytes, so that a flood of empty messages is bounded too.
_MESSAGE_COST = 256
#: The most bytes of a data frame's payload held back from autobahn's parser
#: (see ``_Connection._held``).
_HOLD = 64 * 1024
NO_STATUS, ABNORMAL, INTERNAL_ERROR, GOING_AWAY = 1005, 1006, 1011, 1001
#: The longest close reason, in UTF-8 bytes: a control frame's 125 less the code.
MAX_REASON = 123
_BYTES = (bytes, bytearray, memoryview)
#: Payloads up to this size are sent joined to their frame header, in one
#: buffer (one ``send``: copying them costs less than ``sendmsg``'s set-up
#: of two); larger ones are sent as two pieces, the payload not copied.
_JOIN_BELOW = 2048
#: A server frame's header with a 16-bit and a 64-bit payload length.
_HEADER_16, _HEADER_64 = struct.Struct("!BBH"), struct.Struct("!BBQ")


def _message(
    data: object, is_binary: object, text_data: object, bytes_data: object
) -> tuple[bytes, bool]:
    """
    Resolve :meth:`WebSocket.send`'s arguments.

    :returns: the payload and whether it is a binary message.
    """
    if data is None and is_binary is None:  # the common calls first, checked as below
        if bytes_data is None and type(text_data) is str:
            return text_data.encode("utf-8"), False
        if text_data is None and type(bytes_data) is bytes:
            return bytes_data, True
    if is_binary is not None and not isinstance(is_binary, bool):
        raise TypeError(f"is_binary must be True or False, not {type(is_binary).__name__}")
    given = [
        name
        for name, value in (("data", data), ("text_data", text_data), ("bytes_data", bytes_data))
        if value is not None
    ]
    if len(given) != 1:
        raise ValueError(
            "send() takes one message: data (Houdini's send(data, is_binary)), "
            f"or text_data, or bytes_data; got {', '.join(given) or 'none'}"
        )
    if data is None and is_binary is not None:
        raise ValueError("is_binary goes with data, not with text_data or bytes_data")
    if text_data is not None:
        if not isinstance(text_data, str):
            raise TypeError(f"text_data must be a str, not {type(text_data).__name__}")
        return text_data.encode("utf-8"), False
    if bytes_data is not None:
        if not isinstance(bytes_data, _BYTES):
            raise TypeError(f"bytes_data must be bytes, not {type(bytes_data).__name__}")
        return bytes(bytes_data), True
    if isinstance(data, str):
        return data.encode("utf-8"), bool(is_binary)
    if isinstance(data, _BYTES):
        payload = bytes(data)
        if is_binary is False:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError("send(data, is_binary=False): data is not UTF-8 text") from None
            return payload, False
        return payload, True
    raise TypeError(f"data must be a str or bytes, not {type(data).__name__}")


class WebSocket:
    """
    One WebSocket connection; subclass it and register the subclass with
    :func:`webSocket`. Override the ``async`` callbacks:

    - ``connect(request)``: must ``await self.accept()`` to take the
      connection; returning without it refuses the upgrade with 403.
    - ``receive(text_data=None, bytes_data=None)``: once per complete
      message, exactly one argument set (``str`` or ``bytes``).
    - ``disconnect(code)``: once, after the connection closed: the code of
      the side that closed it first (the client's, or the one this server
      sent), 1005 for a client's close frame without one, 1006 when the
      client dropped the connection without a close frame.

    :meth:`send` and :meth:`close` return awaitables; they may also be called
    from other threads (a handler in the pool), where they return a
    :class:`concurrent.futures.Future`. What :meth:`send` returns is done
    once the message is handed to the connection and the connection's send
    buffer is below its high-water mark (the client is reading).
    """

    #: The largest message (or frame) a client may send, in bytes; a larger
    #: one closes the connection with 1009 (extension).
    max_message_size = 16 * 1024 * 1024
    #: Bytes of received messages waiting for ``receive()`` above which houweb
    #: stops reading from the client until ``receive()`` catches up (extension).
    max_pending_receive = 1024 * 1024
    #: Bytes sent while the client is not taking what was sent before (by
    #: sends not awaited) above which the connection is closed (extension).
    max_pending_send = 16 * 1024 * 1024

    _houweb_connection: _Connection | None = None

    async def connect(self, request: Request) -> None:
        """Decide whether to take the connection; this default accepts."""
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Handle one message from the client; this default ignores it."""

    async def disconnect(self, code: int) -> None:
        """The connection closed with ``code``; this default does nothing."""

    def accept(self) -> Awaitable[None]:
        """Accept the connection (in ``connect``); done once the handshake is."""
        return self._connection().accept()

    def send(
        self,
        data: str | bytes | None = None,
        is_binary: bool | None = None,
        *,
        text_data: str | None = None,
        bytes_data: bytes | None = None,
    ) -> Awaitable[None]:
        """
        Send one message: Houdini's ``send(data, is_binary=False)``, or
        houweb's ``send(text_data=...)`` / ``send(bytes_data=...)``.

        - ``data`` a ``str``: a text message; with ``is_binary=True``, its
          UTF-8 bytes as a binary message.
        - ``data`` bytes: a binary message (``is_binary`` left out or
          ``True``); with ``is_binary=False``, a text message (the bytes
          must be UTF-8).
        - ``text_data`` / ``bytes_data``: exactly one, and neither with
          ``data`` nor ``is_binary``.

        Messages sent after the connection closed are dropped. Await the
        result: it is done once the client has taken what was sent before
        (sends not awaited pile up, and past :attr:`max_pending_send` bytes
        the connection is closed).

        :raises ValueError: for nothing to send, two things to send, or
            ``is_binary`` with ``text_data``/``bytes_data``, or bytes
            that are not UTF-8 sent as text.
        :raises TypeError: for a message or ``is_binary`` of the wrong type.
        """
        payload, binary = _message(data, is_binary, text_data, bytes_data)
        connection = self._connection()
        return connection.on_reactor(connection.send, payload, binary)

    def close(self, code: int = 1000, reason: str = "") -> Awaitable[None]:
        """
        Close the connection with ``code`` and ``reason`` (Houdini's
        ``close(code, reason)``); in ``connect`` before :meth:`accept`,
        refuse it (403).

        :raises ValueError: for a code a server may not send, or a reason
            longer than 123 bytes in UTF-8 (what a close frame holds).
        :raises TypeError: for a code that is not an int or a reason not a str.
        """
        if isinstance(code, bool) or not isinstance(code, int):
            raise TypeError(f"code must be an int, not {type(code).__name__}")
        if code not in _SENDABLE_CODES and not 3000 <= code <= 4999:
            raise ValueError(f"close code {code} cannot be sent (1000-1014 or 3000-4999)")
        if not isinstance(reason, str):
            raise TypeError(f"reason must be a str, not {type(reason).__name__}")
        encoded = reason.encode("utf-8")
        if len(encoded) > MAX_REASON:
            raise ValueError(
                f"close reason is {len(encoded)} bytes in UTF-8; a close frame holds {MAX_REASON}"
            )
        connection = self._connection()
        return connection.on_reactor(connection.close, code, encoded)

    def _connection(self) -> _Connection:
        if self._houweb_connection is None:
            raise RuntimeError("this WebSocket is not connected (houweb creates the instances)")
        return self._houweb_connection


@dataclass(frozen=True)
class WebSocketTarget:
    """A :class:`WebSocket` subclass registered with :func:`webSocket`."""

    endpoint: type[WebSocket]

    def answer(self, call: Call) -> Answer:
        """Answer ``call``, routed here: see :func:`_answer_websocket`."""
        return _answer_websocket(call, self)


def web_socket(
    registry: _registry.Registry, path: str, is_prefix: bool = False, ports: Ports = []
) -> Callable[[W], W]:
    """
    :returns: a decorator registering a :class:`WebSocket` subclass into
        ``registry``: see :func:`houweb.webSocket`, which is this on the
        default server's registry.
    """
    check_handler_path(path)

    def register(endpoint: W) -> W:
        if not (isinstance(endpoint, type) and issubclass(endpoint, WebSocket)):
            raise TypeError("webSocket decorates a subclass of houweb.WebSocket")
        for name in ("connect", "receive", "disconnect"):
            if not inspect.iscoroutinefunction(getattr(endpoint, name)):
                raise TypeError(f"{endpoint.__name__}.{name} must be an async def")
        kind = PREFIX if is_prefix else EXACT
        registry.add_path(kind, path, ports, WebSocketTarget(endpoint))
        return endpoint

    return register


def is_upgrade(request: Request) -> bool:
    """:returns: whether ``request`` asks to become a WebSocket."""
    tokens = request.header("Upgrade").lower().split(",")
    return "websocket" in (token.strip() for token in tokens)


def _answer_websocket(call: Call, target: WebSocketTarget) -> Response | Deferred[Response]:
    if not is_upgrade(call.request):
        response = errorResponse(call.request, "this URL takes WebSocket connections only", 426)
        response.setHeader("Upgrade", "websocket")
        return response
    endpoint: type[WebSocket] = target.endpoint
    return open_websocket(call, endpoint())


def open_websocket(call: Call, endpoint: WebSocket) -> Deferred[Response]:
    """
    Hand ``call``'s connection (an upgrade request) to ``endpoint``, whose
    ``connect()`` decides whether to accept it.

    :returns: a Deferred that never fires: the answer is the handshake,
        written by autobahn; the router forgets it when the connection ends.
    """
    connection = _Connection(endpoint, call)
    connection.factory = _factory(call.context.reactor)
    call.web_request.channel.upgrade(connection, _handshake(call.web_request))
    return Deferred()


def _handshake(web_request: HouwebRequest) -> bytes:
    """:returns: the upgrade request as sent, for autobahn to read again."""
    lines = [b"%s %s %s" % (web_request.method, web_request.uri, web_request.clientproto)]
    for name, values in web_request.requestHeaders.getAllRawHeaders():
        lines += [name + b": " + value for value in values]
    return b"\r\n".join(lines) + b"\r\n\r\n"


#: A cache, per reactor (so per process): the options are the same for every
#: server, and autobahn's factory holds nothing of one connection or server.
_FACTORIES: dict[int, _Factory] = {}


class _Factory(WebSocketServerFactory):
    """autobahn's options, and what houweb's connections on one reactor share."""

    def __init__(self, reactor: Any) -> None:
        super().__init__(reactor=reactor, server=SERVER)
        #: Buffers for large frames (used on the reactor thread only).
        self.spares = SpareBuffers()
        #: WebSockets open on the reactor: the buffers go with the last one.
        self.open_connections = 0

    def connection_opened(self) -> None:
        """One more WebSocket is open (on the reactor thread)."""
        self.open_connections += 1

    def connection_closed(self) -> None:
        """A WebSocket closed (on the reactor thread); the last one takes the buffers kept."""
        self.open_connections -= 1
        if not self.open_connections:
            self.spares.clear()


def _factory(reactor: Any) -> _Factory:
    """The autobahn options every houweb WebSocket shares (one set per reactor)."""
    factory = _FACTORIES.get(id(reactor))
    if factory is None:
        factory = _Factory(reactor)
        factory.setProtocolOptions(
            failByDrop=False,  # send the close code of a protocol error
            openHandshakeTimeout=HANDSHAKE_TIMEOUT,
            perMessageCompressionAccept=lambda offers: None,
        )
        _FACTORIES[id(reactor)] = factory
    return factory


class _Connection(WebSocketServerProtocol):
    """
    autobahn's side of one connection, calling the :class:`WebSocket`
    instance's callbacks one after the other.
    """

    def __init__(self, endpoint: WebSocket, call: Call) -> None:
        super().__init__()
        self.endpoint = endpoint
        endpoint._houweb_connection = self
        self.request = call.request
        self._web_request = call.web_request
        self._reactor = call.context.reactor
        self._what = f"WebSocket {describe(type(endpoint))}"
        self._decision: Deferred[None] | None = None
        self._loop = event_loop(self._reactor)
        self._opened: asyncio.Future[None] = self._loop.create_future()
        self._accepted = False
        self._ended = False
        #: What is left to do, in order: the instance's callbacks and what
        #: follows each; one task at a time works through it (:meth:`_drain`).
        self._events: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._draining = False
        #: The task working through them (held: the loop keeps only a weak
        #: reference to a task waiting on something).
        self._drainer: asyncio.Task[None] | None = None
        self._idle_timeout = call.context.config.idle_timeout
        self._window = SendWindow(self._loop, self._client_taking)
        #: What a send that waits for nothing returns: done, and shared.
        self._done: asyncio.Future[None] = self._loop.create_future()
        self._done.set_result(None)
        #: Whether messages may be sent by :meth:`_send_whole` (the options
        #: allow it: set once open).
        self._plain_send = False
        #: Bytes of messages queued for ``receive()``, and whether reading
        #: from the client is paused until they are taken.
        self._pending_receive = 0
        self._reading_paused = False
        #: Whether reading is paused because the client takes nothing of
        #: what was written (see :class:`~houweb._window.SendWindow`).
        self._writing_blocked = False
        #: Whether ``connect()`` is deciding (nothing is read meanwhile).
        self._opening = False
        #: When the client last sent anything (the reactor's clock), and how
        #: many bytes it had taken when last pinged (see ``bytes_taken``).
        self._heard = self._reactor.seconds()
        self._taken: int | None = None
        #: How many bytes the client had taken when this server sent its
        #: close frame (or when its close handshake timeout last fired).
        self._close_taken: int | None = None
        #: Whether frames may be read by :mod:`houweb._ws_frames` (the
        #: options allow it: set once open), and the largest payload then.
        self._plain = False
        self._limit = 0
        #: A plain frame being read (its first bytes came, not all of it),
        #: gathered in one buffer (a list of the reads, as autobahn keeps
        #: them, holds some 40 bytes of object per read: a client trickling a
        #: frame within the limit a byte or two per read would make it hold
        #: 20 to 40 times the frame), read into directly when the transport
        #: allows it (:meth:`_read_into_frame`).
        self._frame: Gathering | None = None
        #: Whether the factory counts this connection open (see ``_Factory``).
        self._counted = False
        #: The start of a plain frame's header, not all of it yet.
        self._header: bytearray | None = None
        #: Bytes read while autobahn's parser is inside a data frame's
        #: payload (a fragment, or any frame it reads) and wants more than
        #: came: held until the rest of the payload or ``_HOLD`` bytes came,
        #: so that autobahn keeps one piece of a trickled frame per
        #: ``_HOLD`` bytes, not one per read (as above).
        self._held: bytearray | None = None

    def _connectionMade(self) -> None:
        super()._connectionMade()
        self.factory.connection_opened()
        self._counted = True
        limit = self.endpoint.max_message_size
        self.maxMessagePayloadSize = self.maxFramePayloadSize = limit
        # A client that answers no ping is dropped (1006): silent connections
        # do not hold their place for ever. autobahn's timers truncate their
        # deadline to a whole second (up to 1 s early), hence the second added.
        self.autoPingInterval = self.autoPingTimeout = self._idle_timeout + 1
        self._web_request.registerProducer(self._window, True)
        transport: Any = self.transport
        transport.bufferSize = READ_SIZE

    def dataReceived(self, data: bytes) -> None:
        self._heard = self._reactor.seconds()
        if self._frame is not None:
            self.trafficStats.incomingOctetsWireLevel += len(data)
            self._more_of_frame(data)
        elif self._header is not None:
            self.trafficStats.incomingOctetsWireLevel += len(data)
            self._rest_of_header(data)
        elif self._reads_plain_frames():
            self.trafficStats.incomingOctetsWireLevel += len(data)
            self._read_plain(data)
        elif self._held is not None or len(data) < min(self._payload_wanted(), _HOLD):
            self._hold(data)
        else:
            # Straight to autobahn's protocol (a private name): its Twisted
            # adapter's dataReceived formats a debug line's arguments on
            # every read, whether or not debug logging is on.
            self._dataReceived(data)

    def _reads_plain_frames(self) -> bool:
        """
        Whether the next bytes read may go to :func:`~houweb._ws_frames.read_frames`:
        the connection is open with the plain options, and autobahn's parser
        holds nothing (no bytes, no frame or fragmented message begun, no
        ping waiting for its pong: a frame would restart its timeout).
        """
        return (
            self._plain
            and self.state == self.STATE_OPEN
            and not self.data
            and self.current_frame is None
            and not self.inside_message
            and self.autoPingTimeoutCall is None
        )

    def _read_plain(self, data: bytes | bytearray) -> None:
        """
        Deliver the whole plain frames at the start of ``data``; keep a
        plain frame that is not all here (:meth:`_more_of_frame`), and hand
        the rest, from the first other frame on, to autobahn's parser.
        """
        at, end, messages, octets = read_frames(data, self._limit, self._deliver)
        if messages:
            self._count_received(messages, octets)
        if end:
            self._frame = Gathering(
                memoryview(data)[at:], end - at, self.factory.spares.take(end - at)
            )
            self._set_direct_reads(True)
        elif header_incomplete(data, at):
            self._header = bytearray(memoryview(data)[at:])
        elif at < len(data):
            self._to_autobahn(data[at:])

    def _rest_of_header(self, data: bytes) -> None:
        """Read ``data`` onto the start of a plain frame's header, then decide again."""
        header = self._header
        assert header is not None
        self._header = None
        data = bytes(header) + data
        if self._reads_plain_frames():
            self._read_plain(data)
        else:
            self._to_autobahn(data)

    def _more_of_frame(self, data: bytes) -> None:
        """Copy ``data`` into the plain frame begun; once whole, deliver it."""
        gathering = self._frame
        assert gathering is not None
        take = gathering.add(data)
        if gathering.whole:
            self._frame_whole(data[take:])

    def _set_direct_reads(self, wanted: bool) -> None:
        """
        Have the transport's reads go straight into the frame being gathered
        (:meth:`_read_into_frame`), or no longer.

        Only on a plain TCP connection (a TLS one decrypts what it reads):
        the transport's ``doRead`` (what the reactor calls when the socket
        is readable, ``IReadDescriptor``'s) is replaced on the instance while
        a frame is gathered, and Twisted's own is back once it is whole.
        A ``doRead`` someone else set on the instance stays: Twisted's
        ``abortConnection`` sets one that reads nothing.
        """
        transport: Any = self.transport
        if not isinstance(transport, tcp.Connection) or transport.TLS:
            return
        attributes = vars(transport)
        if wanted:  # on the instance: the class's doRead (Twisted's) stays
            attributes.setdefault("doRead", self._read_into_frame)
        elif attributes.get("doRead") == self._read_into_frame:
            del attributes["doRead"]

    def _read_into_frame(self) -> object:
        """
        The transport's ``doRead`` while a plain frame is gathered: read the
        socket straight into the frame's buffer, up to the frame's end (what
        follows is read as usual, by Twisted's ``doRead``, once the frame is
        whole). For a 1 MiB message this saves copying each read into the
        buffer, and Twisted's 256 KiB ``bytes`` per read.

        :returns: as Twisted's ``tcp.Connection.doRead``: ``None``, or why
            the connection is lost (the socket's error, or the client's end).
        """
        gathering = self._frame
        transport: Any = self.transport
        if gathering is None:  # pragma: no cover - the frame ended without _frame_whole
            self._set_direct_reads(False)
            return transport.doRead()
        room = gathering.room()
        try:
            count = transport.socket.recv_into(room)
        except BlockingIOError:
            return None
        except OSError:
            return main.CONNECTION_LOST
        finally:
            room.release()
        if not count:
            return main.CONNECTION_DONE
        self._heard = self._reactor.seconds()
        self.trafficStats.incomingOctetsWireLevel += count
        gathering.received(count)
        if gathering.whole:
            self._frame_whole(b"")
        return None

    def _frame_whole(self, rest: bytes) -> None:
        """
        The plain frame being gathered is whole: deliver it, then read
        ``rest`` (what followed it in the same read).
        """
        gathering = self._frame
        assert gathering is not None
        self._frame = None
        self._set_direct_reads(False)
        buffer, end = gathering.buffer, gathering.size
        frame = memoryview(buffer)[:end]
        try:
            if not self._reads_plain_frames():  # closing meanwhile, or a ping sent
                self._to_autobahn(bytes(frame) + rest)
                return
            start, _ = frame_size(buffer, 0, 0)
            mask = bytes(frame[start - 4 : start])
            unmask_in_place(buffer, start, mask, end)
            payload = frame[start:]
            size = len(payload)
            if buffer[0] == TEXT:
                try:
                    text = str(payload, "utf-8")
                except UnicodeDecodeError:
                    payload.release()
                    unmask_in_place(buffer, start, mask, end)  # as it came, for autobahn to refuse
                    self._to_autobahn(bytes(frame) + rest)
                    return
                self._deliver(text, None, size)
            else:
                self._deliver(None, bytes(payload), size)
            payload.release()
        finally:
            frame.release()
            self.factory.spares.give(buffer)
        self._count_received(1, size)
        if rest:
            if self._reads_plain_frames():
                self._read_plain(rest)
            else:
                self._to_autobahn(rest)

    def _payload_wanted(self) -> int:
        """:returns: how many payload bytes of a data frame autobahn's parser waits for."""
        if self.state != self.STATE_OPEN and self.state != self.STATE_CLOSING:
            return 0  # the handshake: no frame yet (nor current_frame)
        frame = self.current_frame
        if frame is None or frame.opcode > 7 or self.data:
            return 0
        return int(frame.length - self.current_frame_masker.pointer())

    def _hold(self, data: bytes) -> None:
        """Hold ``data`` for autobahn's parser until its frame's rest or ``_HOLD`` bytes came."""
        held = self._held
        if held is None:
            self._held = bytearray(data)
            return
        held += data
        if len(held) >= min(self._payload_wanted(), _HOLD):
            self._held = None
            self._dataReceived(bytes(held))

    def _to_autobahn(self, data: bytes | bytearray) -> None:
        """Hand ``data`` (already counted as read) to autobahn's parser."""
        self.data += bytes(data)
        self.consumeData()

    def _count_received(self, messages: int, octets: int) -> None:
        """Count whole messages read without autobahn, as autobahn counts its own."""
        stats = self.trafficStats
        stats.incomingWebSocketFrames += messages
        stats.incomingWebSocketMessages += messages
        stats.incomingOctetsWebSocketLevel += octets
        stats.incomingOctetsAppLevel += octets

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        """
        Write a frame: at once when nothing else waits (see
        :func:`~houweb._writethrough.write_now`), else as autobahn does.
        """
        if sync or chopsize or self.send_queue or self.logOctets:  # type: ignore[attr-defined]
            super().sendData(data, sync, chopsize)
            return
        write_now(self.transport, data)
        if self.state == self.STATE_OPEN:
            self.trafficStats.outgoingOctetsWireLevel += len(data)
        elif self.state in (self.STATE_CONNECTING, self.STATE_PROXY_CONNECTING):
            self.trafficStats.preopenOutgoingOctetsWireLevel += len(data)

    def _send_whole(self, payload: bytes, binary: bool) -> bool:
        """
        Send ``payload`` as one unmasked, uncompressed frame, its header and
        the payload written together without copying a payload larger than
        ``_JOIN_BELOW`` into one buffer (autobahn's ``sendFrame`` joins
        them); a small one joined to its header. Only in the plain case
        (no compression, fragmentation, masking, timing or frame logging, no
        queue, within the size limit); otherwise ``sendMessage`` does it.

        :returns: whether it was sent here.
        """
        size = len(payload)
        if not self._plain_send or self.send_queue or 0 < self.maxMessagePayloadSize < size:
            return False
        first = 0x82 if binary else 0x81  # FIN and the opcode
        if size <= 125:
            header = bytes((first, size))
        elif size <= 0xFFFF:
            header = _HEADER_16.pack(first, 126, size)
        else:
            header = _HEADER_64.pack(first, 127, size)
        if size <= _JOIN_BELOW:
            write_now(self.transport, header + payload)
        else:
            write_now(self.transport, header, payload)
        stats = self.trafficStats
        stats.outgoingWebSocketMessages += 1
        stats.outgoingWebSocketFrames += 1
        stats.outgoingOctetsAppLevel += size
        stats.outgoingOctetsWebSocketLevel += size
        stats.outgoingOctetsWireLevel += len(header) + size
        return True

    def sendPing(self, payload: bytes | None = None) -> None:
        self._taken = bytes_taken(self.transport)
        super().sendPing(payload)

    def sendCloseFrame(
        self, code: int | None = None, reasonUtf8: bytes | None = None, isReply: bool = False
    ) -> None:
        self._close_taken = bytes_taken(self.transport)
        armed = self.closeHandshakeTimeoutCall
        super().sendCloseFrame(code, reasonUtf8, isReply)
        batched = self.closeHandshakeTimeoutCall
        if batched is not None and batched is not armed:
            # autobahn arms it on txaio's batched timer, which truncates the
            # due time to a whole second of the clock (int(now + 1)): it
            # fired anywhere from 0 to 1 s after the close frame was queued,
            # judging a client that had had no time to take anything.
            batched.cancel()
            self.closeHandshakeTimeoutCall = self._reactor.callLater(
                self.closeHandshakeTimeout,
                self.onCloseHandshakeTimeout,
            )

    def onCloseHandshakeTimeout(self) -> None:
        """
        No close frame answered this server's within ``closeHandshakeTimeout``
        (1 s, counted from when the close frame was queued: see
        :meth:`sendCloseFrame`): autobahn drops the connection. Not while the client is still
        taking what was sent before the close frame (messages sent without
        awaiting, then ``close()``): the close frame waits behind them, so
        wait for the answer again; a client that takes nothing is dropped.
        """
        self.closeHandshakeTimeoutCall = None
        taken, self._close_taken = self._close_taken, bytes_taken(self.transport)
        if (
            self.state == self.STATE_CLOSING
            and taken is not None
            and self._close_taken is not None
            and self._close_taken > taken
        ):
            self.closeHandshakeTimeoutCall = self._reactor.callLater(
                self.closeHandshakeTimeout,  # type: ignore[attr-defined]  # set by setProtocolOptions
                self.onCloseHandshakeTimeout,
            )
            return
        super().onCloseHandshakeTimeout()

    def onAutoPingTimeout(self) -> None:
        """
        No pong within ``autoPingTimeout``: autobahn drops the connection.
        Not while houweb itself is not reading (``receive()`` is behind: the
        pong waits unread behind the client's messages), nor when the client
        sent bytes meanwhile (a message too large to arrive within the
        timeout, the pong queued behind it), nor when it took bytes meanwhile
        (a slow download: the ping waits behind what was sent before): wait
        for the pong again.
        """
        self.autoPingTimeoutCall = None
        taken, self._taken = self._taken, bytes_taken(self.transport)
        if (
            self._reading_paused
            or self._reactor.seconds() - self._heard < self.autoPingTimeout
            or (taken is not None and self._taken is not None and self._taken > taken)
        ):
            self.autoPingTimeoutCall = self._reactor.callLater(
                self.autoPingTimeout, self.onAutoPingTimeout
            )
            return
        super().onAutoPingTimeout()

    # autobahn's events

    def onConnect(self, handshake: Any) -> Deferred[None]:  # type: ignore[override]
        """A valid handshake: ``connect()`` decides (autobahn waits for the Deferred)."""
        self._decision = Deferred()
        # No frame may come before the answer (RFC 6455 section 4.1): read
        # none while connect() decides (autobahn would keep them all).
        self._opening = True
        self._read(False)
        self._queue("connect", self.request)
        self._later(self._refuse, 403, "Forbidden")
        return self._decision

    def onOpen(self) -> None:
        self._plain = (
            self._perMessageCompress is None
            and self.websocket_version != 0
            and bool(self.applyMask)  # type: ignore[attr-defined]
            and bool(self.requireMaskedClientFrames)  # type: ignore[attr-defined]
            and bool(self.utf8validateIncoming)  # type: ignore[attr-defined]
            and not self.logOctets  # type: ignore[attr-defined]
            and not self.logFrames  # type: ignore[attr-defined]
            and not self.trackedTimings
        )
        limits = [
            limit for limit in (self.maxMessagePayloadSize, self.maxFramePayloadSize) if limit > 0
        ]
        self._limit = min(limits, default=0)
        self._plain_send = (
            self._perMessageCompress is None
            and not self.autoFragmentSize  # type: ignore[attr-defined]
            and not self.maskServerFrames  # type: ignore[attr-defined]
            and not self.trackedTimings
            and not self.logFrames  # type: ignore[attr-defined]
            and not self.logOctets  # type: ignore[attr-defined]
        )
        self._web_request.setResponseCode(101)
        self._done_opening()
        self._opening = False
        self._read(True)

    def onMessage(self, payload: bytes, is_binary: bool) -> None:
        if is_binary:
            self._deliver(None, payload, len(payload))
        else:
            self._deliver(payload.decode("utf-8"), None, len(payload))

    def _deliver(self, text: str | None, data: bytes | None, size: int) -> None:
        """Queue one message for ``receive()``: ``text`` or ``data``, ``size`` bytes."""
        size += _MESSAGE_COST
        self._pending_receive += size
        self._later(self._run, "receive", text, data, size)
        if self._pending_receive > self.endpoint.max_pending_receive and not self._reading_paused:
            # receive() is behind: let TCP tell the client to wait.
            self._reading_paused = True
            self._read(False)

    def _received(self, size: int) -> None:
        """A message was taken by ``receive()``: read again once under the limit."""
        self._pending_receive -= size
        if self._reading_paused and self._pending_receive <= self.endpoint.max_pending_receive:
            self._reading_paused = False
            self._read(True)

    def _client_taking(self, taking: bool) -> None:
        """The client stopped (or started again) taking what is written."""
        if self._writing_blocked == (not taking):
            return
        self._writing_blocked = not taking
        self._read(taking)

    def _read(self, wanted: bool) -> None:
        """Pause reading from the client, or resume it when nothing holds it paused."""
        transport: Any = self.transport
        if not wanted:
            transport.pauseProducing()
        elif not (self._reading_paused or self._writing_blocked or self._opening or self._ended):
            transport.resumeProducing()
            self._read_directly(transport)

    def _read_directly(self, transport: Any) -> None:
        """
        Have the loop call the reactor's read of ``transport`` (the socket
        just registered for reading by ``resumeProducing``) directly:
        Twisted registers ``callWithLogger(transport, reactor._readOrWrite,
        transport, True)``, which per read asks the protocol for its log
        prefix and copies a log context into a new context frame (about a
        tenth of the reactor thread in a 16-byte echo), for legacy
        ``log.msg`` calls, none of which a WebSocket's read makes. The
        reactor's ``_readOrWrite`` (houweb's, a private name of Twisted's it
        extends) still reads, loses the connection on an error or a closed
        socket and logs an exception from ``doRead``, as before.

        Only an open WebSocket on a plain TCP connection of houweb's
        reactor; Twisted's ``removeReader`` (``pauseProducing``, the
        connection lost) drops this registration as its own, and its
        ``addReader`` puts back its own: hence this after each resume. Not
        when the loop refused Twisted's registration (its closed handle for
        the fd, see :class:`~houweb._reactor.HouwebReactor`): Twisted then
        counts no reader to remove, and this one would outlive the
        connection, reading the next socket given the same fd number.
        """
        reactor = self._reactor
        if (
            self.state == self.STATE_OPEN
            and isinstance(reactor, HouwebReactor)
            and isinstance(transport, tcp.Connection)
            and not transport.TLS
            and transport.connected
            and not transport.disconnecting
            # the loop refused Twisted's own registration (HouwebReactor._unwatchable):
            # Twisted does not count it a reader, and would not remove this one
            and not getattr(transport, "houweb_unwatched", False)
        ):
            try:
                self._loop.add_reader(transport.fileno(), reactor._readOrWrite, transport, True)
            except (OSError, RuntimeError):  # the loop gave up on the socket: Twisted's stays
                pass

    def onClose(self, was_clean: bool, code: int | None, reason: str | None) -> None:
        if self._ended:
            return
        self._ended = True
        self._frame = self._header = None  # a frame cut short: its buffer goes
        self._set_direct_reads(False)
        if self._counted:
            self._counted = False
            self.factory.connection_closed()
        self._done_opening()
        self._window.stopProducing()
        if self.closedByMe and self.localCloseCode is not None:
            code = self.localCloseCode  # the client's reply only acknowledges it
        elif not was_clean:
            code = ABNORMAL
        elif code is None:
            code = NO_STATUS
        self._later(self._disconnect, code)

    def _disconnect(self, code: int) -> Awaitable[None] | None:
        """``disconnect`` pairs with ``accept``: refused connections get none."""
        return self._run("disconnect", code) if self._accepted else None

    def stopWhenIdle(self) -> None:
        """The server is shutting down: close with 1001 (going away)."""
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(GOING_AWAY, isReply=False)
        elif self.state != self.STATE_CLOSED:
            self.dropConnection(abort=False)

    # what the WebSocket instance asks for

    def accept(self) -> asyncio.Future[None]:
        if self._decision is not None and not self._decision.called:
            self._accepted = True
            if not self._ended:
                self._decision.callback(None)
        return self._opened

    def send(self, payload: bytes, binary: bool) -> asyncio.Future[None] | None:
        """
        Write one message. :returns: a future done once the client took what
        was sent (``None`` when nothing waits); a client that leaves more
        than ``max_pending_send`` bytes untaken is disconnected.
        """
        if not self._accepted:
            raise RuntimeError("send() before accept()")
        if self.state != self.STATE_OPEN:
            return None
        behind = self._window.paused
        if not self._send_whole(payload, binary):
            self.sendMessage(payload, isBinary=binary)
        if not self._window.paused:
            return None
        if behind:
            self._window.backlog += len(payload)
            if self._window.backlog > self.endpoint.max_pending_send:
                log.warn(
                    "houweb: {what}: the client took none of the last {size} bytes sent; "
                    "closing the connection (max_pending_send)",
                    what=self._what,
                    size=self._window.backlog,
                )
                self.dropConnection(abort=True)
                return None
        return self._window.wait()

    def close(self, code: int, reason: bytes = b"") -> None:
        if not self._accepted:
            self._refuse(403, "Forbidden")
        elif self.state == self.STATE_OPEN:
            self.sendCloseFrame(code, reasonUtf8=reason or None, isReply=False)

    def on_reactor(
        self, action: Callable[..., asyncio.Future[None] | None], *args: Any
    ) -> Awaitable[None]:
        """
        Do ``action(*args)`` on the reactor thread.

        :returns: on the reactor thread, the asyncio future ``action``
            returned, or a done one (``action`` ran, or raised at once: one
            future of the connection's, done for good); from another thread,
            a concurrent future done when that one is (cancelling it before
            ``action`` ran keeps ``action`` from running).
        """
        # threadable.isInIOThread(), without its threading.current_thread()
        if threading.get_ident() == threadable.ioThread:
            waiting = action(*args)
            if waiting is not None:
                return waiting
            return self._done
        future: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            # Cancelled by its thread before it ran: it does not run (as a
            # pool's call), and the future takes no result (which raises).
            if not future.set_running_or_notify_cancel():
                return
            try:
                waiting = action(*args)
            except Exception as exc:  # noqa: BLE001 - handed to the waiting thread
                future.set_exception(exc)
            else:
                if waiting is None:
                    future.set_result(None)
                else:
                    waiting.add_done_callback(lambda _: future.set_result(None))

        self._reactor.callFromThread(run)
        return future  # type: ignore[return-value]

    # running the callbacks in order

    def _queue(self, name: str, *args: Any) -> None:
        """Call the instance's ``name`` callback once what was queued before is done."""
        self._later(self._run, name, *args)

    def _later(self, function: Callable[..., Any], *args: Any) -> None:
        """
        Call ``function(*args)`` once what was queued before is done (and
        await what it returns, if anything).
        """
        self._events.append((function, args))
        if not self._draining:
            self._draining = True
            self._drainer = self._loop.create_task(self._drain())

    async def _drain(self) -> None:
        """
        Work through :attr:`_events` in order, then end: one task for a run
        of events (not one per message), and none while the connection idles.
        """
        events = self._events
        try:
            while events:
                function, args = events.popleft()
                waiting = function(*args)
                if waiting is not None:
                    await waiting
        finally:
            self._draining = False
            if events:  # something failed: go on with the rest
                self._draining = True
                self._drainer = self._loop.create_task(self._drain())

    def _run(self, name: str, *args: Any) -> Awaitable[None] | None:
        """
        Call the instance's ``name`` callback (``receive`` with its text,
        bytes and the size :meth:`_received` then counts taken); its
        failure is logged, not passed on.

        The coroutine's first step runs here, in the task working through
        the events (:meth:`_drain`): a callback that awaits nothing that
        waits (an echo's ``send``) ends in it, with no awaitable built.

        :returns: ``None`` once the callback ended, else an awaitable of the
            rest of it.
        """
        size = 0
        rest: Awaitable[Any] | None = None
        try:
            if name == "receive":
                text_data, bytes_data, size = args
                if text_data is None:
                    coroutine = self.endpoint.receive(bytes_data=bytes_data)
                else:
                    coroutine = self.endpoint.receive(text_data=text_data)
            else:
                coroutine = getattr(self.endpoint, name)(*args)
            # In a copy of the context, as if in a task of its own: context
            # variables it sets do not leak into the next callback.
            context = contextvars.copy_context()
            try:
                first = context.run(coroutine.send, None)
            except StopIteration:
                pass
            else:
                started = cast("Coroutine[Any, Any, Any]", _Started(coroutine, first))
                rest = bridge(started, self._loop, context)
        except (Exception, asyncio.CancelledError):  # noqa: BLE001 - logged
            self._failed(name)
        finally:
            if size and rest is None:
                self._received(size)
        return None if rest is None else self._rest(name, size, rest)

    async def _rest(self, name: str, size: int, rest: Awaitable[Any]) -> None:
        """Await the rest of a callback :meth:`_run` began (``size``: as there)."""
        try:
            await rest
        except (Exception, asyncio.CancelledError):  # noqa: BLE001 - logged
            self._failed(name)
        finally:
            if size:
                self._received(size)

    def _failed(self, name: str) -> None:
        """The ``name`` callback raised (the exception being handled): log it, close."""
        log.failure(
            "houweb: {what}.{name} raised an exception",
            None,
            LogLevel.error,
            what=self._what,
            name=name,
        )
        if not self._accepted:
            self._refuse(500, "Internal Server Error")
        elif self.state == self.STATE_OPEN:
            self.sendCloseFrame(INTERNAL_ERROR, isReply=False)

    def _refuse(self, status: int, reason: str) -> None:
        """Refuse the upgrade (``connect`` did not accept) unless already decided."""
        if self._decision is not None and not self._decision.called and not self._ended:
            self._web_request.setResponseCode(status)
            self._decision.errback(ConnectionDeny(status, reason))

    def _done_opening(self) -> None:
        if not self._opened.done():
            self._opened.set_result(None)


class _Started:
    """
    A coroutine whose first step ran already, for
    :func:`~houweb._coroutines.bridge` to drive on: its first ``send``
    gives what that step yielded, the rest go to the coroutine.
    """

    def __init__(self, coroutine: Coroutine[Any, Any, Any], first: object) -> None:
        self._coroutine = coroutine
        self._first: object = first
        self._started = False

    def send(self, value: object) -> object:
        if not self._started:
            self._started = True
            first, self._first = self._first, None
            return first
        return self._coroutine.send(value)

    def throw(self, error: BaseException) -> object:
        return self._coroutine.throw(error)
