"""
Url-encoded form bodies, parsed lazily: only when a target reads them
(``Request.POST()``, an ``/api`` call), in the thread that asks (a pool
thread for plain handlers), once per request, within Django's limits
``DATA_UPLOAD_MAX_MEMORY_SIZE`` and ``DATA_UPLOAD_MAX_NUMBER_FIELDS``.

Nothing here runs on the reactor for a request whose form nobody reads, so a
huge form sent to a path that does not exist costs the other clients nothing.
"""

from __future__ import annotations

import threading
import urllib.parse
from typing import Callable

from ._settings import DEFAULT_DATA_UPLOAD_MAX_MEMORY_SIZE, DEFAULT_DATA_UPLOAD_MAX_NUMBER_FIELDS


class BodyError(ValueError):
    """
    A request body that cannot be read as asked: too large (413), too many
    fields or not valid (400). Raised by ``Request.POST()`` and friends in the
    handler; if the handler lets it through, houweb answers with
    :attr:`status` and the message (JSON on ``/api``), not with a 500.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_form(text: str) -> dict[str, list[str]]:
    """
    Decode ``a=1&b=two`` (``+`` is a space, blanks kept) into lists of values.

    :raises ValueError: on invalid percent-encoding or UTF-8.
    """
    fields: dict[str, list[str]] = {}
    for name, value in urllib.parse.parse_qsl(
        text, keep_blank_values=True, encoding="utf-8", errors="strict"
    ):
        fields.setdefault(name, []).append(value)
    return fields


def check_size(size: int, limit: int | None, what: str) -> None:
    """:raises BodyError: (413) when ``size`` bytes exceed ``limit`` (``None``: no limit)."""
    if limit is not None and size > limit:
        raise BodyError(
            f"{what} of {size} bytes exceeds DATA_UPLOAD_MAX_MEMORY_SIZE ({limit} bytes)", 413
        )


class LazyForm:
    """
    The fields of one url-encoded body, parsed on first use and kept (an
    error too: every later read raises it again). Safe to share between the
    copies of a Request and to ask from any thread.

    :param size: the body's size in bytes, known before reading it.
    :param max_size: ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (``None``: no limit).
    :param max_fields: ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` (``None``: no limit).
    """

    def __init__(
        self,
        size: int,
        max_size: int | None = DEFAULT_DATA_UPLOAD_MAX_MEMORY_SIZE,
        max_fields: int | None = DEFAULT_DATA_UPLOAD_MAX_NUMBER_FIELDS,
    ) -> None:
        self._size = size
        self._max_size = max_size
        self._max_fields = max_fields
        self._lock = threading.Lock()
        self._fields: dict[str, list[str]] | None = None
        self._error: BodyError | None = None

    def fields(self, read_body: Callable[[], bytes]) -> dict[str, list[str]]:
        """
        :param read_body: gives the whole body (called at most once).
        :returns: the fields, by name, each with its values in order.
        :raises BodyError: the body is too large, has too many fields or is
            not valid percent-encoded UTF-8.
        """
        with self._lock:
            if self._fields is None and self._error is None:
                try:
                    self._fields = self._parse(read_body)
                except BodyError as exc:
                    self._error = exc
            if self._error is not None:
                raise self._error
            assert self._fields is not None
            return self._fields

    def _parse(self, read_body: Callable[[], bytes]) -> dict[str, list[str]]:
        check_size(self._size, self._max_size, "form body")
        body = read_body()
        if self._max_fields is not None:
            # Count before parsing: a million fields are refused, not decoded.
            count = body.count(b"&") + 1
            if count > self._max_fields:
                raise BodyError(
                    f"form body has more than DATA_UPLOAD_MAX_NUMBER_FIELDS "
                    f"({self._max_fields}) fields"
                )
        try:
            return parse_form(body.decode("utf-8", "strict"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BodyError(f"invalid percent-encoding or UTF-8 in the form: {exc}") from None
