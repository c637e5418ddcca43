"""
The lifecycle behind ``run()``, ``requestShutdown()``, ``isInDebugMode()``
and ``serverPorts()`` of each :class:`houweb.Server` (the module-level ones
act on the default server): each server object has a :class:`Lifecycle`
(at most one running server of its own at a time), and every server of the
process is served by the one reactor, in the foreground (the caller's thread
runs it) or in the background (one dedicated reactor thread).

What is one per process is in :data:`_process`, and only that: the reactor
and its background thread (a reactor cannot be restarted or run twice), the
signal handlers (a process has one set), whether a foreground ``run()``
already returned (the reactor is then stopped for good), the server that
runs the process in the foreground (reloading and workers re-run or copy the
whole program, so only it may use them), and the exit hook.
"""

from __future__ import annotations

import gc
import inspect
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import defer, threads
from twisted.internet.error import ReactorNotRestartable, ReactorNotRunning
from twisted.logger import Logger
from twisted.python import threadable

from . import _logging
from ._config import ServerConfig
from ._errors import OperationFailed
from ._reactor import (
    BackgroundReactor,
    cannot_run_reactor,
    get_reactor,
    is_interactive,
    register_before_exit,
)
from ._registry import Registry
from ._role import Role, this_process
from ._server import RunningServer

if TYPE_CHECKING:
    from ._workers import Workers

#: ``port_callback(port)`` (or Houdini's ``(port_name, port)``): told the main port once a server listens.
PortCallback = Callable[..., object]

log = Logger(namespace="houweb")


class Lifecycle:
    """
    One server object's run state (a :class:`houweb.Server` owns one): the
    running server it started, the last one, and a start under way. Changed
    only under the process lock, so that two threads calling ``run()`` on
    the same server object never both start it.
    """

    def __init__(self, name: str = "") -> None:
        #: The server object's name; ``""`` for the default server.
        self.name = name
        #: The server that runs and has not been asked to stop.
        self.server: RunningServer | None = None
        #: The server started last, perhaps still stopping.
        self.last: RunningServer | None = None
        #: A run() between its checks and recording its server: one at a time.
        self.starting = False

    def label(self) -> str:
        """:returns: how messages name this server: ``houweb`` for the default one."""
        return f"houweb server {self.name!r}" if self.name else "houweb"

    def record(self, server: RunningServer) -> None:
        """The claimed start succeeded: ``server`` is the running one."""
        with _process.lock:
            self.server = self.last = server
            self.starting = False
            _process.hold(self)
        server.shutdown_requested().addCallback(lambda _: _forget(self, server))

    def release(self) -> None:
        """The claimed start is over (recorded or failed)."""
        with _process.lock:
            self.starting = False


class _Process:
    """
    What is one per process, whatever the number of servers (see the module
    docstring for why each is).
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.background: BackgroundReactor | None = None
        self.foreground_done = False
        self.exit_hook_registered = False
        #: The server object whose run() serves the reactor in this thread
        #: (or that twistd serves): it owns reloading, workers and signals.
        self.foreground: Lifecycle | None = None
        #: The server objects that run, start or are stopping here (see :meth:`hold`).
        self.lifecycles: list[Lifecycle] = []
        #: :attr:`foreground` reloads or has workers: no other server may start.
        self.exclusive = False
        #: Ends the logging a background run() began, once no server runs.
        self.end_logging: Callable[[], None] | None = None

    def hold(self, lifecycle: Lifecycle) -> None:
        """
        Under :attr:`lock`: add ``lifecycle`` to :attr:`lifecycles`, and drop
        those whose servers have stopped (a bridge that restarts itself makes
        a new server object each time: they were all kept, with their last
        server's site, pool and registry).
        """
        self.lifecycles = [
            each
            for each in self.lifecycles
            if each is not lifecycle
            and (
                each.starting
                or each.server is not None
                or (each.last is not None and not each.last.wait_stopped(0))
            )
        ]
        self.lifecycles.append(lifecycle)

    @property
    def server(self) -> RunningServer | None:
        """The running server of :attr:`foreground` (what reloading restarts)."""
        foreground = self.foreground
        return foreground.server if foreground is not None else None

    def reactor_is_ours(self) -> bool:
        """:returns: whether houweb runs the reactor (its thread, or a foreground run())."""
        if self.background is not None and self.background.is_alive():
            return True
        return self.foreground is not None and self.foreground.server is not None


_process = _Process()


#: Why metrics=True and workers > 1 are refused together.
METRICS_WITH_WORKERS = (
    "metrics=True cannot be used with workers > 1: each process counts only the "
    "requests it answered and a scrape reaches one of them at random, so the "
    "counters would jump back and forth (seen as resets); use workers=1, or one "
    "server per port, each scraped"
)


def run(
    lifecycle: Lifecycle,
    registry: Registry,
    config: ServerConfig,
    in_background: bool | None = None,
    reload_source_changes: bool | None = None,
    workers: int = 1,
    port_callback: PortCallback | None = None,
) -> None:
    """
    Start a server for ``lifecycle`` answering from ``registry``: what
    ``Server.run()`` (and the module-level ``run()``) does once its
    arguments are made into ``config``.

    :param in_background: as for ``run()``: ``None`` means background when
        Python is interactive.
    :param port_callback: called with the main port's number once every port
        listens, in the thread that called ``run()``, before it returns (in
        the background) or before the server serves (in the foreground).
    :raises OperationFailed: see ``run()``.
    """
    background = is_interactive() if in_background is None else bool(in_background)
    if config.metrics and type(workers) is int and workers > 1:
        raise OperationFailed(METRICS_WITH_WORKERS)
    workers = _check_workers(workers, background)
    reactor = _claim_reactor(lifecycle, foreground=not background)
    if reactor is None:
        return  # a signal while it waited for the previous server: not started
    end_logging = None
    beside_others = False
    try:
        end_logging = _logging.begin_logging()
        if background or _process.reactor_is_ours():
            beside_others = True
            if not background and reload_source_changes and _others_run(lifecycle):
                # The warning below says "needs in_background=False", which it has.
                raise OperationFailed(_needs_the_process("reload_source_changes"))
            _not_in_foreground(reload_source_changes)
            if workers > 1:
                raise OperationFailed(_needs_the_process("workers > 1"))
            if background:
                server = _start_in_background(lifecycle, registry, config, reactor)
                _tell_port(port_callback, server)
                # On the reactor thread, which owns the server's Deferreds.
                reactor.callFromThread(_when_stopped, server, _end_logging_when_idle)
            else:
                _serve_in_foreground_from_background(
                    lifecycle, registry, config, reactor, port_callback
                )
        else:
            if _is_worker():
                reload_source_changes = False  # the first process reloads, and its workers with it
            served = _reloading(reactor, reload_source_changes, config, keep=workers > 1)
            exclusive = served is not reactor or workers > 1
            _serve_in_foreground(
                lifecycle, registry, config, served, workers, port_callback, exclusive
            )
    finally:
        lifecycle.release()
        if end_logging is not None and beside_others:
            # Logging lasts while any server of the process runs.
            _process.end_logging = end_logging
            _end_logging_when_idle()
        elif end_logging is not None:  # a foreground server stopped, or nothing started
            end_logging()


def _end_logging_when_idle() -> None:
    """
    End the logging a ``run()`` began once no server of the process starts,
    runs or is still stopping: the servers share it, whichever began it.
    """
    with _process.lock:
        for lifecycle in _process.lifecycles:
            last = lifecycle.last
            if lifecycle.starting or (last is not None and not last.wait_stopped(0)):
                return
        end, _process.end_logging = _process.end_logging, None
    if end is not None:
        end()


def _others_run(lifecycle: Lifecycle) -> bool:
    """:returns: whether a server of another server object runs in this process."""
    with _process.lock:
        return any(
            other is not lifecycle and other.server is not None for other in _process.lifecycles
        )


def _needs_the_process(what: str) -> str:
    """:returns: why ``what`` is refused while another server runs here."""
    running = ", ".join(
        lifecycle.label() for lifecycle in _process.lifecycles if lifecycle.server is not None
    )
    return (
        f"{what} needs a foreground run() that owns the process (it restarts or copies the "
        f"whole program), but another server already runs here ({running or 'houweb'})"
    )


def _tell_port(port_callback: PortCallback | None, server: RunningServer) -> None:
    """Call ``port_callback`` with ``server``'s main port; a failure is logged, not raised."""
    if port_callback is None:
        return
    port = server.port_numbers()[0]
    try:
        if _takes_name_and_port(port_callback):
            port_callback("main", str(port))
        else:
            port_callback(port)
    except Exception:  # noqa: BLE001 - the server serves on: say what failed
        log.failure("houweb: port_callback failed")


def _takes_name_and_port(port_callback: PortCallback) -> bool:
    """
    :returns: whether ``port_callback`` takes two positional arguments (or
        ``*args``): Houdini 21 calls it with the port's name and its number,
        both as text (observed in a bridge written for it); one that takes
        one argument gets the number, as houweb documents.
    """
    try:
        parameters = inspect.signature(port_callback).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: houweb's form
        return False
    required = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(required) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in parameters)


def _when_stopped(server: RunningServer, function: Callable[[], None]) -> None:
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
        running=_foreground_server,
        request_shutdown=requestShutdown,
    )


def _foreground_server() -> RunningServer | None:
    """:returns: the running server of the server object that owns the process, if any."""
    owner = _process.foreground
    return owner.server if owner is not None else None


def _not_in_foreground(reload_source_changes: bool | None) -> None:
    """A background server: see ``_restart.not_in_foreground``."""
    if reload_source_changes or this_process.inherited:
        from . import _restart

        _restart.not_in_foreground(reload_source_changes)


#: Seconds a stopping server may take beyond its shutdown grace (closing
#: ports, stopping the pool) before a run() waiting for it gives up.
STOPPING_MARGIN = 2.0


def _claim_reactor(lifecycle: Lifecycle, foreground: bool = False) -> Any:
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
        ``lifecycle.release()`` when its start is over.
    :raises OperationFailed: this server runs, starts in another thread, or
        cannot start here.
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
            stopping = _check_may_start(lifecycle)
            if stopping is None:
                reactor = get_reactor()
                if reactor.running and not _process.reactor_is_ours():
                    raise OperationFailed(
                        "the Twisted reactor is already run by other code in this process"
                    )
                lifecycle.starting = True
                _process.hold(lifecycle)
                return reactor
        grace = stopping.config.shutdown_grace
        stopped = _wait_for_stopping(stopping, foreground)
        if stopped is None:
            return None
        if not stopped:
            previous = (
                f"the previous run of {lifecycle.label()}"
                if lifecycle.name
                else f"the previous {lifecycle.label()} server"
            )
            raise OperationFailed(
                f"{previous} is still stopping {grace + STOPPING_MARGIN:g}s "
                "after it was asked to (its shutdown grace, plus a margin)"
            )


def _wait_for_stopping(stopping: RunningServer, foreground: bool) -> bool | None:
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


def _check_may_start(lifecycle: Lifecycle) -> RunningServer | None:
    """
    Under ``_process.lock``.

    :returns: the previous server of ``lifecycle`` if it is still stopping
        (wait for it, then check again), or ``None`` when it may start now.
    :raises OperationFailed: if it runs, or starts in another thread; if the
        reactor has stopped for good; if a server that reloads or has
        workers owns the process.
    """
    server = lifecycle.server
    if server is not None and not server.stop_asked:
        raise OperationFailed(
            f"{lifecycle.label()} is already running on port {server.port_numbers()[0]}"
        )
    if lifecycle.starting:
        raise OperationFailed(f"{lifecycle.label()} is already starting, in another thread")
    if _process.foreground_done:
        raise OperationFailed(
            "houweb cannot start again in this process after a foreground run() returned"
        )
    owner = _process.foreground
    if _process.exclusive and owner is not None and owner is not lifecycle and owner.server:
        raise OperationFailed(
            f"{lifecycle.label()} cannot start while {owner.label()} runs with "
            "reload_source_changes or workers: those restart or copy the whole program, "
            "which would not carry this server"
        )
    last = lifecycle.last
    if last is not None and last.stop_asked and not last.wait_stopped(0):
        return last
    return None


def _start_in_background(
    lifecycle: Lifecycle, registry: Registry, config: ServerConfig, reactor: Any
) -> RunningServer:
    """
    Start a server on the reactor from this thread: on houweb's background
    reactor thread (started now if need be), or on the reactor a foreground
    ``run()`` of another server serves.
    """
    with _process.lock:
        hosted = _process.reactor_is_ours() and not (
            _process.background is not None and _process.background.is_alive()
        )
        if not hosted:
            if _process.background is None:
                _process.background = BackgroundReactor(reactor)
            background = _process.background
            if not _process.exit_hook_registered:
                register_before_exit(_shutdown_at_exit)
                _process.exit_hook_registered = True
        # Servers asked to stop close their ports on the reactor thread, a turn
        # after requestShutdown() returned: a port one of them releases is
        # bound once it has (a restarting bridge takes its old port again).
        releasing = [
            other.last
            for other in _process.lifecycles
            if other.last is not None and other.last.stop_asked and not other.last.wait_stopped(0)
        ]
    if not hosted:
        background.start()
    server = RunningServer(config, reactor, registry, lifecycle.name)

    def start() -> defer.Deferred[Any]:
        released = defer.gatherResults([other.ports_closed() for other in releasing])
        return released.addCallback(lambda _: server.start())

    threads.blockingCallFromThread(reactor, start)
    lifecycle.record(server)
    return server


def _serve_in_foreground_from_background(
    lifecycle: Lifecycle,
    registry: Registry,
    config: ServerConfig,
    reactor: Any,
    port_callback: PortCallback | None = None,
) -> None:
    """
    A foreground run() while the background reactor thread serves (after
    an earlier background run()): serve from that thread, and handle
    SIGINT/SIGTERM here as any foreground run() does.
    """
    done, asked, now = threading.Event(), threading.Event(), threading.Event()
    started: list[RunningServer] = []

    def first() -> None:
        asked.set()
        _shut_down_here(lifecycle)

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
        server = _start_in_background(lifecycle, registry, config, reactor)
        started.append(server)
        _tell_port(port_callback, server)
        server.stopped().addBoth(lambda _: done.set())
        if now.is_set():
            server.stop_now()
        elif asked.is_set():
            server.ask_to_stop()
        try:
            while not done.wait(0.2):
                pass
        except KeyboardInterrupt:  # not the main thread: Python's own Ctrl-C
            _shut_down_here(lifecycle)
            server.wait_stopped(server.config.shutdown_grace + STOPPING_MARGIN)
    finally:
        restore()


def adopt(server: RunningServer, lifecycle: Lifecycle) -> None:
    """
    A server started by other means (``twistd houweb``) becomes
    ``lifecycle``'s (the default server's): ``requestShutdown()``,
    ``isInDebugMode()`` and ``serverPorts()`` then act on it as under
    ``run()``, and it owns the process as a foreground ``run()`` does.

    :raises OperationFailed: if another server runs or starts.
    """
    with _process.lock:
        if lifecycle.server is not None or lifecycle.starting:
            raise OperationFailed("houweb is already running in this process")
        lifecycle.starting = True
    lifecycle.record(server)
    _process.foreground = lifecycle


def _forget(lifecycle: Lifecycle, server: RunningServer) -> None:
    with _process.lock:
        if lifecycle.server is server:
            lifecycle.server = None


def _serve_in_foreground(
    lifecycle: Lifecycle,
    registry: Registry,
    config: ServerConfig,
    reactor: Any,
    workers: int = 1,
    port_callback: PortCallback | None = None,
    exclusive: bool = False,
) -> None:
    """
    Serve ``lifecycle``'s server with the reactor in this thread until it
    stops. ``exclusive``: it reloads or has workers, and no other server may
    start meanwhile (they would not be restarted or copied).
    """
    server = RunningServer(config, reactor, registry, lifecycle.name)
    # Before listening: once "listening on" is logged, Ctrl-C and SIGTERM shut
    # down gracefully (a worker's parent may send SIGTERM right then). A
    # signal before the reactor runs is handled as soon as it does.
    restore = _install_signal_handlers(
        lambda: reactor.callFromThread(_shut_down_here, lifecycle),
        lambda: reactor.callFromThread(_stop_now, reactor),
    )
    failure: list[Any] = []
    server.start().addErrback(failure.append)
    if failure:  # binding happens at once, before the reactor runs
        restore()
        failure[0].raiseException()
    with _process.lock:
        lifecycle.record(server)
        _process.foreground, _process.exclusive = lifecycle, exclusive
    supervisor = None
    try:
        if workers > 1 or _is_worker():
            from . import _workers

            supervisor = _workers.start_workers(reactor, workers)
            _workers.watch_parent(reactor, _shut_down_here)
        _stop_reactor_when_done(reactor, server, supervisor)
        _tell_port(port_callback, server)
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
        _forget(lifecycle, server)
        _process.foreground, _process.exclusive = None, False


def _stop_reactor_when_done(
    reactor: Any, server: RunningServer, supervisor: Workers | None
) -> None:
    """
    Stop the reactor once the server, and its workers if any, have stopped;
    the other servers started meanwhile on this reactor shut down first, as
    gracefully as this one (they would be cut off by the reactor stopping).
    """
    done: defer.Deferred[Any] = server.stopped()
    if supervisor is not None:
        workers_ended = server.shutdown_requested()
        workers_ended.addCallback(lambda _: supervisor.stop(server.config.shutdown_grace))
        done = defer.gatherResults([done, workers_ended])
    done.addBoth(lambda _: _shut_down_others(server))
    done.addBoth(lambda _: reactor.stop())


def _shut_down_others(server: RunningServer) -> defer.Deferred[Any]:
    """Shut down every server of this process but ``server``; fires when all have stopped."""
    with _process.lock:
        others = {id(each.last): each.last for each in _process.lifecycles if each.last is not None}
    others.pop(id(server), None)
    return defer.gatherResults([other.shutdown() for other in others.values()])


def freeze_start_up_heap() -> None:
    """
    Move every object alive after start-up (modules, classes, the handlers)
    out of the cyclic garbage collector's reach. Full collections then scan
    only what requests allocate: measured on hello-world, p99 latency fell
    from about 30 ms to 6 ms and throughput rose 15%. Done only when houweb
    owns the process (foreground), never inside an embedding application.

    No ``gc.collect()`` first: finding the unreachable objects takes 20-40
    ms of the cold start. They stay frozen with the rest, for the process's
    life: about 2,000 objects, some 0.6 MB (classes attrs rebuilt,
    ``datetime``'s pure-Python definitions...), since ``import houweb`` runs
    no collection (:mod:`houweb._import_gc`); about 60 when it ran them.
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


def requestShutdown(lifecycle: Lifecycle | None = None) -> None:
    """
    Ask ``lifecycle``'s running server to stop: it stops accepting, lets
    requests in progress finish, then stops. Returns at once; callable from
    any thread, handlers included. Does nothing when it does not run.

    :param lifecycle: ``None``: the server that runs the process in the
        foreground (what reloading restarts).
    """
    if _is_worker() and (lifecycle is None or lifecycle is _process.foreground):
        # Only the server the workers copy stops them all; another server
        # object's (which cannot run beside workers) has nothing to stop.
        from . import _workers  # imported already: work() started this process

        if _workers.stop_all_from_worker():
            return
    _shut_down_here(lifecycle)


def _shut_down_here(lifecycle: Lifecycle | None = None) -> None:
    """Shut ``lifecycle``'s server down in this process (in a worker: only this worker's)."""
    lifecycle = lifecycle if lifecycle is not None else _process.foreground
    server = lifecycle.server if lifecycle is not None else None
    if server is not None:
        server.ask_to_stop()


def isInDebugMode(lifecycle: Lifecycle | None = None) -> bool:
    """:returns: whether ``lifecycle``'s running server was started with ``debug=True``."""
    lifecycle = lifecycle if lifecycle is not None else _process.foreground
    server = lifecycle.server if lifecycle is not None else None
    return bool(server is not None and server.config.debug)


def serverPorts(lifecycle: Lifecycle | None = None) -> list[int]:
    """
    :param lifecycle: ``None``: the server that runs the process in the foreground.
    :returns: the ports ``lifecycle``'s running server listens on, main port
        first (revealing the one picked for ``port=0``); ``[]`` when not running.
    """
    lifecycle = lifecycle if lifecycle is not None else _process.foreground
    server = lifecycle.server if lifecycle is not None else None
    return server.port_numbers() if server is not None else []


def _shutdown_at_exit() -> None:
    """
    The main thread ended: shut the background servers down, then the
    reactor. A server already stopping (requestShutdown() just before the
    script ended) is waited for too, up to its grace: its requests in
    progress were promised they may finish, and stopping the reactor would
    cut them.
    """
    background = _process.background
    with _process.lock:
        servers = {
            id(server): server
            for lifecycle in _process.lifecycles
            for server in (lifecycle.server or lifecycle.last,)
            if server is not None
        }
    if background is None or not background.is_alive():
        return
    if servers:
        try:  # or waits for those under way
            background.call(lambda: defer.gatherResults([s.shutdown() for s in servers.values()]))
        except Exception:  # noqa: BLE001 - exiting anyway
            for server in servers.values():
                server.wait_stopped(server.config.shutdown_grace + STOPPING_MARGIN)
    background.stop(timeout=2)
