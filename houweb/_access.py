"""
The access log: one line per answered request, in the Common Log Format that
nginx, Apache and ``twistd web`` write (and that log analysers read)::

    127.0.0.1 - - [01/Dec/2026:15:17:58 +0000] "GET /hello HTTP/1.1" 200 5

A ``"``, a backslash, a control character or a byte past ASCII in the
request line is written ``\\xHH``, as nginx does (the fields below keep the
text as received).

Lines are ``twisted.logger`` events in the namespace ``houweb.access``, so
they go wherever houweb's log goes (see :mod:`houweb._logging`): Python's
``logging`` logger ``houweb.access``, or stderr as text or as JSON
(``--log-format json``), where each object also carries the fields one by
one: ``remote``, ``method``, ``target``, ``protocol``, ``status``, ``size``,
``duration_ms``, ``referer``, ``user_agent``.

On by default for ``twistd houweb`` and ``python -m houweb``
(``--no-access-log`` turns it off), off for an embedded :func:`houweb.run`
(``access_log=True`` turns it on).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.logger import Logger
from twisted.web.http import datetimeToLogString

if TYPE_CHECKING:  # for the hints: the twisted.web request houweb receives
    from ._channel import HouwebRequest

access_log = Logger(namespace="houweb.access")

#: What the line writes of each character of the request line: itself, or,
#: as nginx does, ``\xHH`` for ``"`` (which would end the request field
#: early: a reader of the line would take the rest for the status and size),
#: ``\`` (so an escape is never ambiguous), control characters (terminal
#: escapes) and everything past ASCII. The request line's text is its bytes
#: decoded as latin-1, so each character is one byte.
_ESCAPES = {
    code: f"\\x{code:02X}" for code in (*range(0x20), ord('"'), ord("\\"), *range(0x7F, 0x100))
}


def escaped(text: str) -> str:
    """:returns: ``text`` (latin-1: one byte per character) safe inside a log line."""
    return text.translate(_ESCAPES)


def _header(web_request: HouwebRequest, name: bytes) -> str:
    value = web_request.getHeader(name)
    return "-" if value is None else value.decode("latin-1")


def log_access(web_request: HouwebRequest, seconds: float) -> None:
    """
    Log one access line for ``web_request``, answered in ``seconds``.

    :param web_request: the twisted.web request, finished (or dropped by its client).
    """
    size = web_request.sentLength
    _log_line(
        web_request,
        web_request.method.decode("latin-1"),
        web_request.uri.decode("latin-1"),
        web_request.clientproto.decode("latin-1"),
        web_request.code,
        size if size else 0,
        seconds,
    )


def log_rejected(
    web_request: HouwebRequest,
    method: bytes,
    target: bytes,
    protocol: bytes,
    status: int,
    size: int,
) -> None:
    """
    Log one access line for a request answered when its headers arrived
    (a missing token, a Host not allowed, a body too large), before it was
    routed; ``web_request`` knows its client but not yet its request line.
    """
    _log_line(
        web_request,
        method.decode("latin-1"),
        target.decode("latin-1"),
        protocol.decode("latin-1"),
        status,
        size,
        0.0,
    )


def _log_line(
    web_request: HouwebRequest,
    method: str,
    target: str,
    protocol: str,
    status: int,
    size: int,
    seconds: float,
) -> None:
    client = web_request.getClientAddress()
    remote = getattr(client, "host", None) or "-"
    request_line = escaped(f"{method} {target} {protocol}")
    line = f'{remote} - - {datetimeToLogString()} "{request_line}" {status} {size if size else "-"}'
    access_log.info(
        "{line}",
        line=line,
        remote=remote,
        method=method,
        target=target,
        protocol=protocol,
        status=status,
        size=size,
        duration_ms=round(seconds * 1000, 3),
        referer=_header(web_request, b"referer"),
        user_agent=_header(web_request, b"user-agent"),
    )
