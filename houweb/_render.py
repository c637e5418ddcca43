"""
Writing a :class:`houweb.Response` onto a twisted.web request, on the reactor
thread: status and headers, then the body, or the file streamed from disk with
twisted.web's static file machinery (a producer, so the file is never read
whole; Range, HEAD, If-Modified-Since, plus an ETag, If-None-Match and
If-Range; which Ranges are honoured is ``_ranges``' choice), its
body sent with ``os.sendfile`` where it can be (see ``_sendfile``).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Callable

from twisted.logger import Logger
from twisted.web import http, server, static
from twisted.web.http_headers import _nameEncoder

from ._big_body import is_large, send_large_body
from ._ranges import honoured_range
from ._response import Response
from ._sendfile import sendfile_producer
from ._status import phrase
from ._uploads import remove_quietly

log = Logger(namespace="houweb")

#: The Server header of every answer, without a version (what a version
#: tells is mostly which published bugs to try); a handler may replace it.
SERVER = "houweb"
_NO_BODY = frozenset({204, 304})
#: Headers houweb writes itself: the framing, and Connection (whether the
#: connection stays open is the server's to say, as it decided; a handler's
#: ``Connection: close`` closes it, see :func:`close_after_answer`).
_SKIPPED = frozenset({"content-length", "transfer-encoding", "connection"})
#: The same three, as twisted.web spells them on the wire.
_SKIPPED_RAW = frozenset({b"Content-Length", b"Transfer-Encoding", b"Connection"})
#: Request headers that only make sense for a plain 200 answer.
_CONDITIONAL = (b"range", b"if-range", b"if-modified-since", b"if-none-match")


class StreamedFile(static.File):
    """
    A file sent with the Content-Type houweb chose and no Content-Encoding.
    A 200 answer honours Range and the conditional headers; any other status
    is sent as given, with the whole file.
    """

    def __init__(self, path: str, content_type: str, status: int = 200) -> None:
        super().__init__(path)
        self.type = content_type
        self.encoding = None
        self._status = status

    def render_GET(self, request: Any) -> Any:
        if self._status != 200:
            for name in _CONDITIONAL:
                request.requestHeaders.removeHeader(name)
            return super().render_GET(request)
        self.restat(False)
        if self.exists():
            tag = entity_tag(self.getsize(), self.getModificationTime())
            if self._not_modified(request, tag):
                return b""
            self._choose_range(request, tag)
        return super().render_GET(request)

    render_HEAD = render_GET

    def _choose_range(self, request: Any, tag: bytes) -> None:
        """
        Leave twisted.web a Range it may answer with 206 (see ``_ranges``),
        or none, so that it sends the whole file with 200.
        """
        header = request.getHeader(b"range")
        if header is None:
            return
        wanted = honoured_range(
            header, request.getHeader(b"if-range"), self.getsize(), tag, self.getModificationTime()
        )
        if wanted is None:
            request.requestHeaders.removeHeader(b"range")
        else:
            request.requestHeaders.setRawHeaders(b"range", [wanted])

    def _not_modified(self, request: Any, tag: bytes) -> bool:
        """
        Send the ETag; answer 304 when ``If-None-Match`` names it. When
        ``If-None-Match`` is present it decides alone (RFC 9110 13.2.2), so
        ``If-Modified-Since`` is then dropped.
        """
        request.setHeader(b"etag", tag)
        wanted = request.getHeader(b"if-none-match")
        if wanted is None:
            return False
        request.requestHeaders.removeHeader(b"if-modified-since")
        if not etag_matches(wanted, tag):
            return False
        request.setHeader(b"accept-ranges", b"bytes")
        request.setResponseCode(http.NOT_MODIFIED)
        return True

    def makeProducer(self, request: Any, fileForReading: Any) -> Any:
        if self._status == 200:
            producer = super().makeProducer(request, fileForReading)
            if isinstance(
                producer, (static.SingleRangeStaticProducer, static.MultipleRangeStaticProducer)
            ):
                producer.fileObject = _ShrinkGuard(producer.fileObject, request)
        else:
            self._setContentHeaders(request)
            producer = static.NoRangeStaticProducer(request, fileForReading)
        return sendfile_producer(request, producer)


class _ShrinkGuard:
    """
    The file a twisted.web range producer reads. Such a producer asks for
    the bytes still due, and asks again whenever the file gives none: a
    file truncated while it is sent would have it spin for ever, even after
    the client left. A read that finds the end early drops the connection,
    closes the file and raises (the producer's loop then ends).
    """

    def __init__(self, file: Any, request: Any) -> None:
        self._file = file
        self._request = request

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            # twisted.web's multipart producer asks for what is left of its
            # 64 KiB buffer once a part's header went in, which can be less
            # than nothing; -1 would read the whole rest of the file. It
            # never asks for "all": nothing now, the rest on its next round.
            return b""
        data: bytes = self._file.read(size)
        if not data and size != 0:
            name = getattr(self._file, "name", "the file")
            if self._request is not None:
                request, self._request = self._request, None
                log.warn(
                    "houweb: {path} shrank while it was sent; dropping the connection", path=name
                )
                if request.channel is not None:
                    request.channel.transport.abortConnection()
            self._file.close()
            raise OSError(f"{name} shrank while it was sent")
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def entity_tag(size: int, modified: float) -> bytes:
    """:returns: a strong ETag from a file's size and modification time."""
    return b'"%x-%x"' % (size, int(modified * 1_000_000))


def etag_matches(header: bytes, tag: bytes) -> bool:
    """:returns: whether an ``If-None-Match`` value names ``tag`` (weakly) or is ``*``."""
    wanted = [t.strip() for t in header.split(b",")]
    return b"*" in wanted or any(t.removeprefix(b"W/") == tag for t in wanted)


def discard(response: Response) -> None:
    """Forget a response that will never be sent, deleting its file if asked."""
    path = response.filePath()
    if path is not None and response.deletesFile():
        remove_quietly(path)


def write_response(request: Any, response: Response, missing_file: Callable[[], Response]) -> None:
    """Send ``response`` as the answer to the twisted.web ``request``."""
    path = response.filePath()
    if path is None:
        _write_body(request, response)
        return
    if response.deletesFile():
        request.notifyFinish().addBoth(lambda _: remove_quietly(path))
    if not os.path.isfile(path):
        log.warn("houweb: file to send is missing: {path}", path=path)
        _write_body(request, missing_file())
        return
    _start(request, response)
    result = StreamedFile(path, response.contentType(), response.status()).render_GET(request)
    if result is not server.NOT_DONE_YET:
        request.write(result)
        request.finish()


def _start(request: Any, response: Response) -> None:
    """
    Set the status and the response's headers. A header the response sets
    replaces twisted.web's default of that name (Server, Date, Content-Type):
    the application's value wins; repeats within the response (Set-Cookie)
    are all sent.
    """
    status = response.status()
    request.setResponseCode(status, phrase(status).encode("ascii"))
    headers = request.responseHeaders
    set_here: set[str] = set()
    for name, value in response.headerLines():
        lower = name.lower()
        if lower in _SKIPPED:
            if lower == "connection" and asks_to_close(value):
                close_after_answer(request)
            continue
        raw_name, raw_value = name.encode("latin-1"), value.encode("utf-8")
        if lower in set_here:
            headers.addRawHeader(raw_name, raw_value)
        else:
            set_here.add(lower)
            headers.setRawHeaders(raw_name, [raw_value])


def _write_body(request: Any, response: Response) -> None:
    if not is_large(response) and _write_at_once(request, response):
        return
    _start(request, response)
    if send_large_body(request, response):
        return
    body = response.body()
    if response.status() in _NO_BODY or response.status() < 200:
        request.finish()
        return
    if not response.isChunked():
        request.setHeader(b"content-length", b"%d" % len(body))
    if body:
        request.write(body)
    request.finish()


def _write_at_once(request: Any, response: Response) -> bool:
    """
    Send a complete in-memory answer in one go (``HouwebRequest.houweb_answer``):
    the status line, headers and body built as bytes without twisted.web's
    per-header calls, the same bytes it would have sent. Not for a chunked
    answer. A 1xx goes this way too: twisted.web would send it chunked, a
    body where none may be (see ``houweb_answer``).

    :returns: whether it was sent; if not, nothing was changed.
    """
    status = response.status()
    answer = getattr(request, "houweb_answer", None)
    if answer is None:
        return False
    headers, chunked = raw_headers(response)
    if chunked and status >= 200:
        return False
    return bool(answer(status, _reason(status), headers, response.body()))


@lru_cache(maxsize=1024)
def _reason(status: int) -> bytes:
    """:returns: the reason phrase of ``status`` as sent."""
    return phrase(status).encode("ascii")


def raw_headers(response: Response) -> tuple[dict[bytes, list[bytes]], bool]:
    """
    :returns: the response's headers as twisted.web would hold them (see
        :func:`_start`): names in twisted.web's canonical spelling (which
        refuses a name that is not a token), values UTF-8 with CR and LF
        replaced as twisted.web does (``_sanitizeLinearWhitespace``), the
        repeats of a name in one list, in the order first set;
        Content-Length and Transfer-Encoding left out (houweb frames the body),
        Connection too unless it asks to close (then ``close``, alone);
        and whether the answer is chunked (``Response.isChunked``, found
        on the way rather than by another pass over the headers).
    """
    headers: dict[bytes, list[bytes]] = {}
    chunked = False
    for name, value in response.headerLines():
        raw_name = _nameEncoder.encode(name)
        if raw_name in _SKIPPED_RAW:
            if raw_name == b"Transfer-Encoding":
                chunked = value.strip().lower() == "chunked"
            elif raw_name == b"Connection" and asks_to_close(value):
                headers[raw_name] = [b"close"]  # houweb_answer closes the connection after
            continue
        raw_value = value.encode("utf-8")
        if b"\r" in raw_value or b"\n" in raw_value:
            raw_value = b" ".join(raw_value.splitlines())
        values = headers.get(raw_name)
        if values is None:
            headers[raw_name] = [raw_value]
        else:
            values.append(raw_value)
    return headers, chunked


def asks_to_close(value: str) -> bool:
    """:returns: whether a handler's Connection header value has the ``close`` option."""
    return "close" in (option.strip().lower() for option in value.split(","))


def close_after_answer(request: Any) -> None:
    """Close ``request``'s connection once it is answered, and say so (``Connection: close``)."""
    request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
    if request.channel is not None:
        request.channel.persistent = False


def raw_response(response: Response, close: bool = True) -> bytes:
    """:returns: ``response`` serialised as HTTP/1.1 bytes, for a channel to write."""
    body = response.body()
    lines = [f"HTTP/1.1 {response.statusLabel()}", f"Server: {SERVER}"]
    lines += [f"{n}: {v}" for n, v in response.headerLines() if n.lower() not in _SKIPPED]
    lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body
