"""
Handler classes (hwebserver): :class:`URLHandler`, whose ``handle`` runs in
the thread pool like a ``urlHandler`` function, and :class:`AsyncURLHandler`,
whose ``async def handle`` runs on the reactor and answers with
``request.send(response)`` when it is ready.

Creating an instance registers it; its :class:`HandlerTarget` answers the requests
routed to it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger, LogLevel
from twisted.python import threadable
from twisted.python.failure import Failure

from ._application import default_server
from ._dispatch import as_response, describe
from ._registry import EXACT, PREFIX, Ports, check_handler_path
from ._request import Request, with_sender
from ._response import Response, errorResponse
from ._site import Call
from ._target import Answer

log = Logger(namespace="houweb")


class URLHandler:
    """
    A URL handler as a class: subclass it, override :meth:`handle` and create
    an instance to register it (the registry keeps it alive; an instance for
    the same path and ports replaces the earlier one).

    :param path: starts with ``/``; a trailing slash does not matter.
    :param methods: the HTTP methods it answers (``HEAD`` too when ``GET`` is
        listed); others get 405 with an ``Allow`` header. ``None``: all.
    :param allows_partial: also answer every path below ``path`` (prefix).
    :param ports: which listening ports it answers on, as for ``urlHandler``.
    """

    def __init__(
        self,
        path: str,
        methods: Sequence[str] | None = None,
        allows_partial: bool = False,
        ports: Ports = [],
    ) -> None:
        check_handler_path(path)
        self._path = path
        self._methods = _check_methods(methods)
        kind = PREFIX if allows_partial else EXACT
        # On the default server: Houdini's handler classes have no server argument.
        default_server().registry.add_path(kind, path, ports, HandlerTarget(self))

    def path(self) -> str:
        """:returns: the path this handler was registered at."""
        return self._path

    def methods(self) -> list[str] | None:
        """:returns: the methods it answers, ``None`` for all."""
        return None if self._methods is None else list(self._methods)

    def allows(self, method: str) -> bool:
        """:returns: whether requests with ``method`` reach :meth:`handle`."""
        allowed = self._methods
        return allowed is None or method in allowed or (method == "HEAD" and "GET" in allowed)

    def handle(self, request: Request) -> Response:
        """
        Answer ``request``; runs in houweb's thread pool. Returns a Response
        (or ``str``/bytes, as URL handler functions may).
        """
        raise NotImplementedError(f"{type(self).__name__} does not override handle()")


class AsyncURLHandler(URLHandler):
    """
    A URL handler whose ``async def handle(request)`` runs on the reactor
    thread and answers by calling ``request.send(response)`` once, whenever it
    is ready (it may go on working afterwards). Returning a Response without
    sending sends it; returning without sending anything is a 500.
    """

    async def handle(self, request: Request) -> Response | None:  # type: ignore[override]
        """Answer ``request`` with ``request.send(response)``."""
        raise NotImplementedError(f"{type(self).__name__} does not override handle()")


def _check_methods(methods: Sequence[str] | None) -> tuple[str, ...] | None:
    if methods is None:
        return None
    if isinstance(methods, str) or not isinstance(methods, (list, tuple)):
        raise TypeError(f"methods must be a list of str or None, not {type(methods).__name__}")
    for method in methods:
        if not isinstance(method, str) or not method.isalpha():
            raise ValueError(f"methods entry {method!r} is not an HTTP method")
    return tuple(method.upper() for method in methods)


@dataclass(frozen=True)
class HandlerTarget:
    """A :class:`URLHandler` (or :class:`AsyncURLHandler`) instance."""

    handler: URLHandler

    def answer(self, call: Call) -> Answer:
        """Answer ``call``, routed here: see :func:`_answer_handler`."""
        return _answer_handler(call, self)


def _method_not_allowed(request: Request, handler: URLHandler) -> Response:
    response = errorResponse(request, f"method {request.method()} not allowed", 405)
    response.setHeader("Allow", ", ".join(handler.methods() or []))
    return response


def _answer_handler(call: Call, target: HandlerTarget) -> Response | Deferred[Response]:
    handler: URLHandler = target.handler
    if not handler.allows(call.request.method()):
        return _method_not_allowed(call.request, handler)
    if isinstance(handler, AsyncURLHandler):
        return _AsyncAnswer(call, handler).start()
    what = f"URL handler {describe(handler.handle)}"
    d = call.run(handler.handle, call.request)
    d.addCallback(as_response)
    d.addErrback(call.failed, what)
    return d


class _AsyncAnswer:
    """
    One call of an :class:`AsyncURLHandler`: the answer is the first
    ``request.send()``, else what ``handle`` returned.
    """

    def __init__(self, call: Call, handler: AsyncURLHandler) -> None:
        self._call = call
        self._what = f"AsyncURLHandler {describe(handler.handle)}"
        self._handler = handler
        self._answer: Deferred[Response] = Deferred()
        self._lock = threading.Lock()
        self._sent = False

    def start(self) -> Deferred[Response]:
        """Run ``handle``; :returns: a Deferred with the answer."""
        request = with_sender(self._call.request, self._send)
        d = self._call.run(self._handler.handle, request)
        d.addCallbacks(self._returned, self._raised)
        return self._answer

    def _send(self, response: Response) -> None:
        """``request.send``: the first call answers; may be called from any thread."""
        if not isinstance(response, Response):
            raise TypeError(f"send() takes a Response, not {type(response).__name__}")
        with self._lock:
            if self._sent:
                raise RuntimeError("request.send() was already called for this request")
            self._sent = True
        if threadable.isInIOThread():
            self._answer.callback(response)
        else:
            self._call.context.reactor.callFromThread(self._answer.callback, response)

    def _returned(self, result: Any) -> None:
        if self._sent:
            return
        if result is None:
            message = f"{self._what} returned without calling request.send()"
            log.error("houweb: {message}", message=message)
            self._send(errorResponse(self._call.request, message, 500))
            return
        try:
            response = as_response(result, self._what)
        except TypeError:
            response = self._call.failed(Failure(), self._what)
        self._send(response)

    def _raised(self, failure: Failure) -> None:
        if self._sent:
            log.failure(
                "houweb: {what} raised after answering", failure, LogLevel.error, what=self._what
            )
            return
        self._send(self._call.failed(failure, self._what))
