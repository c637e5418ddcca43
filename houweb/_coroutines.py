"""
Running ``async def`` handlers on the reactor's asyncio loop so they may await
asyncio objects (``asyncio.sleep``, asyncio clients) *and* Twisted Deferreds.

Twisted's ``Deferred.fromCoroutine`` cannot await asyncio futures and a bare
asyncio Task cannot await a Deferred; :func:`run_coroutine` runs the coroutine
as a Task through :class:`_DeferredBridge`, which turns each Deferred the
coroutine yields into an asyncio future the Task can wait for.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any

from twisted.internet.defer import Deferred


class _DeferredBridge:
    """
    Drives ``coro``, waiting on asyncio's behalf for each Deferred it yields;
    with a ``context``, each of its steps runs in that context (as the steps
    of a task run in the task's).
    """

    def __init__(
        self,
        coro: Coroutine[Any, Any, Any],
        loop: asyncio.AbstractEventLoop,
        context: contextvars.Context | None = None,
    ) -> None:
        self._coro = coro
        self._loop = loop
        self._context = context

    def __await__(self) -> Generator[Any, Any, Any]:
        send: Any = None
        error: BaseException | None = None
        context = self._context
        while True:
            try:
                if error is not None:
                    yielded = (
                        self._coro.throw(error)
                        if context is None
                        else context.run(self._coro.throw, error)
                    )
                else:
                    yielded = (
                        self._coro.send(send)
                        if context is None
                        else context.run(self._coro.send, send)
                    )
            except StopIteration as stop:
                return stop.value
            send, error = None, None
            try:
                if isinstance(yielded, Deferred):
                    yield from self._fired(yielded).__await__()
                else:
                    send = yield yielded
            except BaseException as exc:  # noqa: BLE001 - handed back to the coroutine
                error = exc

    def _fired(self, deferred: Deferred[Any]) -> asyncio.Future[None]:
        """A future done when ``deferred`` fires, leaving its result in place."""
        future = self._loop.create_future()

        def fired(result: object) -> object:
            if not future.done():
                future.set_result(None)
            return result

        deferred.addBoth(fired)
        return future


async def _bridged(coro: Coroutine[Any, Any, Any], loop: asyncio.AbstractEventLoop) -> Any:
    return await _DeferredBridge(coro, loop)


def bridge(
    coro: Coroutine[Any, Any, Any],
    loop: asyncio.AbstractEventLoop,
    context: contextvars.Context | None = None,
) -> Awaitable[Any]:
    """
    :returns: ``coro`` as something a task on ``loop`` (the reactor's) can
        await, with each Deferred it awaits waited for; run in ``context``
        when given (by default, in the awaiting task's).
    """
    return _DeferredBridge(coro, loop, context)


def event_loop(reactor: object) -> asyncio.AbstractEventLoop:
    """
    :returns: the asyncio loop under Twisted's asyncio ``reactor``: the loop
        running this thread, since houweb calls this on the reactor thread
        only (public asyncio API, instead of the reactor's private
        ``_asyncioEventloop``).
    :raises RuntimeError: when called elsewhere.
    """
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "houweb runs async handlers on the reactor thread, under Twisted's asyncio reactor"
        ) from None


def run_coroutine(coro: Coroutine[Any, Any, Any], reactor: object) -> Deferred[Any]:
    """
    Run ``coro`` on the reactor's loop.

    :returns: a Deferred with its result; cancelling it cancels the coroutine.
    """
    loop = event_loop(reactor)
    task = loop.create_task(_bridged(coro, loop))
    return Deferred.fromFuture(task)
