"""
The pool plain handlers and API functions run in: ``max_num_threads``
daemon threads taking calls from one queue.

It offers the part of :class:`twisted.python.threadpool.ThreadPool` that
``deferToThreadPool`` and twisted.web's WSGI container use
(``callInThreadWithCallback``, ``callInThread``, ``start``, ``stop``), with
less per call: a C ``SimpleQueue`` instead of Twisted's coordinator and
per-worker queues, which cost about a tenth of the reactor thread's time on
hello-world. Threads are daemons, so a handler that never returns cannot keep
the process alive; :meth:`stop` abandons it instead of waiting, and drops the
calls still queued: their clients were dropped at shutdown, so running them
later would only run user code for nobody. On Linux each thread waits under
``SCHED_BATCH`` and runs the user's code under its own policy
(:mod:`houweb._thread_policy` says why).
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable

from twisted.logger import Logger
from twisted.python.failure import Failure

from ._thread_policy import ThreadPolicy

log = Logger(namespace="houweb")

#: What a worker takes off the queue: ``onResult`` (or ``None``), function,
#: args, kwargs, and ``on_start`` (or ``None``).
_Call = tuple[Any, Callable[..., Any], tuple[Any, ...], dict[str, Any], Any]
_STOP = None


class HandlerPool:
    """
    ``size`` threads, started with the server and kept until :meth:`stop`;
    calls beyond them wait in order.
    """

    def __init__(self, size: int, name: str = "houweb") -> None:
        self.max = size
        self.name = name
        self.threads: list[threading.Thread] = []
        self.started = False
        self._closed = False
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        #: Taking a call (and noting its start) and stop() exclude each
        #: other: once stop() returns, every call has started or never will.
        self._lock = threading.Lock()
        #: One flag per thread, set while it runs a call (each thread writes
        #: only its own: no lock).
        self._busy: list[bool] = [False] * size

    def start(self) -> None:
        """Start the threads; calls made before wait for them."""
        self.started = True
        for number in range(1, self.max + 1):
            thread = threading.Thread(
                target=self._work,
                args=(number - 1,),
                name=f"PoolThread-{self.name}-{number}",
                daemon=True,
            )
            self.threads.append(thread)
            thread.start()

    def stop(self) -> int:
        """
        Let idle threads end; a handler still running is abandoned, not
        waited for. Calls queued but not started are dropped (never run), and
        so is any call made after this.

        :returns: how many queued calls were dropped (also logged).
        """
        self.started = False
        with self._lock:
            self._closed = True
        dropped = 0
        while True:
            try:
                call = self._calls.get_nowait()
            except queue.Empty:
                break
            if call is not _STOP:
                dropped += 1
        if dropped:
            log.warn(
                "houweb: dropped {count} queued call(s) that had not started at shutdown",
                count=dropped,
            )
        for _ in self.threads:
            self._calls.put(_STOP)
        return dropped

    def callInThreadWithCallback(
        self,
        onResult: Callable[[bool, Any], object] | None,
        func: Callable[..., Any],
        *args: Any,
        **kw: Any,
    ) -> None:
        """Run ``func(*args, **kw)`` in a pool thread, then ``onResult(ok, result or Failure)``."""
        self._calls.put((onResult, func, args, kw, None))

    def call_starting(
        self,
        on_start: Callable[[], None] | None,
        onResult: Callable[[bool, Any], object],
        func: Callable[..., Any],
        *args: Any,
        **kw: Any,
    ) -> None:
        """
        :meth:`callInThreadWithCallback`, calling ``on_start()`` (if given) in
        the pool thread that takes the call, before :meth:`stop` could drop it: after
        ``stop()``, a call has either started (``on_start`` called) or never
        runs.
        """
        self._calls.put((onResult, func, args, kw, on_start))

    def callInThread(self, func: Callable[..., Any], *args: Any, **kw: Any) -> None:
        """Run ``func(*args, **kw)`` in a pool thread; an exception is logged."""
        self.callInThreadWithCallback(None, func, *args, **kw)

    def busy(self) -> int:
        """:returns: how many threads are running a call now."""
        return sum(self._busy)

    def queued(self) -> int:
        """:returns: how many calls wait for a thread (approximately, as any queue size)."""
        return max(0, self._calls.qsize() - (0 if self.started else len(self.threads)))

    def _work(self, index: int) -> None:
        take = self._calls.get
        busy = self._busy
        policy = ThreadPolicy()
        while True:
            call = take()
            if call is _STOP:
                return
            onResult, func, args, kw, on_start = call
            with self._lock:
                closed = self._closed
                if not closed and on_start is not None:
                    on_start()
            if closed:  # taken as stop() drained the queue, or queued after
                log.warn("houweb: dropped a call queued after shutdown")
                del call, onResult, func, args, kw, on_start
                continue
            del call, on_start
            busy[index] = True
            _run(onResult, func, args, kw, policy)
            busy[index] = False
            # Forget the call now, not when the next one comes: its arguments
            # (a Request, and the uploads it owns) must not outlive it.
            del onResult, func, args, kw


def _run(
    onResult: Any,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kw: dict[str, Any],
    policy: ThreadPolicy,
) -> None:
    policy.to_user()
    try:
        result = func(*args, **kw)
        ok = True
    except BaseException:  # noqa: BLE001 - handed to the caller as a Failure
        del args, kw  # the Failure's traceback keeps this frame: not the Request in it
        result = Failure()
        ok = False
    policy.to_houweb()
    try:
        if onResult is None:
            if not ok:
                log.failure("houweb: a call in the thread pool failed", result)
            return
        try:
            onResult(ok, result)
        except BaseException:  # noqa: BLE001 - nothing else would report it
            log.failure("houweb: could not hand a result back from the thread pool")
    finally:
        # A Failure's traceback holds this frame, whose ``result`` holds the
        # Failure: a cycle that only the garbage collector (which may not run
        # for a long time) would free, and with it the handler's frames, its
        # Request and the uploads it owns. Break it.
        del result
