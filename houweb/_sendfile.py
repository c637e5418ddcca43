"""
Sending a file's bytes with ``os.sendfile``: from the page cache straight to
a plain TCP socket, never through Python. Whole-file and single-range answers
use it; the rest (TLS connections, multipart ranges, HEAD, platforms without
``os.sendfile``) keep twisted.web's static producers.

The producer writes beside the transport, not through it, so it only sends
while the transport's own buffer is empty (the status line and headers go
through the transport first) and it lets the transport tell it when the
socket is writable again: the same path the transport takes after its buffer
filled up and it paused its producer, the HTTP channel, which resumes the
request's producer.
"""

from __future__ import annotations

import errno
import os
import socket as _socket
from typing import Any

from twisted.internet import tcp
from twisted.internet.interfaces import IPushProducer
from twisted.web import http, static
from zope.interface import implementer

from ._writethrough import buffer_empty

#: Read once: ``twisted.web.http`` is a deprecation proxy, slow to read an attribute of.
_NO_BODY_CODES = frozenset(http.NO_BODY_CODES)

#: What ``sendfile`` answers for a file it cannot send (some file systems,
#: special files): such a file is read and written instead.
_UNSUPPORTED = frozenset(
    getattr(errno, name)
    for name in ("EINVAL", "ENOSYS", "EOPNOTSUPP", "ENOTSUP", "ESPIPE")
    if hasattr(errno, name)
)

#: Bytes sent in one reactor turn at most before letting other connections
#: run: more than the socket buffer takes, so a turn ends when it is full.
TURN_BYTES = 4 * 1024 * 1024

#: While a file larger than this is sent, the socket takes at most this many
#: bytes not yet sent (``TCP_NOTSENT_LOWAT``). Without it the socket queues
#: megabytes beyond what the client's window lets out, and the kernel sends
#: them later, in the processing of the client's ACKs: on loopback, inside
#: the client's own reads. Measured with wrk and 1 MiB files (pinned, 8 s
#: runs, 3 rounds): wrk's CPU per response 414-450 -> 214-284 us, server and
#: wrk together 813-961 -> 582-688 us; the server's own about the same.
NOTSENT_LOWAT = 64 * 1024

#: The socket option, where the platform has it (Linux, macOS).
_TCP_NOTSENT_LOWAT: int | None = getattr(_socket, "TCP_NOTSENT_LOWAT", None)


def sendfile_producer(request: Any, producer: Any) -> Any:
    """
    :param producer: what twisted.web's ``static.File`` made for ``request``,
        with the status and headers set.
    :returns: a :class:`SendfileProducer` doing its job where one can, else
        ``producer`` itself.
    """
    if not hasattr(os, "sendfile") or request.method == b"HEAD" or request.code in _NO_BODY_CODES:
        return producer
    channel = request.channel
    transport = getattr(channel, "transport", None)
    # TLS wraps the TCP connection in a protocol: bytes must go through it.
    if not isinstance(transport, tcp.Connection) or transport.producer is not channel:
        return producer
    if type(producer) is static.SingleRangeStaticProducer:
        offset, size = producer.offset, producer.size
    elif type(producer) is static.NoRangeStaticProducer:
        length = request.responseHeaders.getRawHeaders(b"content-length")
        if not length:
            return producer
        offset, size = 0, int(length[-1])
    else:
        return producer
    return SendfileProducer(request, producer.fileObject, offset, size)


@implementer(IPushProducer)
class SendfileProducer:
    """
    Sends ``size`` bytes of an open file from ``offset`` as the body of a
    twisted.web request on a plain TCP connection, then finishes the request
    and closes the file. A short file (it shrank since its size was sent)
    aborts the connection; so does a send error (the client went away). A
    file ``sendfile`` refuses is sent by twisted.web's producer instead.
    """

    def __init__(self, request: Any, file: Any, offset: int, size: int) -> None:
        self.request: Any = request
        self._file = file
        self._offset = offset
        self._remaining = size
        self._transport = request.channel.transport
        self._paused = False
        #: The socket's ``TCP_NOTSENT_LOWAT`` before this body, while it is changed.
        self._lowat_before: int | None = None

    def start(self) -> None:
        """Write the status line and headers, and send the body once they are out."""
        if self._remaining > NOTSENT_LOWAT:
            self._lowat_before = _set_notsent_lowat(self._transport, NOTSENT_LOWAT)
        self.request.registerProducer(self, True)
        self.request.write(b"")
        self._send()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._send()

    def stopProducing(self) -> None:
        """Stop for good (the connection is gone, or everything was sent)."""
        if self.request is not None:
            self.request = None
            self._file.close()
            self._restore_lowat()

    def _restore_lowat(self) -> None:
        """Give the socket back its ``TCP_NOTSENT_LOWAT`` (a keep-alive connection goes on)."""
        if self._lowat_before is not None:
            _set_notsent_lowat(self._transport, self._lowat_before)
            self._lowat_before = None

    def _send(self) -> None:
        if self.request is None or self._paused:
            return
        if not buffer_empty(self._transport):
            self._when_writable()
            return
        socket, source = self._transport.fileno(), self._file.fileno()
        budget = TURN_BYTES
        while self._remaining:
            if budget <= 0:
                # Let other connections run; the socket is likely writable now.
                self._when_writable()
                return
            wanted = min(self._remaining, budget)
            try:
                sent = os.sendfile(socket, source, self._offset, wanted)
            except BlockingIOError:
                self._when_writable()
                return
            except OSError as error:
                if error.errno in _UNSUPPORTED:
                    self._read_instead()
                else:
                    self._transport.abortConnection()
                return
            if sent == 0:
                self._transport.abortConnection()
                return
            self._offset += sent
            self._remaining -= sent
            self.request.sentLength += sent
            budget -= sent
            if sent < wanted:
                # The socket buffer is full.
                self._when_writable()
                return
        request = self.request
        # Before finish(), which may start the next pipelined answer at once.
        self._restore_lowat()
        request.unregisterProducer()
        request.finish()
        self.stopProducing()

    def _read_instead(self) -> None:
        """Send the rest with twisted.web's producer: sendfile refused this file."""
        request, file = self.request, self._file
        self.request = None
        self._restore_lowat()
        request.unregisterProducer()
        static.SingleRangeStaticProducer(request, file, self._offset, self._remaining).start()

    def _when_writable(self) -> None:
        """
        Have the transport call back when its buffer is empty and the socket
        writable: it resumes its producer (the channel, which resumes this
        producer) then, if it believes it paused it.
        """
        self._transport.producerPaused = True
        self._transport.startWriting()
        waiting = getattr(self.request.channel, "houweb_waiting_to_write", None)
        if waiting is not None:
            waiting()  # a client that never reads is dropped after idle_timeout


def _set_notsent_lowat(transport: Any, value: int) -> int | None:
    """
    Set ``TCP_NOTSENT_LOWAT`` on ``transport``'s socket.

    :returns: the value it had, or ``None`` where it cannot be set (no such
        option, or the socket is closed already).
    """
    if _TCP_NOTSENT_LOWAT is None:
        return None
    try:
        sock = transport.getHandle()
        before: int = sock.getsockopt(_socket.IPPROTO_TCP, _TCP_NOTSENT_LOWAT)
        sock.setsockopt(_socket.IPPROTO_TCP, _TCP_NOTSENT_LOWAT, value)
    except OSError:
        return None
    return before
