"""
Large response bodies: held in pieces, and sent a slice at a time.

A body written to twisted.web in one ``request.write`` reaches the transport
whole; what the socket does not take at once is copied (the unsent rest) and
kept in the transport's buffer, which Twisted joins into one buffer before it
sends: for a 10 MB API result, copies of megabytes on the reactor thread, each
one C call during which no other client is answered. Here a body of
:data:`LARGE` bytes or more is sent by a :class:`BodyProducer`: it writes the
body a slice of at most :data:`SLICE` bytes at a time, as the client takes
them (the transport pauses it while its buffer is full, and resumes it when
it drained), and at most :data:`TURN_BYTES` per turn of the reactor before
letting other connections run. A large API result never becomes one buffer at
all: :func:`houweb._json_pieces.encode` gives it in pieces, which a
:class:`PiecedResponse` holds and the producer writes as they are.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IDelayedCall, IPushProducer
from zope.interface import implementer

from ._response import Body, Response

#: Bodies of at least this many bytes are sent by a :class:`BodyProducer`;
#: smaller ones are written at once, which costs little.
LARGE = 1024 * 1024
#: The most bytes handed to the transport in one write: a piece that size
#: or smaller is written as it is, a larger one (a plain bytes body) a copy
#: of a slice at a time.
SLICE = 128 * 1024
#: Bytes written in one turn of the reactor at most, when the client reads
#: as fast as they are written: then the next turn, after other
#: connections had theirs.
TURN_BYTES = 512 * 1024


class PiecedResponse(Response):
    """
    A :class:`~houweb.Response` whose body is a list of bytes pieces (a large
    JSON result, see :func:`houweb._json_pieces.encode`), sent as they are
    by a :class:`BodyProducer`, never joined into one buffer on the way.
    Everything else is a Response's: :meth:`body` gives the joined body to
    whoever asks (the MCP tools do), :meth:`setBody` replaces the pieces.

    :param pieces: the body, in order.
    """

    def __init__(self, pieces: list[bytes], status: int = 200, content_type: str = "text/html"):
        super().__init__(b"", status, content_type)
        self._pieces = pieces
        self._length = sum(len(piece) for piece in pieces)

    def __repr__(self) -> str:
        return f"<Response {self.statusLabel()} {self._length} bytes in {len(self._pieces)} pieces>"

    def body(self) -> bytes:
        """:returns: the body, the pieces joined."""
        return b"".join(self._pieces)

    def bodyPieces(self) -> list[bytes]:
        """:returns: the body's pieces (the list itself, not a copy)."""
        return self._pieces

    def setBody(self, body: Body, content_type: str = "text/html") -> None:
        super().setBody(body, content_type)
        self._pieces = [super().body()]
        self._length = len(self._pieces[0])

    def contentLength(self) -> int:
        return self._length


def body_pieces(response: Response) -> list[bytes]:
    """:returns: ``response``'s body (not a file's) as a list of pieces, without copying it."""
    if isinstance(response, PiecedResponse):
        return response.bodyPieces()
    return [response.body()]


def is_large(response: Response) -> bool:
    """
    :returns: whether :func:`send_large_body` sends the body of ``response``:
        an in-memory body of :data:`LARGE` or more, or one held in pieces
        (so nothing joins it on the reactor thread), that has a body to send.
    """
    if response.filePath() is not None or response.status() < 200:
        return False
    if response.status() in (204, 304):
        return False
    return isinstance(response, PiecedResponse) or response.contentLength() >= LARGE


def send_large_body(request: Any, response: Response) -> bool:
    """
    Send the body of ``response`` (status and headers already set on the
    twisted.web ``request``) with a :class:`BodyProducer` if it is
    :data:`LARGE` or held in pieces; for a HEAD request, only the headers.

    :returns: whether it did (else the caller writes the body itself).
    """
    if not is_large(response):
        return False
    if not response.isChunked():
        request.setHeader(b"content-length", b"%d" % response.contentLength())
    if request.method == b"HEAD":
        request.finish()
        return True
    BodyProducer(request, body_pieces(response)).start()
    return True


@implementer(IPushProducer)
class BodyProducer:
    """
    Writes ``pieces`` as the body of a twisted.web ``request``, a slice of
    at most :data:`SLICE` bytes at a time, then finishes the request. It
    holds the pieces until it is done or stopped (the client left), and not a
    moment longer, so a large body is freed as soon as it is no longer due.

    Registered as the request's streaming producer: the HTTP channel pauses
    it while the transport holds more than its buffer size (so a slow reader
    never has more than about that plus one slice buffered on the reactor's
    side, and the channel's drain timer drops a client that reads nothing),
    and resumes it once the transport drained.
    """

    def __init__(self, request: Any, pieces: list[bytes]) -> None:
        self._request: Any = request
        self._pieces = pieces
        self._index = 0  # the piece being written
        self._offset = 0  # bytes of it written
        self._paused = False
        self._next_turn: IDelayedCall | None = None

    def start(self) -> None:
        """Write the status line, the headers and the body's first slices."""
        request = self._request
        request.registerProducer(self, True)
        # The request's end, whichever way it comes, frees the body.
        request.notifyFinish().addBoth(self._ended)
        self._turn()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        if self._next_turn is None:
            self._turn()

    def stopProducing(self) -> None:
        """Stop for good (the connection is gone), letting go of the body."""
        self._request = None
        self._pieces = []
        if self._next_turn is not None:
            if self._next_turn.active():
                self._next_turn.cancel()
            self._next_turn = None

    def _ended(self, result: object) -> None:
        self.stopProducing()

    def _turn(self) -> None:
        """Write slices until paused, done, or :data:`TURN_BYTES` were written."""
        self._next_turn = None
        budget = TURN_BYTES
        while not self._paused and self._request is not None:
            if budget <= 0:
                self._next_turn = self._request.channel.callLater(0, self._turn)
                return
            data = self._take()
            if not data:
                request = self._request
                self.stopProducing()
                request.unregisterProducer()
                request.finish()
                return
            budget -= len(data)
            self._request.write(data)

    def _take(self) -> bytes:
        """:returns: the next slice of the body, ``b""`` at its end."""
        while self._index < len(self._pieces):
            piece = self._pieces[self._index]
            if self._offset == 0 and len(piece) <= SLICE:
                self._index += 1
                if piece:
                    return piece
                continue
            data = piece[self._offset : self._offset + SLICE]
            self._offset += len(data)
            if self._offset >= len(piece):
                self._index += 1
                self._offset = 0
            return data
        return b""
