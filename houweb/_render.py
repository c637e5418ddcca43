"""
Writing a :class:`houweb.Response` onto a twisted.web request, on the reactor
thread: status and headers, then the body, or the file streamed from disk with
twisted.web's static file machinery (Range, HEAD, If-Modified-Since).
"""

from __future__ import annotations

import os
from typing import Any, Callable

from twisted.logger import Logger
from twisted.web import server, static

from ._response import Response
from ._status import phrase

log = Logger(namespace="houweb")

_NO_BODY = frozenset({204, 304})
_SKIPPED = frozenset({"content-length", "transfer-encoding"})


class StreamedFile(static.File):
    """A file sent with the Content-Type houweb chose and no Content-Encoding."""

    def __init__(self, path: str, content_type: str) -> None:
        super().__init__(path)
        self.type = content_type
        self.encoding = None


def discard(response: Response) -> None:
    """Forget a response that will never be sent, deleting its file if asked."""
    path = response.filePath()
    if path is not None and response.deletesFile():
        remove_quietly(path)


def remove_quietly(path: str) -> None:
    """Delete ``path`` if it still exists."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warn("houweb: could not delete {path}: {error}", path=path, error=exc)


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
    result = StreamedFile(path, response.contentType()).render_GET(request)
    if result is not server.NOT_DONE_YET:
        request.write(result)
        request.finish()


def _start(request: Any, response: Response) -> None:
    status = response.status()
    request.setResponseCode(status, phrase(status).encode("ascii"))
    headers = request.responseHeaders
    for name, value in response.headerLines():
        if name.lower() not in _SKIPPED:
            headers.addRawHeader(name.encode("latin-1"), value.encode("utf-8"))


def _write_body(request: Any, response: Response) -> None:
    _start(request, response)
    body = response.body()
    if response.status() in _NO_BODY or response.status() < 200:
        request.finish()
        return
    if not response.isChunked():
        request.setHeader(b"content-length", b"%d" % len(body))
    if body:
        request.write(body)
    request.finish()


def raw_response(response: Response, close: bool = True) -> bytes:
    """:returns: ``response`` serialised as HTTP/1.1 bytes, for a channel to write."""
    body = response.body()
    lines = [f"HTTP/1.1 {response.statusLabel()}"]
    lines += [f"{n}: {v}" for n, v in response.headerLines() if n.lower() not in _SKIPPED]
    lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body
