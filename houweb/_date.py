"""
The ``Date`` header's value (RFC 9110 section 6.6.1) of a server's answers,
formatted once a second instead of once a request.
"""

from __future__ import annotations

import time
from typing import Callable

from twisted.web.http import datetimeToString


class HttpDate:
    """
    The current time as an HTTP date, in the bytes twisted.web's
    ``datetimeToString`` makes of it (twisted.web formats it for every
    request: about 2% of the reactor thread on an API call). The value only
    changes each second, so it is formatted when the second changes.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        """:param clock: the seconds since the epoch (the tests give their own)."""
        self._clock = clock
        #: The second formatted last, and its HTTP date: one tuple, so that a
        #: reader never pairs a second with another second's date.
        self._last: tuple[int, bytes] = (-1, b"")

    def now(self) -> bytes:
        """:returns: the current time as an HTTP date (``Thu, 01 Jan 1970 00:00:00 GMT``)."""
        second = int(self._clock())
        last = self._last
        if last[0] == second:
            return last[1]
        formatted: bytes = datetimeToString(second)
        self._last = (second, formatted)
        return formatted
