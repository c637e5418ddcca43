"""
Calling user code: plain functions in houweb's thread pool, ``async def`` ones
on the reactor; and turning what they return or raise into a
:class:`~houweb.Response`.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
import traceback
from typing import Any, Callable

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from ._coroutines import run_coroutine
from ._forms import BodyError
from ._pool import HandlerPool
from ._request import Request
from ._response import Response, errorResponse

log = Logger(namespace="houweb")


def is_async(function: Callable[..., Any]) -> bool:
    """:returns: whether calling ``function`` gives a coroutine to await."""
    try:
        return _is_async_cached(function)
    except TypeError:  # an unhashable callable
        return _is_async(function)


def _is_async(function: Callable[..., Any]) -> bool:
    while isinstance(function, functools.partial):
        function = function.func
    if inspect.iscoroutinefunction(function):
        return True
    return not inspect.isfunction(function) and inspect.iscoroutinefunction(
        getattr(type(function), "__call__", None)  # noqa: B004 - async __call__
    )


_is_async_cached = functools.lru_cache(maxsize=4096)(_is_async)


def call_user_code(
    function: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    reactor: Any,
    pool: HandlerPool,
    on_start: Callable[[], None] | None = None,
    on_end: Callable[[], None] | None = None,
) -> Deferred[Any]:
    """
    Call ``function(*args, **kwargs)``: in ``pool`` when it is a plain
    function, on the reactor's asyncio loop when it is ``async def``.

    :param on_start: called when ``function`` really starts: in the pool
        thread that takes the call (not when it is queued), or at once for
        ``async def``.
    :param on_end: called on the reactor thread when the call is done,
        before the returned Deferred fires.
    """
    if is_async(function):
        if on_start is not None:
            on_start()
        running = maybeDeferred(lambda: run_coroutine(function(*args, **kwargs), reactor))
        if on_end is not None:
            running.addBoth(_after, on_end)
        return running
    if on_start is None and on_end is None:
        return deferToThreadPool(reactor, pool, function, *args, **kwargs)  # type: ignore[arg-type]
    # As deferToThreadPool, with the start noted by the pool as it takes the
    # call (shutdown, stopping the pool first, then knows every call started)
    # and the end by the same call from the pool thread that fires the
    # Deferred (one callback less per request than an addBoth).
    d: Deferred[Any] = Deferred()

    def settle(ok: bool, result: Any) -> None:
        if on_end is not None:
            on_end()
        if ok:
            d.callback(result)
        else:
            d.errback(result)

    pool.call_starting(
        on_start, functools.partial(reactor.callFromThread, settle), function, *args, **kwargs
    )
    return d


def _after(result: object, on_end: Callable[[], None]) -> object:
    """Call ``on_end``, passing ``result`` on (an ``addBoth`` callback)."""
    on_end()
    return result


class RunningCall:
    """One call of user code, as shutdown reports it if it is still running."""

    __slots__ = ("subject", "request", "started")

    def __init__(self, subject: object, request: Request) -> None:
        #: The function called, or what names it (``str()`` gives the name).
        self.subject = subject
        self.request = request
        #: ``time.monotonic()`` when the call began to run; ``None`` while queued.
        self.started: float | None = None

    def start(self) -> None:
        """The call begins to run (called from the thread that runs it)."""
        self.started = time.monotonic()

    def __str__(self) -> str:
        name = describe(self.subject) if callable(self.subject) else str(self.subject)
        seconds = time.monotonic() - self.started if self.started is not None else 0.0
        method, path = self.request.method(), self.request.path()
        return f"{name} ({method} {path}, running for {seconds:.1f}s)"


class RunningCalls:
    """
    The calls of user code in progress, so that a shutdown that runs out of
    grace can name the handlers that would not return. Tracking costs one
    set insert and one removal per call, both on the reactor thread, and
    the count of those that started (see :meth:`started`).
    """

    def __init__(self) -> None:
        self._calls: set[RunningCall] = set()
        self._started = 0
        self._lock = threading.Lock()

    def call(
        self,
        function: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        reactor: Any,
        pool: HandlerPool,
        subject: object,
        request: Request,
    ) -> Deferred[Any]:
        """
        :func:`call_user_code`, counted as in progress until it is done; its
        running time counts from when it starts, not from when it is queued.

        :param subject: the function called, or what names it in the log.
        """
        record = RunningCall(subject, request)
        self._calls.add(record)
        return call_user_code(
            function,
            args,
            kwargs,
            reactor,
            pool,
            on_start=functools.partial(self._start, record),
            on_end=functools.partial(self._end, record),
        )

    def _start(self, record: RunningCall) -> None:
        """``record``'s call begins to run (in the pool thread that takes it)."""
        record.start()
        with self._lock:
            self._started += 1

    def _end(self, record: RunningCall) -> None:
        """``record``'s call is done (on the reactor thread)."""
        self._calls.discard(record)
        if record.started is not None:  # set before the call ran, so before its end
            with self._lock:
                self._started -= 1

    def __len__(self) -> int:
        """:returns: how many calls are in progress: queued or running."""
        return len(self._calls)

    def started(self) -> int:
        """
        :returns: how many calls are running now (started, not done): not
            those queued for a pool thread, which cannot run sooner if
            a running one pauses (see :class:`houweb._priority.SmallFirst`).
        """
        return self._started

    def snapshot(self) -> list[RunningCall]:
        """:returns: the calls that started and still run, longest running first."""
        started = [call for call in list(self._calls) if call.started is not None]
        return sorted(started, key=lambda call: call.started or 0.0)


class HandlerResultError(TypeError):
    """A handler returned something houweb cannot send."""


def as_response(result: object, what: str = "URL handler") -> Response:
    """
    :returns: ``result`` as a Response: a Response as is, ``str`` as
        ``text/html``, bytes as ``application/octet-stream``.
    :raises HandlerResultError: for anything else.
    """
    if isinstance(result, Response):
        return result
    if isinstance(result, str):
        return Response(result)
    if isinstance(result, (bytes, bytearray)):
        return Response(bytes(result), content_type="application/octet-stream")
    raise HandlerResultError(
        f"{what} returned {type(result).__name__}; expected Response, str or bytes"
    )


def describe(function: Callable[..., Any]) -> str:
    """:returns: ``module.name`` of a handler, for logs."""
    name = getattr(function, "__qualname__", None) or repr(function)
    return f"{getattr(function, '__module__', '?')}.{name}"


def failure_response(request: Request, failure: Failure, debug: bool, what: str) -> Response:
    """
    Log a handler's exception with its traceback and answer 500: the traceback
    in the body only in debug mode. A :class:`BodyError` the handler let
    through (``request.POST()`` of a form too large or malformed) is answered
    with its own status (413 or 400) and message instead.
    """
    if failure.check(HandlerResultError):
        log.error("houweb: {what}: {message}", what=what, message=str(failure.value))
        return errorResponse(request, str(failure.value), 500)
    if failure.check(BodyError):
        # The client's fault (a form too large or malformed), not the handler's.
        error: BodyError = failure.value  # type: ignore[assignment]
        return errorResponse(request, str(error), error.status)
    log.failure("houweb: {what} raised an exception", failure, LogLevel.error, what=what)
    try:
        if debug:
            return Response(format_traceback(failure), 500, "text/plain")
        return errorResponse(request, "Internal server error", 500)
    finally:
        let_go_of_locals(failure)


def let_go_of_locals(failure: Failure) -> None:
    """
    Clear the local variables of the finished frames in ``failure``'s
    traceback (the log keeps the failure, with its frames as text): they hold
    the handler's Request, whose body and uploads must not outlive it.
    """
    value = failure.value
    if value is None:  # Twisted's hint: a Failure always holds its exception
        return
    tb = value.__traceback__ or failure.tb
    if tb is not None:
        traceback.clear_frames(tb)
    # And those of the exceptions it was raised from or during (``raise
    # APIError(...)`` in an ``except`` block): their frames may hold it too.
    seen = {id(value)}
    exc = value.__cause__ or value.__context__
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if exc.__traceback__ is not None:
            traceback.clear_frames(exc.__traceback__)
        exc = exc.__cause__ or exc.__context__


def format_traceback(failure: Failure) -> str:
    """
    :returns: the exception's traceback as Python prints it, starting at the
        user's code (Twisted's thread-pool frames left out).
    """
    exc = failure.value
    assert exc is not None  # Twisted's hint: a Failure always holds its exception
    tb = exc.__traceback__ or failure.tb
    while tb is not None and tb.tb_next is not None and _is_twisted(tb.tb_frame):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _is_twisted(frame: Any) -> bool:
    return str(frame.f_globals.get("__name__", "")).startswith("twisted.")
