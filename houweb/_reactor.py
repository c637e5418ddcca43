"""
The Twisted reactor houweb runs on: Twisted's asyncio reactor on a fresh event
loop of its own, run either by the caller's thread or by one dedicated
background thread that lives as long as the process.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any, Callable, TypeVar

from twisted.internet import threads

from ._errors import OperationFailed

T = TypeVar("T")


def install() -> None:
    """
    Install Twisted's asyncio reactor on a fresh event loop of its own, unless
    a reactor was chosen already. ``import houweb`` does this, before Klein
    (which imports the reactor) is loaded.
    """
    if "twisted.internet.reactor" not in sys.modules:
        from twisted.internet import asyncioreactor

        asyncioreactor.install(new_event_loop())


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
