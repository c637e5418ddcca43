"""
``registerArchiveFile`` (hwebserver): the files inside a zip archive served
under a URL prefix, by the rules of a static directory (``_static``): GET and
HEAD only, no listings, the content type from the name, Range and If-Range
(which ranges are honoured is ``_ranges``' choice), ETag / If-None-Match,
Last-Modified / If-Modified-Since, and a more specific handler below the
prefix wins. A path that names a directory, or anything that is not a file
of the archive, is 404.

Members are streamed from the archive (never extracted) by twisted.web's
static file producers, through :class:`ArchiveMember`, a
:class:`~houweb._render.StreamedFile` whose file is the member. Their
modification time, and so their ETag, is the archive's: replacing the
archive changes every tag.

The producers seek on the reactor thread. A stored member is read as a
slice of the archive file (:class:`_StoredMember`), so a seek costs
nothing; seeking in a compressed member means decompressing everything
before the offset (and from the start again for a range before the last
one), so a compressed member honours Range only when that is cheap: one
range, in a member of at most :data:`MAX_SEEKABLE_COMPRESSED` bytes.
Otherwise it is sent whole (RFC 9110 lets a server ignore Range), with
``Accept-Ranges: none`` above that size.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import zipfile
from dataclasses import dataclass, field
from typing import IO, Any, cast

from twisted.internet.defer import Deferred
from twisted.web import server, static

from . import _registry
from ._errors import OperationFailed
from ._render import StreamedFile
from ._response import Response, guess_content_type, notFoundResponse
from ._site import Call
from ._static import PathLike, below, method_not_allowed, safe_segment
from ._target import Answer

_METHODS = ("GET", "HEAD")
#: The largest compressed member a Range is honoured in (a seek decompresses
#: up to this much on the reactor thread).
MAX_SEEKABLE_COMPRESSED = 16 * 1024 * 1024
#: A zip local file header: its signature and fixed part (APPNOTE 4.3.7).
_LOCAL_HEADER = struct.Struct("<4s22xHH")


@dataclass(frozen=True, eq=False)
class ArchiveFile:
    """A zip archive registered with :func:`registerArchiveFile`."""

    path: str
    _index: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def member(self, relative: str) -> tuple[zipfile.ZipInfo, float] | None:
        """
        :param relative: the decoded request path below the URL prefix.
        :returns: the file member it names and the archive's modification
            time, or ``None`` for a directory, a missing member or a path
            with a ``.``/``..``/empty segment, backslash, NUL or drive.
        """
        segments = relative.split("/")[1:]
        if not segments or not all(safe_segment(s) for s in segments):
            return None
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        names = self._names(stat.st_mtime_ns, stat.st_size)
        info = names.get("/".join(segments))
        if info is None or info.is_dir():
            return None
        return info, stat.st_mtime

    def _names(self, mtime_ns: int, size: int) -> dict[str, zipfile.ZipInfo]:
        """The archive's members by name, read again when the archive changed."""
        with self._lock:
            if self._index.get("stamp") != (mtime_ns, size):
                try:
                    with zipfile.ZipFile(self.path) as archive:
                        names = {info.filename: info for info in archive.infolist()}
                except (OSError, zipfile.BadZipFile):
                    names = {}
                self._index.update(stamp=(mtime_ns, size), names=names)
            return self._index["names"]  # type: ignore[no-any-return]

    def answer(self, call: Call) -> Answer:
        """Answer ``call``, routed here: see :func:`_answer_archive`."""
        return _answer_archive(call, self)


def register_archive_file(
    registry: _registry.Registry, archive_file: PathLike, url_prefix: str, port: int | str = -1
) -> None:
    """
    Register the zip ``archive_file`` into ``registry``: see
    :func:`houweb.registerArchiveFile`, which is this on the default
    server's registry.
    """
    path = os.path.realpath(os.fspath(archive_file))
    if not os.path.isfile(path) or not zipfile.is_zipfile(path):
        raise OperationFailed(f"archive file {os.fspath(archive_file)!r} is not a zip archive")
    registry.add_path(_registry.STATIC, url_prefix, [port], ArchiveFile(path))


class ArchiveMember(StreamedFile):
    """One member of an archive as twisted.web's static file machinery sees a file."""

    def __init__(self, archive: str, info: zipfile.ZipInfo, modified: float, content_type: str):
        super().__init__(archive, content_type)
        self._info = info
        self._modified = modified

    def restat(self, reraise: bool = True) -> None:
        """Nothing to look at again: the member was found this request."""

    def exists(self) -> bool:
        return True

    def isdir(self) -> bool:
        return False

    def getsize(self) -> int:
        return int(self._info.file_size)

    def getModificationTime(self) -> float:
        return self._modified

    def _compressed(self) -> bool:
        return bool(self._info.compress_type != zipfile.ZIP_STORED)

    def _choose_range(self, request: Any, tag: bytes) -> None:
        super()._choose_range(request, tag)
        wanted = request.getHeader(b"range")
        if (
            wanted is not None
            and self._compressed()
            and (self.getsize() > MAX_SEEKABLE_COMPRESSED or b"," in wanted)
        ):
            request.requestHeaders.removeHeader(b"range")  # too costly a seek: sent whole

    def openForReading(self) -> IO[bytes]:
        if not self._compressed() and not self._info.flag_bits & 0x1:  # stored, not encrypted
            return cast(IO[bytes], _StoredMember.open(self.path, self._info))
        # The member keeps the archive's file open after the ZipFile closes.
        with zipfile.ZipFile(self.path) as archive:
            return archive.open(self._info)

    def makeProducer(self, request: Any, fileForReading: Any) -> Any:
        if self._compressed() and self.getsize() > MAX_SEEKABLE_COMPRESSED:
            request.setHeader(b"accept-ranges", b"none")
        # static.File's producers, without sendfile: a member has no file
        # descriptor of its own (it may be compressed).
        return static.File.makeProducer(self, request, fileForReading)


class _StoredMember(io.RawIOBase):
    """A stored (uncompressed) member: a window on the archive file, seekable at no cost."""

    def __init__(self, file: IO[bytes], start: int, size: int) -> None:
        super().__init__()
        self._file = file
        self._start = start
        self._size = size
        self._position = 0

    @classmethod
    def open(cls, path: str, info: zipfile.ZipInfo) -> _StoredMember:
        """:raises zipfile.BadZipFile: if the member's local header is not where the index says."""
        file = open(path, "rb")  # noqa: SIM115 - closed with the member
        try:
            file.seek(info.header_offset)
            signature, name_length, extra_length = _LOCAL_HEADER.unpack(
                file.read(_LOCAL_HEADER.size)
            )
            if signature != b"PK\x03\x04":
                raise zipfile.BadZipFile(f"no local header for member {info.filename!r}")
        except BaseException:
            file.close()
            raise
        start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        return cls(file, start, info.file_size)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = min(max(0, base + offset), self._size)
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        left = self._size - self._position
        count = left if size is None or size < 0 else min(size, left)
        if count <= 0:
            return b""
        self._file.seek(self._start + self._position)
        data = self._file.read(count)
        self._position += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._file.close()
        super().close()


def _answer_archive(call: Call, target: ArchiveFile) -> Response | Deferred[Response]:
    request = call.request
    if request.method() not in _METHODS:
        return method_not_allowed(request)
    relative = below(request.path(), call.match.path)
    found = target.member(relative)
    if found is None:
        return notFoundResponse(request)
    info, modified = found
    web_request = call.web_request
    # The response filters (CORS) see the answer's headers, as for any file.
    headers = Response(b"", 200)
    for response_filter in call.context.response_filters:
        response_filter(request, headers)
    for name, value in headers.headerLines():
        if name.lower() != "content-type":
            web_request.responseHeaders.addRawHeader(name.encode("latin-1"), value.encode("utf-8"))
    member = ArchiveMember(target.path, info, modified, guess_content_type(relative))
    result = member.render_GET(web_request)
    if result is not server.NOT_DONE_YET:
        web_request.write(result)
        web_request.finish()
    # The member is written here; the router forgets this Deferred once the
    # request is finished (as for a WSGI app).
    return Deferred()
