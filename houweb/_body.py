"""
:class:`RequestBody`: the raw body of one request, owned by its
:class:`houweb.Request` rather than by twisted.web.

twisted.web closes a request's body file when the response is finished or
the client leaves, which may be long before the handler (or a thread or
``AsyncURLHandler`` it started) is done reading it. So once the body has
arrived houweb takes the file away from twisted.web: the Request holds it,
and twisted.web gets a :meth:`RequestBody.reader` whose ``close()`` does
nothing (a WSGI app may still read it as ``wsgi.input``). The file itself is
closed (and, being an unnamed temp file, freed) when nothing refers to it any
more: the request is finished, the handler returned, and nothing it started
still holds the Request.
"""

from __future__ import annotations

import io
import threading
from typing import IO


class RequestBody:
    """
    The body of one request, readable from any thread, any number of times.

    :param stored: what twisted.web wrote the body to (a ``BytesIO`` for small
        bodies, an unnamed temp file for large ones); it becomes this
        object's, and nothing else may close it.
    :param held: objects that must live as long as the body (a reservation
        of the server's form-field memory budget, say).
    """

    def __init__(self, stored: IO[bytes] | bytes, held: tuple[object, ...] = ()) -> None:
        self._data: bytes | None = None
        self._file: IO[bytes] | None = None
        if isinstance(stored, bytes):
            self._data = stored
        elif isinstance(stored, io.BytesIO):
            self._data = stored.getvalue()  # small: no file to keep open
        else:
            self._file = stored
        self._lock = threading.Lock()
        self.held = held

    def __len__(self) -> int:
        if self._data is not None:
            return len(self._data)
        with self._lock:
            assert self._file is not None
            return self._file.seek(0, io.SEEK_END)

    def read_at(self, position: int, size: int) -> bytes:
        """:returns: up to ``size`` bytes (all the rest when negative) from ``position``."""
        if self._data is not None:
            end = len(self._data) if size < 0 else position + size
            return self._data[position:end]
        with self._lock:
            assert self._file is not None
            self._file.seek(position)
            return self._file.read(size)

    def read_all(self) -> bytes:
        """:returns: the whole body (loaded into memory)."""
        return self.read_at(0, -1)

    def reader(self) -> IO[bytes]:
        """
        :returns: a new file-like object reading the body from its start, with
            a position of its own. Its ``close()`` does nothing: twisted.web
            closes its request's body file when the response is finished or
            the client leaves, while a WSGI app may still be reading it as
            ``wsgi.input``. The body is freed when nothing refers to it.
        """
        if self._data is not None:
            # A body in memory (nearly all): a BytesIO shares its bytes (no
            # copy) and seeks in C, without a Python view under a buffer.
            return _BytesReader(self._data)
        return _Reader(_BodyView(self))


class _BytesReader(io.BytesIO):
    """A reader of a body held in memory that cannot be closed."""

    def close(self) -> None:
        pass


class _Reader(io.BufferedReader):
    """A buffered reader of a :class:`RequestBody` that cannot be closed."""

    def close(self) -> None:
        pass


class _BodyView(io.RawIOBase):
    """One reader of a :class:`RequestBody`, with its own position."""

    def __init__(self, body: RequestBody) -> None:
        super().__init__()
        self._body = body
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._body.read_at(self._position, len(buffer))
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._position = offset
        elif whence == io.SEEK_CUR:
            self._position += offset
        else:
            self._position = len(self._body) + offset
        self._position = max(self._position, 0)
        return self._position

    def tell(self) -> int:
        return self._position
