"""
The Linux scheduling policy of a handler pool thread: ``SCHED_BATCH``
while the thread runs houweb's own part of a call (waiting for the call,
taking the GIL, handing the result back), the policy it started with while
it runs the user's code.

Why: on a busy core (or a server given one core) every handler call wakes a
pool thread, and a thread woken under the normal policy preempts the
reactor thread at once, only to find the GIL held by it: the pool thread
blocks again, the reactor thread resumes, and the same happens when the GIL
is let go. About 4.5 context switches per API call, measured, for one call's
worth of work. A ``SCHED_BATCH`` thread is not let preempt anyone when it
wakes (it runs at the reactor thread's next pause, which comes soon: the
reactor lets go of the GIL at every system call); it keeps its fair share
of the CPU. With it, a call costs about 0.5 context switches.

The user's code runs under the thread's own policy, so what a handler
starts (threads, processes: they inherit the policy) is as before. Where the
policy cannot be changed (not Linux, a container that forbids it, a thread
started under another policy, say real-time), nothing changes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ThreadPolicy", "background_work"]


class ThreadPolicy:
    """
    One pool thread's switch between houweb's part of a call and the
    user's. Made in the thread it serves: the policy calls act on the calling
    thread.
    """

    def __init__(self) -> None:
        #: Whether the switching happens (only where it can).
        self.switching = False
        if not sys.platform.startswith("linux"):
            return
        self._batch: int = os.SCHED_BATCH
        self._normal: int = os.SCHED_OTHER
        #: Both fair-class policies take priority 0 (the nice value is apart).
        self._param = os.sched_param(0)
        try:
            if os.sched_getscheduler(0) != self._normal:
                return  # a policy someone chose (idle, batch, real-time): kept
            os.sched_setscheduler(0, self._batch, self._param)
        except OSError:
            return  # forbidden here (a seccomp profile): run as before
        self.switching = True

    def to_user(self) -> None:
        """Before the user's code: the thread's own policy."""
        if self.switching:
            self._set(self._normal)

    def to_houweb(self) -> None:
        """After the user's code: ``SCHED_BATCH`` until the next call starts."""
        if self.switching:
            self._set(self._batch)

    def _set(self, policy: int) -> None:
        try:
            os.sched_setscheduler(0, policy, self._param)
        except OSError:
            # Refused midway (a changed limit): leave the thread under its own
            # policy from now on.
            self.switching = False
            try:
                os.sched_setscheduler(0, self._normal, self._param)
            except OSError:
                pass


@contextmanager
def background_work() -> Iterator[None]:
    """
    Run the ``with`` block (houweb's own long work inside a call: a large
    result's encoding) under ``SCHED_BATCH`` when the calling thread runs
    under the normal policy, and give the normal policy back after it.

    Why: a small request's pool thread waits under ``SCHED_BATCH`` (see
    :class:`ThreadPolicy`), so when it wakes it does not preempt a thread
    running under the normal policy; a large encoding under the normal
    policy would keep the core for its whole time slice each time. Two
    batch threads take turns on the scheduler's tick and at every pause
    of the encoder. On another policy, off Linux, or where refused: nothing
    changes.
    """
    switched = False
    if sys.platform.startswith("linux"):
        try:
            if os.sched_getscheduler(0) == os.SCHED_OTHER:
                os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
                switched = True
        except OSError:
            pass
    try:
        yield
    finally:
        if switched:
            try:
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            except OSError:
                pass  # as ThreadPolicy: nothing more can be done from here
