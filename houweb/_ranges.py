"""
Which ``Range`` requests a file answer honours (RFC 9110 section 14), before
twisted.web's static file machinery builds the 206.

A Range that could make the answer larger than the file (too many ranges,
overlapping ranges, ranges adding up to more than the file) is ignored and
the whole file sent with 200, as nginx does; so is one that is not ASCII or
not valid, and one whose ``If-Range`` does not match the file as it is now.
Honoured ranges are handed on in absolute form (``bytes=first-last,...``).
"""

from __future__ import annotations

import email.utils
import math

#: The most ranges one request may ask for; more, and the whole file is sent.
MAX_RANGES = 16


def parse_ranges(header: bytes, size: int) -> list[tuple[int, int]] | None:
    """
    :param size: the file's size in bytes.
    :returns: the satisfiable ranges of a ``bytes=`` Range header as
        ``(first, last)`` byte positions, inclusive, in the order asked
        (empty when none overlaps the file: a 416), or ``None`` when the
        header is to be ignored (not ASCII, not valid, another unit).
    """
    try:
        text = header.decode("ascii")
    except UnicodeDecodeError:
        return None
    unit, equals, specs = text.partition("=")
    if not equals or unit.strip().lower() != "bytes":
        return None
    ranges = []
    pieces = [piece.strip() for piece in specs.split(",")]
    for piece in filter(None, pieces):
        first_text, dash, last_text = piece.partition("-")
        first_text, last_text = first_text.strip(), last_text.strip()
        if not dash or not _digits(first_text, last_text):
            return None
        if not first_text:  # a suffix: the last N bytes
            if not last_text:
                return None
            suffix = _number(last_text)
            if suffix == 0 or size == 0:
                continue
            ranges.append((max(0, size - suffix), size - 1))
            continue
        first = _number(first_text)
        last = _number(last_text) if last_text else size - 1
        if last < first and last_text:
            return None
        if first < size:
            ranges.append((first, min(last, size - 1)))
    return ranges if any(pieces) else None


#: Larger than any file: what a position of more digits than this counts as.
_BEYOND = 10**19


def _number(digits: str) -> int:
    """
    :returns: the value of a byte position, or :data:`_BEYOND` for one
        larger than any file (``int()`` refuses more than 4300 digits).
    """
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) < 19 else _BEYOND


def _digits(*texts: str) -> bool:
    return all(text == "" or (text.isascii() and text.isdigit()) for text in texts)


def amplifies(ranges: list[tuple[int, int]], size: int) -> bool:
    """
    :returns: whether answering ``ranges`` could send more than the file:
        more than :data:`MAX_RANGES`, two that overlap, or a total above ``size``.
    """
    if len(ranges) > MAX_RANGES:
        return True
    ordered = sorted(ranges)
    if any(later[0] <= earlier[1] for earlier, later in zip(ordered, ordered[1:])):
        return True
    return sum(last - first + 1 for first, last in ranges) > size


def if_range_matches(if_range: bytes, etag: bytes, modified: float) -> bool:
    """
    :param etag: the file's current (strong) ETag.
    :param modified: its modification time, as ``Last-Modified`` sends it
        (whole seconds, rounded up).
    :returns: whether an ``If-Range`` value names the file as it is now: the
        same strong entity tag (a weak one never matches), or exactly its
        ``Last-Modified`` date (RFC 9110 section 13.1.5).
    """
    value = if_range.strip()
    if value.startswith((b'"', b"W/")):
        return value == etag
    try:
        when = email.utils.parsedate_to_datetime(value.decode("ascii"))
    except (UnicodeDecodeError, TypeError, ValueError, IndexError):
        return False
    return when.tzinfo is not None and when.timestamp() == math.ceil(modified)


def honoured_range(
    header: bytes, if_range: bytes | None, size: int, etag: bytes, modified: float
) -> bytes | None:
    """
    :param header: the ``Range`` header's value as sent.
    :param if_range: the ``If-Range`` header's value, or ``None``.
    :returns: the Range to answer, in absolute form; ``None`` to send the
        whole file with 200. An unsatisfiable Range is kept (``bytes=<size>-``)
        so that it is answered 416.
    """
    if if_range is not None and not if_range_matches(if_range, etag, modified):
        return None
    ranges = parse_ranges(header, size)
    if ranges is None or amplifies(ranges, size):
        return None
    if not ranges:
        return b"bytes=%d-" % size
    return b"bytes=" + b",".join(b"%d-%d" % pair for pair in ranges)
