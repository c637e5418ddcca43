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
from typing import Any

from twisted.internet import tcp
from twisted.internet.interfaces import IPushProducer
from twisted.web import http, static
from zope.interface import implementer

from ._writethrough import buffer_empty

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


def sendfile_producer(request: Any, producer: Any) -> Any:
    """
    :param producer: what twisted.web's ``static.File`` made for ``request``,
        with the status and headers set.
    :returns: a :class:`SendfileProducer` doing its job where one can, else
        ``producer`` itself.
    """
    if (
        not hasattr(os, "sendfile")
        or request.method == b"HEAD"
        or request.code in http.NO_BODY_CODES
    ):
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

    def start(self) -> None:
        """Write the status line and headers, and send the body once they are out."""
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
        request.unregisterProducer()
        request.finish()
        self.stopProducing()

    def _read_instead(self) -> None:
        """Send the rest with twisted.web's producer: sendfile refused this file."""
        request, file = self.request, self._file
        self.request = None
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
