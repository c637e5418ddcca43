"""
The process-wide lifecycle behind :func:`run`, :func:`requestShutdown`,
:func:`isInDebugMode` and :func:`serverPorts`: at most one server at a time,
served in the foreground (the caller's thread runs the reactor) or in the
background (one dedicated reactor thread).
"""

from __future__ import annotations

import gc
import signal
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.internet.error import ReactorNotRestartable, ReactorNotRunning
from twisted.python import threadable

from . import _logging
from ._config import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_SHUTDOWN_GRACE,
    ServerConfig,
)
from ._errors import OperationFailed
from ._reactor import (
    BackgroundReactor,
    cannot_run_reactor,
    get_reactor,
    is_interactive,
    register_before_exit,
)
from ._role import Role, this_process
from ._server import Server

if TYPE_CHECKING:
    from ._workers import Workers


class _Process:
    """What this process has running: the server, the reactor thread."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        #: The server that runs and has not been asked to stop.
        self.server: Server | None = None
        #: The server started last, perhaps still stopping.
        self.last: Server | None = None
        #: A run() between its checks and recording its server: one at a time.
        self.starting = False
        self.background: BackgroundReactor | None = None
        self.foreground_done = False
        self.exit_hook_registered = False

    def record(self, server: Server) -> None:
        """The claimed start succeeded: ``server`` is the running one."""
        with self.lock:
            self.server = self.last = server
            self.starting = False
        server.shutdown_requested().addCallback(lambda _: _forget(server))

    def release(self) -> None:
        """The claimed start is over (recorded or failed)."""
        with self.lock:
            self.starting = False


_process = _Process()


#: Why metrics=True and workers > 1 are refused together.
METRICS_WITH_WORKERS = (
    "metrics=True cannot be used with workers > 1: each process counts only the "
    "requests it answered and a scrape reaches one of them at random, so the "
    "counters would jump back and forth (seen as resets); use workers=1, or one "
    "server per port, each scraped"
)


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
    access_log: bool = False,
    metrics: bool = False,
    metrics_path: str = "/metrics",
    health_path: str = "/healthz",
    status_page: bool = False,
    mcp: bool = False,
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
    :param access_log: log one line per request in the Common Log Format
        (``twistd houweb`` and ``python -m houweb`` do by default).
    :param metrics: serve Prometheus metrics at ``metrics_path`` and a health
        check at ``health_path`` (needs ``pip install 'houweb[metrics]'``).
    :param metrics_path: where the metrics are served.
    :param health_path: where the health check is served; ``""``: nowhere.
    :param status_page: a live status page at ``/houweb/status`` (what runs
        now, the pool, connections, recent errors), for loopback clients, or
        for those with the ``token``.
    :param mcp: also serve every API function a port shows as an MCP tool
        at ``/mcp`` (Streamable HTTP transport; needs the ``mcp`` package).
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
        access_log=access_log,
        metrics=metrics,
        metrics_path=metrics_path,
        health_path=health_path,
        status_page=status_page,
        mcp=mcp,
    )
    background = is_interactive() if in_background is None else bool(in_background)
    if metrics and type(workers) is int and workers > 1:
        raise OperationFailed(METRICS_WITH_WORKERS)
    workers = _check_workers(workers, background)
    reactor = _claim_reactor(foreground=not background)
    if reactor is None:
        return  # a signal while it waited for the previous server: not started
    end_logging = None
    try:
        end_logging = _logging.begin_logging()
        if background or (_process.background and _process.background.is_alive()):
            _not_in_foreground(reload_source_changes)
            if background:
                server = _start_in_background(config, reactor)
                if end_logging is not None:
                    # On the reactor thread, which owns the server's Deferreds.
                    reactor.callFromThread(_when_stopped, server, end_logging)
                    end_logging = None
            else:
                _serve_in_foreground_from_background(config, reactor)
        else:
            if _is_worker():
                reload_source_changes = False  # the first process reloads, and its workers with it
            reactor = _reloading(reactor, reload_source_changes, config, keep=workers > 1)
            _serve_in_foreground(config, reactor, workers)
    finally:
        _process.release()
        if end_logging is not None:  # a foreground server stopped, or nothing started
            end_logging()


def _when_stopped(server: Server, function: Callable[[], None]) -> None:
    """Call ``function()`` once ``server`` has stopped (on the reactor thread)."""
    server.stopped().addBoth(lambda _: function())


# Reloading (_restart) and workers (_workers) are imported only when asked for:
# they cost start-up time a plain server need not pay. What a process is (the
# program, a reloaded child, a worker) and what it inherited (listening
# sockets, its worker number) is _role.this_process, set where it started.


def _is_worker() -> bool:
    """:returns: whether this process is a worker started by another houweb process."""
    return this_process.role is Role.WORKER


def _check_workers(workers: object, background: bool) -> int:
    """:returns: ``run()``'s ``workers`` argument, checked (see ``_workers.check_workers``)."""
    if type(workers) is int and workers == 1:
        return 1
    from . import _workers

    return _workers.check_workers(workers, background)


def _reloading(
    reactor: Any, reload_source_changes: bool | None, config: ServerConfig, keep: bool
) -> Any:
    """:returns: the reactor a foreground server serves through (see ``_restart.reloading``)."""
    wanted = config.debug if reload_source_changes is None else bool(reload_source_changes)
    if not (wanted or keep or this_process.inherited):
        return reactor  # nothing to reload, keep or adopt
    from . import _restart

    return _restart.reloading(
        reactor,
        reload_source_changes,
        config,
        keep=keep,
        running=lambda: _process.server,
        request_shutdown=requestShutdown,
    )


def _not_in_foreground(reload_source_changes: bool | None) -> None:
    """A background server: see ``_restart.not_in_foreground``."""
    if reload_source_changes or this_process.inherited:
        from . import _restart

        _restart.not_in_foreground(reload_source_changes)


#: Seconds a stopping server may take beyond its shutdown grace (closing
#: ports, stopping the pool) before a run() waiting for it gives up.
STOPPING_MARGIN = 2.0


def _claim_reactor(foreground: bool = False) -> Any:
    """
    Check that this run() may start a server and claim the start, in one
    hold of the lock: two threads calling run() at once cannot both start
    one. A server still stopping (after :func:`requestShutdown`) is waited
    for first, up to its shutdown grace.

    :param foreground: a foreground run(): while it waits, Ctrl-C or SIGTERM
        mean "do not start" (the previous server still finishes gracefully;
        a second one stops it at once), as they mean "stop" once it serves.
    :returns: the reactor to serve on, or ``None`` when a signal came while
        waiting (nothing claimed); otherwise the caller must call
        ``_process.release()`` when its start is over.
    :raises OperationFailed: houweb runs, starts in another thread, or cannot
        start here.
    """
    if get_reactor().running and threadable.isInIOThread():
        # It would block the reactor, and with it the server it waits for
        # (houweb's background thread, or twistd's main thread).
        raise OperationFailed(
            "run() cannot be called on houweb's reactor thread (from an async handler): "
            "call it from a plain handler or another thread"
        )
    while True:
        with _process.lock:
            stopping = _check_may_start()
            if stopping is None:
                reactor = get_reactor()
                ours = _process.background is not None and _process.background.is_alive()
                if reactor.running and not ours:
                    raise OperationFailed(
                        "the Twisted reactor is already run by other code in this process"
                    )
                _process.starting = True
                return reactor
        grace = stopping.config.shutdown_grace
        stopped = _wait_for_stopping(stopping, foreground)
        if stopped is None:
            return None
        if not stopped:
            raise OperationFailed(
                f"the previous houweb server is still stopping {grace + STOPPING_MARGIN:g}s "
                "after it was asked to (its shutdown grace, plus a margin)"
            )


def _wait_for_stopping(stopping: Server, foreground: bool) -> bool | None:
    """
    Wait for ``stopping`` to stop, up to its grace plus the margin; in the
    foreground, Ctrl-C or SIGTERM meanwhile cancel the start (a second one
    stops that server at once).

    :returns: whether it stopped in time; ``None`` if a signal cancelled.
    """
    cancelled = threading.Event()

    def stop_it_now() -> None:
        cancelled.set()
        stopping.stop_now()

    restore = _install_signal_handlers(cancelled.set, stop_it_now) if foreground else lambda: None
    try:
        stopped = stopping.wait_stopped(stopping.config.shutdown_grace + STOPPING_MARGIN)
    finally:
        restore()
    return None if cancelled.is_set() else stopped


def _check_may_start() -> Server | None:
    """
    Under ``_process.lock``.

    :returns: the previous server if it is still stopping (wait for it, then
        check again), or ``None`` when a server may start now.
    :raises OperationFailed: if one runs, or starts in another thread.
    """
    server = _process.server
    if server is not None and not server.stop_asked:
        raise OperationFailed(f"houweb is already running on port {server.port_numbers()[0]}")
    if _process.starting:
        raise OperationFailed("houweb is already starting, in another thread")
    if _process.foreground_done:
        raise OperationFailed(
            "houweb cannot start again in this process after a foreground run() returned"
        )
    last = _process.last
    if last is not None and last.stop_asked and not last.wait_stopped(0):
        return last
    return None


def _start_in_background(config: ServerConfig, reactor: Any) -> Server:
    with _process.lock:
        if _process.background is None:
            _process.background = BackgroundReactor(reactor)
        background = _process.background
        if not _process.exit_hook_registered:
            register_before_exit(_shutdown_at_exit)
            _process.exit_hook_registered = True
    background.start()
    server = Server(config, reactor)
    background.call(server.start)
    _process.record(server)
    return server


def _serve_in_foreground_from_background(config: ServerConfig, reactor: Any) -> None:
    """
    A foreground run() while the background reactor thread serves (after
    an earlier background run()): serve from that thread, and handle
    SIGINT/SIGTERM here as any foreground run() does.
    """
    done, asked, now = threading.Event(), threading.Event(), threading.Event()
    started: list[Server] = []

    def first() -> None:
        asked.set()
        requestShutdown()

    def again() -> None:
        # Stop at once, as the reactor stopping does in the foreground: a
        # run() that returned while its server went on serving (and the
        # process waited for the grace to exit) had not stopped anything.
        now.set()
        if started:
            started[0].stop_now()

    # Before listening, as _serve_in_foreground does; a signal that comes
    # after "listening on" but before the server is recorded is seen below.
    restore = _install_signal_handlers(first, again)
    try:
        server = _start_in_background(config, reactor)
        started.append(server)
        server.stopped().addBoth(lambda _: done.set())
        if now.is_set():
            server.stop_now()
        elif asked.is_set():
            server.ask_to_stop()
        try:
            while not done.wait(0.2):
                pass
        except KeyboardInterrupt:  # not the main thread: Python's own Ctrl-C
            requestShutdown()
            server.wait_stopped(server.config.shutdown_grace + STOPPING_MARGIN)
    finally:
        restore()


def adopt(server: Server) -> None:
    """
    A server started by other means (``twistd houweb``) becomes this
    process's server: :func:`requestShutdown`, :func:`isInDebugMode` and
    :func:`serverPorts` then act on it as under ``run()``.

    :raises OperationFailed: if another server runs or starts.
    """
    with _process.lock:
        if _process.server is not None or _process.starting:
            raise OperationFailed("houweb is already running in this process")
        _process.starting = True
    _process.record(server)


def _forget(server: Server) -> None:
    with _process.lock:
        if _process.server is server:
            _process.server = None


def _serve_in_foreground(config: ServerConfig, reactor: Any, workers: int = 1) -> None:
    server = Server(config, reactor)
    # Before listening: once "listening on" is logged, Ctrl-C and SIGTERM shut
    # down gracefully (a worker's parent may send SIGTERM right then). A
    # signal before the reactor runs is handled as soon as it does.
    restore = _install_signal_handlers(
        lambda: reactor.callFromThread(_shut_down_here),
        lambda: reactor.callFromThread(_stop_now, reactor),
    )
    failure: list[Any] = []
    server.start().addErrback(failure.append)
    if failure:  # binding happens at once, before the reactor runs
        restore()
        failure[0].raiseException()
    _process.record(server)
    supervisor = None
    try:
        if workers > 1 or _is_worker():
            from . import _workers

            supervisor = _workers.start_workers(reactor, workers)
            _workers.watch_parent(reactor, _shut_down_here)
        _stop_reactor_when_done(reactor, server, supervisor)
        freeze_start_up_heap()
        try:
            reactor.run(installSignalHandlers=False)
        except ReactorNotRestartable as exc:
            server.close_ports_now()
            server.pool.stop()
            raise OperationFailed(cannot_run_reactor(exc)) from None
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


def _install_signal_handlers(
    first: Callable[[], object], again: Callable[[], object]
) -> Callable[[], object]:
    """
    Ctrl-C / SIGTERM call ``first`` (shut down gracefully); a second one
    calls ``again`` (stop at once). Only in the main thread.

    :returns: a function that puts the previous handlers back.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    # A worker leaves Ctrl-C (sent to the whole process group) to its parent.
    names = ["SIGTERM"] if _is_worker() else ["SIGINT", "SIGTERM", "SIGBREAK"]
    numbers = [getattr(signal, n) for n in names if hasattr(signal, n)]
    received: list[int] = []

    def handle(signum: int, frame: Any) -> None:
        received.append(signum)
        if len(received) == 1:
            first()
        else:
            again()

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
    if _is_worker():
        from . import _workers  # imported already: work() started this process

        if _workers.stop_all_from_worker():
            return
    _shut_down_here()


def _shut_down_here() -> None:
    """Shut this process's server down (in a worker: only this worker's)."""
    server = _process.server
    if server is not None:
        server.ask_to_stop()


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
    """
    The main thread ended: shut a background server down, then the reactor.
    A server already stopping (requestShutdown() just before the script
    ended) is waited for too, up to its grace: its requests in progress
    were promised they may finish, and stopping the reactor would cut them.
    """
    background = _process.background
    with _process.lock:
        server = _process.server or _process.last
    if background is None or not background.is_alive():
        return
    if server is not None:
        try:
            background.call(server.shutdown)  # or waits for the one under way
        except Exception:  # noqa: BLE001 - exiting anyway
            server.wait_stopped(server.config.shutdown_grace + STOPPING_MARGIN)
    background.stop(timeout=2)
