"""
Calling user code: plain functions in houweb's thread pool, ``async def`` ones
on the reactor; and turning what they return or raise into a
:class:`~houweb.Response`.
"""

from __future__ import annotations

import functools
import inspect
import time
import traceback
from typing import Any, Callable, NamedTuple

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from ._coroutines import run_coroutine
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
) -> Deferred[Any]:
    """
    Call ``function(*args, **kwargs)``: in ``pool`` when it is a plain
    function, on the reactor's asyncio loop when it is ``async def``.
    """
    if is_async(function):
        return maybeDeferred(lambda: run_coroutine(function(*args, **kwargs), reactor))
    return deferToThreadPool(reactor, pool, function, *args, **kwargs)  # type: ignore[arg-type]


class RunningCall(NamedTuple):
    """One call of user code in progress, as shutdown reports it."""

    #: The function called, or what names it (``str()`` gives the name).
    subject: object
    request: Request
    started: float

    def __str__(self) -> str:
        name = describe(self.subject) if callable(self.subject) else str(self.subject)
        seconds = time.monotonic() - self.started
        method, path = self.request.method(), self.request.path()
        return f"{name} ({method} {path}, running for {seconds:.1f}s)"


class RunningCalls:
    """
    The calls of user code in progress, so that a shutdown that runs out of
    grace can name the handlers that would not return. Tracking costs one
    dict insert and one removal per call, both on the reactor thread.
    """

    def __init__(self) -> None:
        self._calls: dict[Deferred[Any], RunningCall] = {}

    def track(self, running: Deferred[Any], subject: object, request: Request) -> Deferred[Any]:
        """
        :param subject: the function called, or what names it in the log.
        :returns: ``running``, counted as in progress until it fires.
        """
        self._calls[running] = RunningCall(subject, request, time.monotonic())
        running.addBoth(self._done, running)
        return running

    def _done(self, result: object, running: Deferred[Any]) -> object:
        del self._calls[running]
        return result

    def __len__(self) -> int:
        return len(self._calls)

    def snapshot(self) -> list[RunningCall]:
        """:returns: the calls in progress, longest running first."""
        return sorted(self._calls.values(), key=lambda call: call.started)


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
    in the body only in debug mode.
    """
    if failure.check(HandlerResultError):
        log.error("houweb: {what}: {message}", what=what, message=str(failure.value))
        return errorResponse(request, str(failure.value), 500)
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
    tb = failure.value.__traceback__ or failure.tb
    if tb is not None:
        traceback.clear_frames(tb)
    # And those of the exceptions it was raised from or during (``raise
    # APIError(...)`` in an ``except`` block): their frames may hold it too.
    seen = {id(failure.value)}
    exc = failure.value.__cause__ or failure.value.__context__
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
    tb = exc.__traceback__ or failure.tb
    while tb is not None and tb.tb_next is not None and _is_twisted(tb.tb_frame):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _is_twisted(frame: Any) -> bool:
    return str(frame.f_globals.get("__name__", "")).startswith("twisted.")
