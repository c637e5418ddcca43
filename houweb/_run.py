"""
The process-wide lifecycle behind :func:`run`, :func:`requestShutdown`,
:func:`isInDebugMode` and :func:`serverPorts`: at most one server at a time,
served in the foreground (the caller's thread runs the reactor) or in the
background (one dedicated reactor thread).
"""

from __future__ import annotations

import gc
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.internet.error import ReactorNotRunning

from . import _logging
from ._config import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_SHUTDOWN_GRACE,
    ServerConfig,
)
from ._errors import OperationFailed
from ._reactor import BackgroundReactor, get_reactor, is_interactive, register_before_exit
from ._server import Server

if TYPE_CHECKING:
    from ._workers import Workers

#: When houweb was imported: near enough when the program started. Reloading
#: also restarts for sources saved after that, before it watched them.
STARTED = time.time()


class _Process:
    """What this process has running: the server, the reactor thread."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.server: Server | None = None
        self.background: BackgroundReactor | None = None
        self.foreground_done = False
        self.exit_hook_registered = False

    def set_server(self, server: Server | None) -> None:
        with self.lock:
            self.server = server


_process = _Process()


def run(
    port: int = 8008,
    debug: bool = False,
    max_num_threads: int = 4,
    in_background: bool | None = None,
    reload_source_changes: bool | None = None,
    max_in_memory_file_upload_size: int | None = None,
    max_request_size: int | None = None,
    settings: Any = None,
    ports: Sequence[int] = [],
    *,
    interface: str = "127.0.0.1",
    listen: Sequence[str] = [],
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    token: str | None = None,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    workers: int = 1,
    allowed_hosts: Sequence[str] | None = None,
) -> None:
    """
    Start the web server on ``port`` (and ``ports``, and ``listen``).

    :param port: the main port; 0 lets the system pick (see :func:`serverPorts`).
    :param debug: tracebacks in 500 answers and one log line per request.
    :param max_num_threads: how many plain handlers may run at once.
    :param in_background: ``True``: serve from a background thread and return
        once listening. ``False``: serve here and return after
        :func:`requestShutdown`, Ctrl-C or SIGTERM. ``None``: background when
        Python is interactive, foreground otherwise.
    :param reload_source_changes: restart when the application's source files
        change; ``None`` means on in debug mode in the foreground.
    :param max_in_memory_file_upload_size: uploads up to this many bytes stay
        in memory (default 2.5 MB).
    :param max_request_size: the largest request body accepted (default 3 GB).
    :param settings: a settings file (or dict) like Django's: the CORS
        whitelist, ``ALLOWED_HOSTS``, ``CSRF_TRUSTED_ORIGINS``, the form limits.
    :param ports: more ports to listen on.
    :param interface: the address to listen on; loopback unless you say so.
    :param listen: more Twisted endpoint strings (``tcp:``, ``tcp6:``, ``ssl:``).
    :param shutdown_grace: seconds requests in flight get to finish at shutdown.
    :param idle_timeout: seconds a connection may stay idle between requests.
    :param request_timeout: seconds a request's headers and body may take to
        arrive, however slowly they trickle in (answered 408 after that).
    :param token: a shared secret: when set, every request must send
        ``Authorization: Bearer <token>`` or gets 401.
    :param max_connections: the most connections open at once (default
        1000, per process); a connection beyond them is answered 503 and
        closed at once.
    :param workers: how many processes serve the ports (foreground only,
        POSIX): this one and ``workers - 1`` copies of the program, each with
        its own memory and thread pool.
    :param allowed_hosts: Django's ``ALLOWED_HOSTS``, the host names requests
        may be addressed to (``"name"``, ``".domain"`` with its subdomains,
        ``"*"``); others get 400. Wins over the settings file's. ``None``: the
        settings file's, else the loopback names when every address is
        loopback, else ``"*"``.
    :raises OperationFailed: a port cannot be bound, houweb already runs, the
        settings cannot be loaded, or ``workers`` cannot be had here.
    """
    config = ServerConfig.from_arguments(
        port=port,
        debug=debug,
        max_num_threads=max_num_threads,
        max_in_memory_file_upload_size=max_in_memory_file_upload_size,
        max_request_size=max_request_size,
        settings=settings,
        ports=ports,
        interface=interface,
        listen=listen,
        shutdown_grace=shutdown_grace,
        idle_timeout=idle_timeout,
        request_timeout=request_timeout,
        token=token,
        max_connections=max_connections,
        allowed_hosts=allowed_hosts,
    )
    background = is_interactive() if in_background is None else bool(in_background)
    workers = _check_workers(workers, background)
    reactor = _claim_reactor()
    _begin_logging(config.debug)
    if background or (_process.background and _process.background.is_alive()):
        _not_in_foreground(reload_source_changes)
        server = _start_in_background(config, reactor)
        if not background:
            _wait_in_foreground(server)
    else:
        if _is_worker():
            reload_source_changes = False  # the first process reloads, and its workers with it
        reactor = _reloading(reactor, reload_source_changes, config, keep=workers > 1)
        _serve_in_foreground(config, reactor, workers)


# Reloading (_reload) and workers (_workers) are imported only when asked for:
# they cost start-up time a plain server need not pay. A process that a
# restart or a worker start made imports them before its program runs, and
# they hold what it inherited (listening sockets, its worker number).


def _loaded(name: str) -> Any:
    """:returns: the module ``houweb.<name>`` if it is imported already, else ``None``."""
    return sys.modules.get(f"{__package__}.{name}")


def _is_worker() -> bool:
    """:returns: whether this process is a worker started by another houweb process."""
    workers = _loaded("_workers")
    return workers is not None and bool(workers.is_worker())


def _check_workers(workers: object, background: bool) -> int:
    """:returns: ``run()``'s ``workers`` argument, checked (see ``_workers.check_workers``)."""
    if type(workers) is int and workers == 1:
        return 1
    from . import _workers

    return _workers.check_workers(workers, background)


def _reloading(
    reactor: Any, reload_source_changes: bool | None, config: ServerConfig, keep: bool
) -> Any:
    """:returns: the reactor a foreground server serves through (see ``_reload.reloading``)."""
    wanted = config.debug if reload_source_changes is None else bool(reload_source_changes)
    if not (wanted or keep) and _loaded("_reload") is None:
        return reactor  # nothing to reload, keep or adopt
    from . import _reload

    return _reload.reloading(reactor, reload_source_changes, config, keep=keep)


def _not_in_foreground(reload_source_changes: bool | None) -> None:
    """A background server: see ``_reload.not_in_foreground``."""
    if reload_source_changes or _loaded("_reload") is not None:
        from . import _reload

        _reload.not_in_foreground(reload_source_changes)


def _claim_reactor() -> Any:
    with _process.lock:
        if _process.server is not None:
            raise OperationFailed(
                f"houweb is already running on port {_process.server.port_numbers()[0]}"
            )
        if _process.foreground_done:
            raise OperationFailed(
                "houweb cannot start again in this process after a foreground run() returned"
            )
        reactor = get_reactor()
        ours = _process.background is not None and _process.background.is_alive()
        if reactor.running and not ours:
            raise OperationFailed(
                "the Twisted reactor is already run by other code in this process"
            )
        return reactor


def _start_in_background(config: ServerConfig, reactor: Any) -> Server:
    with _process.lock:
        if _process.background is None:
            _process.background = BackgroundReactor(reactor)
        _process.background.start()
        if not _process.exit_hook_registered:
            register_before_exit(_shutdown_at_exit)
            _process.exit_hook_registered = True
        server = Server(config, reactor)
        _process.background.call(server.start)
        _process.set_server(server)
        server.shutdown_requested().addCallback(lambda _: _forget(server))
        return server


def _forget(server: Server) -> None:
    with _process.lock:
        if _process.server is server:
            _process.server = None


def _serve_in_foreground(config: ServerConfig, reactor: Any, workers: int = 1) -> None:
    server = Server(config, reactor)
    # Before listening: once "listening on" is logged, Ctrl-C and SIGTERM shut
    # down gracefully (a worker's parent may send SIGTERM right then). A
    # signal before the reactor runs is handled as soon as it does.
    restore = _install_signal_handlers(reactor)
    failure: list[Any] = []
    server.start().addErrback(failure.append)
    if failure:  # binding happens at once, before the reactor runs
        restore()
        failure[0].raiseException()
    _process.set_server(server)
    server.shutdown_requested().addCallback(lambda _: _forget(server))
    supervisor = None
    try:
        process_workers = _loaded("_workers")  # imported if there are workers, or this is one
        if process_workers is not None:
            supervisor = process_workers.start_workers(reactor, workers)
            process_workers.watch_parent(reactor, _shut_down_here)
        _stop_reactor_when_done(reactor, server, supervisor)
        freeze_start_up_heap()
        reactor.run(installSignalHandlers=False)
    finally:
        restore()
        if supervisor is not None:
            supervisor.kill_now()  # only those still running: a second Ctrl-C
        _process.foreground_done = True
        _forget(server)


def _stop_reactor_when_done(reactor: Any, server: Server, supervisor: Workers | None) -> None:
    """Stop the reactor once the server, and its workers if any, have stopped."""
    done: defer.Deferred[Any] = server.stopped()
    if supervisor is not None:
        workers_ended = server.shutdown_requested()
        workers_ended.addCallback(lambda _: supervisor.stop(server.config.shutdown_grace))
        done = defer.gatherResults([done, workers_ended])
    done.addBoth(lambda _: reactor.stop())


def freeze_start_up_heap() -> None:
    """
    Move every object alive after start-up (modules, classes, the handlers)
    out of the cyclic garbage collector's reach. Full collections then scan
    only what requests allocate: measured on hello-world, p99 latency fell
    from about 30 ms to 6 ms and throughput rose 15%. Done only when houweb
    owns the process (foreground), never inside an embedding application.

    No ``gc.collect()`` first: start-up leaves about 60 unreachable objects
    among some 56,000 (measured on bench/servers/houweb_app.py), and finding
    them took 20-40 ms of the cold start.
    """
    gc.freeze()


def _wait_in_foreground(server: Server) -> None:
    """A foreground run() while the background reactor thread serves."""
    done = threading.Event()
    server.stopped().addBoth(lambda _: done.set())
    try:
        while not done.wait(0.2):
            pass
    except KeyboardInterrupt:
        requestShutdown()
        done.wait(server.config.shutdown_grace + 1)


def _install_signal_handlers(reactor: Any) -> Any:
    """Ctrl-C / SIGTERM shut down gracefully; a second one stops at once."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    # A worker leaves Ctrl-C (sent to the whole process group) to its parent.
    names = ["SIGTERM"] if _is_worker() else ["SIGINT", "SIGTERM", "SIGBREAK"]
    numbers = [getattr(signal, n) for n in names if hasattr(signal, n)]
    received: list[int] = []

    def handle(signum: int, frame: Any) -> None:
        received.append(signum)
        if len(received) == 1:
            reactor.callFromThread(_shut_down_here)
        else:
            reactor.callFromThread(_stop_now, reactor)

    previous = {n: signal.signal(n, handle) for n in numbers}
    return lambda: [signal.signal(n, h) for n, h in previous.items()]


def _stop_now(reactor: Any) -> None:
    try:
        reactor.stop()
    except ReactorNotRunning:
        pass  # a third signal while stopping


def requestShutdown() -> None:
    """
    Ask the running server to stop: it stops accepting, lets requests in
    progress finish, then stops. Returns at once; callable from any thread,
    handlers included. Does nothing when no server runs.
    """
    process_workers = _loaded("_workers")
    if process_workers is not None and process_workers.stop_all_from_worker():
        return
    _shut_down_here()


def _shut_down_here() -> None:
    """Shut this process's server down (in a worker: only this worker's)."""
    server = _process.server
    if server is not None:
        server.reactor.callFromThread(server.shutdown)


def isInDebugMode() -> bool:
    """:returns: whether the running server was started with ``debug=True``."""
    server = _process.server
    return bool(server is not None and server.config.debug)


def serverPorts() -> list[int]:
    """
    :returns: the ports the running server listens on, main port first
        (revealing the one picked for ``port=0``); ``[]`` when not running.
    """
    server = _process.server
    return server.port_numbers() if server is not None else []


def _shutdown_at_exit() -> None:
    """The main thread ended: shut a background server down, then the reactor."""
    background = _process.background
    server = _process.server
    if background is None or not background.is_alive():
        return
    if server is not None:
        try:
            background.call(server.shutdown)
        except Exception:  # noqa: BLE001 - exiting anyway
            pass
    background.stop(timeout=2)


def _begin_logging(debug: bool) -> None:
    """Readable log lines on stderr, unless the program set up Twisted logging."""
    _logging.begin_logging()
