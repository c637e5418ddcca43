"""
The Twisted reactor houweb runs on: Twisted's asyncio reactor on a fresh event
loop of its own, run either by the caller's thread or by one dedicated
background thread that lives as long as the process.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
from typing import Any, Callable, TypeVar

from twisted.internet import tcp, threads
from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.internet.error import ConnectionLost
from twisted.logger import Logger

from ._errors import OperationFailed

T = TypeVar("T")

#: Logs an exception of a function given to ``callFromThread`` as Twisted's
#: reactor does (its namespace, its message).
_twisted_log = Logger(namespace="twisted.internet.base")


def install() -> None:
    """
    Install Twisted's asyncio reactor on a fresh event loop of its own, unless
    a reactor was chosen already. ``import houweb`` does this, before Klein
    (which imports the reactor) is loaded.
    """
    if "twisted.internet.reactor" not in sys.modules:
        from twisted.internet.main import installReactor

        installReactor(HouwebReactor(new_event_loop()))


class HouwebReactor(AsyncioSelectorReactor):
    """
    Twisted's asyncio reactor, made to lose a connection whose socket the
    event loop stopped watching, instead of leaking it.

    uvloop (libuv) answers an error on a socket (a client's reset, say) by
    running the registered callbacks once and closing its poll handle for
    the fd, which stays in the loop's table. When that callback was a read
    that still found bytes (a request sent just before the reset), Twisted
    sees no error and keeps the connection; the next ``add_writer`` or
    ``add_reader`` for the fd (the answer being written) raises
    ``RuntimeError: unable to perform operation on <UVPoll closed=True>``
    out of ``transport.write``, nothing watches the socket any more, and the
    connection never reaches ``connectionLost``: its socket stays open and
    it counts against ``max_connections`` for good. asyncio's own selector
    loop reports the error again on the next turn and never raises here.

    When nothing is written after such a read (the bytes were only part of a
    request), no ``add_writer`` comes; so on uvloop, after each read that
    left the connection open, the socket's pending error (``SO_ERROR``, one
    ``getsockopt``: about 1 µs, some 1% of a request, a tenth of a WebSocket
    echo) tells whether the loop just gave up on it. The question is asked
    once the callbacks the read queued have run (a WebSocket's ``receive``
    among them), and not at all when bytes went straight to the socket
    meanwhile (:func:`~houweb._writethrough.write_now`): a socket holding an
    error takes no bytes (the send fails, and what it did not take goes
    through ``add_writer``, as above).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        """:param loop: the event loop the reactor runs on (see :func:`new_event_loop`)."""
        super().__init__(loop)
        self._houweb_loop = loop
        self._houweb_drops_on_error = type(loop).__module__.startswith("uvloop")

    def callFromThread(  # type: ignore[override]  # Twisted names it f or callable
        self, f: Callable[..., Any], /, *args: object, **kwargs: object
    ) -> None:
        """
        Call ``f(*args, **kwargs)`` on the reactor thread, from any
        thread, in the order of the calls. ``f`` is positional-only: any
        keyword argument, ``f`` and ``callable`` included, is ``f``'s.

        The order holds between these calls, not against ``callLater(0, ...)``
        made on the reactor thread: on asyncio's own loop ``f`` may run
        before such a call made earlier (as on Twisted's other reactors,
        which run thread calls before timed ones); uvloop runs due timers
        first.

        Twisted's asyncio reactor asks the loop to call ``callLater(0, ...)``:
        a DelayedCall, an asyncio timer and a pass of ``runUntilCurrent`` for
        each (each handler's result comes back this way, some 5 µs of the
        reactor thread per request). This asks the loop to call it directly
        (still thread-safe, waking the loop; before the loop runs, it is
        called once it does), logging an exception with its traceback, as
        an error in a function called from a thread.
        """
        self._houweb_loop.call_soon_threadsafe(_call_logged, f, args, kwargs)

    def addReader(self, reader: Any) -> None:
        """Watch ``reader``; lose its connection when the loop cannot (see the class)."""
        try:
            super().addReader(reader)  # type: ignore[no-untyped-call]
        except RuntimeError:
            if self._houweb_loop.is_closed():
                raise
            self._unwatchable(reader, reading=True)

    def addWriter(self, writer: Any) -> None:
        """Watch ``writer``; lose its connection when the loop cannot (see the class)."""
        try:
            super().addWriter(writer)  # type: ignore[no-untyped-call]
        except RuntimeError:
            if self._houweb_loop.is_closed():
                raise
            self._unwatchable(writer, reading=False)

    def _readOrWrite(self, selectable: Any, read: bool) -> None:
        """
        Read from or write to ``selectable`` (what Twisted's reactor does when
        the loop reports it ready); then, on uvloop, lose a connection whose
        socket holds an error after a read that found bytes (see the class).

        Extends the reactor's private ``_readOrWrite`` (listed in
        tests/test_private_names.py): the loop calls it back.
        """
        super()._readOrWrite(selectable, read)  # type: ignore[no-untyped-call]
        if (
            read
            and self._houweb_drops_on_error
            # a stream connection (TCP, Unix): a UDP socket's ICMP error is no reset;
            # asked of its class, not of socket.type (an enum built per call)
            and isinstance(selectable, tcp.Connection)
            and not selectable.disconnected
        ):
            selectable.houweb_sent = False  # type: ignore[attr-defined]  # houweb's mark
            self._houweb_loop.call_soon(self._check_error, selectable)

    def _check_error(self, selectable: Any) -> None:
        """
        After a read (see :meth:`_readOrWrite`), once the callbacks it
        queued ran: lose ``selectable``'s connection when its socket holds
        an error, unless bytes went straight to it since the read
        (``houweb_sent``, set by :func:`~houweb._writethrough.write_now`).
        """
        if selectable.houweb_sent or selectable.disconnected:
            return
        sock = getattr(selectable, "socket", None)
        if isinstance(sock, socket.socket) and sock.fileno() != -1:
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                self._unwatchable(selectable, reading=True, why=os.strerror(error))

    def _unwatchable(self, selectable: Any, reading: bool, why: str = "") -> None:
        """
        Drop the loop's closed handle for ``selectable``'s fd (a later socket
        given the same number would hit it too), and lose the connection on
        the next turn, as Twisted loses one whose write failed: not from
        inside the ``transport.write`` that got here.

        Uses the reactor's private ``_disconnectSelectable`` (listed in
        tests/test_private_names.py).

        :param selectable: the transport the loop refused to watch.
        :param reading: whether it was to be watched for reading.
        :param why: the socket's error, when known.
        """
        # Twisted counts it neither a reader nor a writer now: nothing may
        # register its fd with the loop behind Twisted's back (houweb's
        # direct read of a WebSocket: see _websocket._Connection._read_directly),
        # since Twisted's removeReader would not take that away.
        selectable.houweb_unwatched = True
        fd = selectable.fileno()
        if fd != -1:
            self._houweb_loop.remove_reader(fd)
            self._houweb_loop.remove_writer(fd)

        def lose() -> None:
            if not getattr(selectable, "disconnected", False):
                self._disconnectSelectable(  # type: ignore[no-untyped-call]
                    selectable,
                    ConnectionLost(why or "the event loop stopped watching the socket"),
                    reading,
                )

        self.callLater(0, lose)  # type: ignore[no-untyped-call]


def _call_logged(
    f: Callable[..., Any], args: tuple[object, ...], kwargs: dict[str, object]
) -> None:
    """
    Call ``f``, logging what it raises with its traceback and what ``f`` was
    (Twisted's own wording, "while handling timed call", named a timer that
    was none).
    """
    try:
        f(*args, **kwargs)
    except BaseException:  # noqa: BLE001 - as Twisted's reactor: logged, the loop goes on
        _twisted_log.failure(
            "Unhandled error in a function called from a thread (callFromThread): {function!r}",
            function=f,
        )


def new_event_loop() -> asyncio.AbstractEventLoop:
    """
    A fresh event loop for the reactor: uvloop's where it is installed (about
    10% more requests per second on hello-world, measured in bench/), else
    asyncio's selector loop (Windows' proactor loop cannot run Twisted).
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.SelectorEventLoop()
    return uvloop.new_event_loop()


def get_reactor() -> Any:
    """
    :returns: the process's Twisted reactor, the asyncio one.
    :raises OperationFailed: if another kind of reactor is installed.
    """
    install()
    from twisted.internet import reactor
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        raise OperationFailed(
            f"houweb needs Twisted's asyncio reactor, but {type(reactor).__name__} is installed; "
            "import houweb (or install asyncioreactor) before anything imports twisted.internet.reactor"
        )
    return reactor


class BackgroundReactor:
    """The reactor, running in a daemon thread of its own until the process ends."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self._thread: threading.Thread | None = None
        #: One start at a time: two servers' first background run() at once
        #: would both run the reactor (the second raises, and its dead
        #: thread could be the one kept).
        self._starting = threading.Lock()

    def is_alive(self) -> bool:
        """:returns: whether the background thread runs the reactor."""
        return self._thread is not None and self._thread.is_alive()

    def is_current_thread(self) -> bool:
        """:returns: whether the caller is the reactor thread."""
        return self._thread is threading.current_thread()

    def start(self) -> None:
        """
        Start the reactor thread, once; return when the reactor runs.

        :raises OperationFailed: with the reason, when the reactor cannot run
            (e.g. other code ran and stopped it: ``ReactorNotRestartable``).
        """
        with self._starting:
            self._start()

    def _start(self) -> None:
        if self.is_alive():
            return
        settled = threading.Event()
        ran: list[bool] = []
        failed: list[BaseException] = []

        def running() -> None:
            ran.append(True)
            settled.set()

        def serve() -> None:
            try:
                self.reactor.run(installSignalHandlers=False)
            except BaseException as exc:  # noqa: BLE001 - handed to start()'s caller
                failed.append(exc)
            finally:
                settled.set()

        self.reactor.callWhenRunning(running)
        self._thread = threading.Thread(target=serve, name="houweb-reactor", daemon=True)
        self._thread.start()
        settled.wait()
        if not ran:
            reason = failed[0] if failed else RuntimeError("reactor.run() returned at once")
            raise OperationFailed(cannot_run_reactor(reason))

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Call ``function`` on the reactor thread and wait for its (Deferred) result."""
        if self.is_current_thread():
            raise RuntimeError("cannot wait for the reactor from the reactor thread")
        return threads.blockingCallFromThread(self.reactor, function, *args)

    def stop(self, timeout: float) -> None:
        """Stop the reactor and wait up to ``timeout`` seconds for its thread."""
        if self.is_alive() and self._thread is not None:
            self.reactor.callFromThread(self.reactor.stop)
            self._thread.join(timeout)


def cannot_run_reactor(exc: BaseException) -> str:
    """:returns: why run() failed, when the reactor raised ``exc`` instead of running."""
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return (
        f"the Twisted reactor cannot run ({detail}); other code in this process may have "
        "run and stopped it, and a stopped reactor cannot start again"
    )


def register_before_exit(function: Callable[[], None]) -> None:
    """
    Call ``function`` when the main thread ends, *before* the interpreter joins
    non-daemon threads (``atexit`` runs only after that, too late to shut a
    server down gracefully).
    """
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        register(function)
    else:  # pragma: no cover - Pythons without the hook
        import atexit

        atexit.register(function)


def is_interactive() -> bool:
    """
    :returns: whether Python runs interactively (REPL, IPython, Jupyter) or
        inside a Houdini session with a UI.
    """
    if sys.flags.interactive or hasattr(sys, "ps1"):
        return True
    ipython = sys.modules.get("IPython")
    if ipython is not None and getattr(ipython, "get_ipython", lambda: None)() is not None:
        return True
    hou = sys.modules.get("hou")
    return bool(hou is not None and getattr(hou, "isUIAvailable", lambda: False)())
