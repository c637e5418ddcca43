"""
``registerWSGIApp`` (hwebserver): a WSGI application mounted on a path
prefix, run by twisted.web's WSGI container in houweb's thread pool.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Callable, ClassVar
from urllib.parse import unquote_to_bytes

from twisted.internet.defer import Deferred
from twisted.web.wsgi import WSGIResource

from . import _registry
from ._registry import PREFIX, Ports, check_handler_path
from ._render import asks_to_close, close_after_answer
from ._response import Response
from ._site import Call
from ._target import Answer

WSGIApplication = Callable[..., Any]

#: A header name (RFC 9110 5.6.2), and what a header value cannot hold.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True)
class WSGITarget:
    """A WSGI application registered with ``registerWSGIApp``."""

    application: WSGIApplication
    path: str
    #: The app reads the body itself (``wsgi.input``): houweb stores a
    #: multipart body as sent instead of parsing it into fields and files.
    wants_raw_body: ClassVar[bool] = True

    def answer(self, call: Call) -> Answer:
        """Answer ``call``, routed here: see :func:`_answer_wsgi`."""
        return _answer_wsgi(call, self)


def register_wsgi_app(
    registry: _registry.Registry, application: WSGIApplication, path: str, ports: Ports = []
) -> None:
    """
    Register ``application`` into ``registry``: see
    :func:`houweb.registerWSGIApp`, which is this on the default server's
    registry.
    """
    if not callable(application):
        raise TypeError("registerWSGIApp takes a WSGI application (a callable)")
    norm = check_handler_path(path)
    registry.add_path(PREFIX, path, ports, WSGITarget(application, norm))


def _answer_wsgi(call: Call, target: WSGITarget) -> Response | Deferred[Response]:
    web_request = call.web_request
    mounted = len([s for s in target.path.split("/") if s])
    segments = [unquote_to_bytes(s) for s in web_request.path[1:].split(b"/")]
    web_request.prepath, web_request.postpath = segments[:mounted], segments[mounted:]
    context = call.context

    def close_after() -> None:
        context.reactor.callFromThread(close_after_answer, web_request)

    checked = _checked(target.application, close_after)
    WSGIResource(context.reactor, context.pool, checked).render(web_request)
    # The WSGI container writes the answer itself; the router forgets this
    # Deferred once the request is finished.
    return Deferred()


def _checked(application: WSGIApplication, close_after: Callable[[], None]) -> WSGIApplication:
    """
    ``application`` with its answer checked before twisted.web's WSGI
    container sends it: a header name that is not a token (twisted.web
    refused it only once the answer was started, cutting the connection with
    nothing sent) or a control character in a value (an answer strict clients
    refuse) raise in ``start_response``, so the app gets a 500; a body longer
    than its declared Content-Length (whose extra bytes the client would read
    as the next answer on the connection) or shorter raises once it is
    known, before those bytes go out: twisted.web then closes the connection.
    The server says ``Connection`` itself, once: the app's is dropped, and
    one that asks to close calls ``close_after`` (from the app's thread,
    before its answer is written), which closes the connection after the answer.
    """

    def checked_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        declared: list[int | None] = [None]

        def checked_start(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            lengths = set()
            for name, value in headers:
                if not isinstance(name, str) or not _TOKEN.fullmatch(name):
                    raise ValueError(f"WSGI start_response: header name {name!r} is not a token")
                if isinstance(value, str) and _CTL.search(value):
                    raise ValueError(
                        f"WSGI start_response: header {name} holds a control character"
                    )
                if name.lower() == "content-length":
                    lengths.add(str(value).strip())
            if len(lengths) > 1 or not all(length.isdigit() for length in lengths):
                raise ValueError(f"WSGI start_response: bad Content-Length {sorted(lengths)!r}")
            code = status.split(" ", 1)[0]
            bodiless = environ.get("REQUEST_METHOD") == "HEAD" or code in ("204", "304")
            declared[0] = int(lengths.pop()) if lengths and not bodiless else None
            if any(name.lower() == "connection" for name, _ in headers):
                if any(
                    name.lower() == "connection" and asks_to_close(str(value))
                    for name, value in headers
                ):
                    close_after()
                headers = [(name, value) for name, value in headers if name.lower() != "connection"]
            return start_response(status, headers, *rest)

        return _LengthChecked(application(environ, checked_start), declared)

    return checked_app


class _LengthChecked:
    """A WSGI app's body, stopped before it strays from its declared Content-Length."""

    def __init__(self, body: Iterable[bytes], declared: list[int | None]) -> None:
        self._body = body
        self._declared = declared

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        for piece in self._body:
            length = self._declared[0]
            if length is not None:
                sent += len(piece)
                if sent > length:
                    raise RuntimeError(
                        f"WSGI body: more than its declared Content-Length of {length} bytes"
                    )
            yield piece
        length = self._declared[0]
        if length is not None and sent < length:
            raise RuntimeError(f"WSGI body: {sent} bytes for a declared Content-Length of {length}")

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            close()
