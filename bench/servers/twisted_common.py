"""What the two twisted.web-based peers share: uploads streamed from disk."""

from __future__ import annotations

from typing import Any

from twisted.web import server

from .common import UploadCounter


class StreamingUploadRequest(server.Request):
    """
    twisted.web's request without its in-memory parsing of multipart bodies
    (``request.args`` would hold a 1 GiB upload about 12 times over); urlencoded
    forms are still parsed. twisted.web itself spools a large body to a
    temporary file, which :func:`upload_size` streams through a parser.
    """

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        content_type = self.requestHeaders.getRawHeaders(b"content-type", [b""])[0]
        self._parsePOSTFormSubmission = not content_type.startswith(b"multipart/")
        super().requestReceived(command, path, version)


def upload_size(request: Any) -> bytes:
    """:returns: the size of the ``file`` field of ``request``'s multipart body, as text."""
    content_type = request.requestHeaders.getRawHeaders(b"content-type", [b""])[0]
    counter = UploadCounter(content_type.decode("latin-1"))
    request.content.seek(0)
    for chunk in iter(lambda: request.content.read(1 << 16), b""):
        counter.feed(chunk)
    return str(counter.close()).encode("ascii")
