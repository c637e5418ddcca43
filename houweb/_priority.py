"""
Small requests first: while other requests are in flight on a server, the
thread encoding a large API result steps aside for a while after each bit of
work, so that the reactor and the other requests' handlers get the GIL; on
an idle server it encodes at full speed.

The encoder (:func:`houweb._json_pieces.encode`) stops every
:data:`~houweb._json_pieces.YIELD_EVERY` seconds of work and calls its
pacer's :meth:`Pacer.step_aside`. A Python process runs one thread at a time
(the GIL): a thread encoding 10 MB flat out takes about half of the one core
a busy server has, and the small requests' latency doubles. Stepping aside
for :data:`STEP_ASIDE` times the work just done leaves the large result
``1 / (1 + STEP_ASIDE)`` of the time while others wait (a pause is bounded
by the work before it, and by :data:`MAX_PAUSE`), and all of it when nothing
else is in flight. That is what pausing leaves it, not a floor: after each
step aside the encoder must take the GIL back, and a thread running Python
without a break keeps it for up to ``sys.getswitchinterval()`` (5 ms) each
time, paused or not (while one such handler ran, 10 MB took 7.7 s instead of
0.2-0.35 s, 7.3 s at factor 2; against a 4 s one, 3.6-3.7 s at factors 0, 2
and 3 alike).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable

from ._thread_policy import background_work

#: Seconds a large result's encoder pauses per second of work it just did,
#: while other requests are in flight: pausing leaves it 1 / (1 + this) of
#: the time. Measured in ``python -m bench --endpoints bigapi`` (see the
#: commit that set it).
STEP_ASIDE = 3.0
#: The longest single pause, in seconds, however long the work before it.
MAX_PAUSE = 0.005


class Pacer:
    """
    How one large encoding shares the GIL: called every bit of work
    (:meth:`step_aside`), it sleeps for :data:`STEP_ASIDE` times the CPU time
    the encoding thread used since the last call when ``others_in_flight()``
    says other requests are waiting, else for no time at all (which still
    lets a thread waiting for the GIL take it: see
    :class:`houweb._json_pieces._Pieces`).

    :param others_in_flight: whether other requests are in flight now
        (called from the encoding thread).
    :param factor: seconds of pause per second of work while others are in flight.
    :param max_pause: the longest pause.
    :param work_clock: the encoding thread's CPU time, in seconds.
    :param sleep: how to pause, in seconds.
    """

    def __init__(
        self,
        others_in_flight: Callable[[], bool],
        *,
        factor: float = STEP_ASIDE,
        max_pause: float = MAX_PAUSE,
        work_clock: Callable[[], float] = time.thread_time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._others_in_flight = others_in_flight
        self._factor = factor
        self._max_pause = max_pause
        self._work_clock = work_clock
        self._sleep = sleep
        self._since = work_clock()

    def pause(self, worked: float) -> float:
        """
        :param worked: seconds of work since the last pause.
        :returns: how long to pause now: ``0.0`` on an idle server; while
            others are in flight, ``factor`` times ``worked``, at most
            ``max_pause``.
        """
        if worked <= 0 or not self._others_in_flight():
            return 0.0
        return min(worked * self._factor, self._max_pause)

    def step_aside(self) -> None:
        """Pause for :meth:`pause` of the work done since the last call."""
        now = self._work_clock()
        self._sleep(self.pause(now - self._since))
        self._since = self._work_clock()


class SmallFirst:
    """
    One server's priority of small requests over large results: it knows
    how many calls of user code are running (its ``in_progress``: started,
    not queued for a pool thread, which a pause would only keep waiting), and
    how many of them are encoding a large result (:meth:`large_result`), so
    that an encoding steps aside only for the others, and two large results
    do not step aside for each other alone.

    :param in_progress: how many calls of user code are running on the
        server (each large result's call among them): ``RunningCalls.started``.
    :param factor: see :class:`Pacer`.
    :param max_pause: see :class:`Pacer`.
    """

    def __init__(
        self,
        in_progress: Callable[[], int],
        *,
        factor: float = STEP_ASIDE,
        max_pause: float = MAX_PAUSE,
    ) -> None:
        self._in_progress = in_progress
        self._factor = factor
        self._max_pause = max_pause
        self._large = 0
        self._lock = threading.Lock()

    def others_in_flight(self) -> bool:
        """:returns: whether calls other than large results' encodings are in progress."""
        return self._in_progress() > self._large

    @contextmanager
    def large_result(self) -> Iterator[Callable[[], None]]:
        """
        Count a large result being encoded (in the thread that encodes it)
        for as long as the ``with`` block lasts.

        :returns: what the encoder calls after each bit of work
            (:meth:`Pacer.step_aside`).
        """
        with self._lock:
            self._large += 1
        try:
            with background_work():  # small requests' threads go first on the core too
                yield Pacer(
                    self.others_in_flight, factor=self._factor, max_pause=self._max_pause
                ).step_aside
        finally:
            with self._lock:
                self._large -= 1
