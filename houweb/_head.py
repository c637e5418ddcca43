"""
A request head read whole in one go (nearly every request): split with a few
regular expressions in one pass instead of line by line through Twisted's
``LineReceiver`` and ``HTTPChannel``, for :class:`~houweb._channel.HouwebChannel`.

Only a head that is plainly valid is taken here: an origin-form target of
printable ASCII, ``HTTP/1.0`` or ``HTTP/1.1``, header lines ``token:value``
without NUL, CR or LF in the value, at most one ``Content-Length`` of digits
and no ``Transfer-Encoding``, within the channel's size and count limits.
:func:`split_head` returns ``None`` for anything else (obs-fold, bad bytes,
absolute-form targets, framing headers to check, a head still arriving), and
the channel reads it line by line as before, so every malformed request gets
the answer Twisted's parser and houweb's hooks give it.
"""

from __future__ import annotations

import re
from typing import NamedTuple

#: An RFC 9110 token (a method, a header name).
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
#: The request line: Twisted accepts target bytes 0x21-0xB0; this takes the
#: printable ASCII ones, in origin form (any other target goes line by line).
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") (/[\x21-\x7e]*) (HTTP/1\.[01])\r\n")
#: Every header line of the head, valid (the value is stripped afterwards).
_HEADER_LINES = re.compile(rb"(?:" + _TOKEN + rb":[^\x00\r\n]*\r\n)*")
_HEADER = re.compile(rb"(" + _TOKEN + rb"):([^\x00\r\n]*)\r\n")
#: The headers that frame the body (RFC 9112 section 6), found case-insensitively.
_FRAMING = re.compile(rb"\r\n(?i:(content-length)|transfer-encoding):([^\r\n]*)")
#: The most digits of a Content-Length read here (10**19 bytes is past any
#: size limit); a longer one goes line by line, where the channel answers it
#: (``int()`` refuses strings of more than 4300 digits).
LENGTH_DIGITS = 19


class Head(NamedTuple):
    """A request head split by :func:`split_head`."""

    #: Where the body (or the next request) starts in the bytes read.
    end: int
    method: bytes
    target: bytes
    version: bytes
    #: ``(name as sent, value stripped of spaces and tabs)``, in order.
    headers: list[tuple[bytes, bytes]]
    #: The Content-Length, 0 without one.
    length: int
    #: The sum of the lengths of the head's lines (what Twisted counts
    #: against ``totalHeadersSize``).
    size: int


def split_head(data: bytes, limit: int, max_headers: int) -> Head | None:
    """
    Split the request head at the start of ``data``, if it is whole and plain.

    :param limit: the most bytes a head may have here: no line of it, nor
        all of them, may then exceed the channel's line or head size limit.
    :param max_headers: the most header lines a request may have.
    :returns: the head, or ``None`` when it is not whole in ``data`` or
        needs Twisted's line-by-line reading (and its checks and answers).
    """
    end = data.find(b"\r\n\r\n", 0, limit + 2)
    if end < 0:
        return None
    stop = end + 2  # after the last header line's CRLF
    line = _REQUEST_LINE.match(data, 0, stop)
    if line is None:
        return None
    start = line.end()
    if _HEADER_LINES.fullmatch(data, start, stop) is None:
        return None
    headers = [(name, value.strip(b" \t")) for name, value in _HEADER.findall(data, start, stop)]
    if len(headers) > max_headers:
        return None
    length = 0
    framing = _FRAMING.findall(data, start - 2, stop)
    if framing:
        if len(framing) > 1 or not framing[0][0]:
            return None  # Transfer-Encoding, or Content-Length twice
        value = framing[0][1].strip(b" \t")
        if not value.isdigit() or len(value) > LENGTH_DIGITS:
            return None
        length = int(value)
    method, target, version = line.groups()
    return Head(end + 4, method, target, version, headers, length, stop - 2 * len(headers) - 2)
