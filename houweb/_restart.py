"""
The restart of ``reload_source_changes``: a foreground server restarts its
program when a source file of the application is saved.

How, in order:

1. :func:`reloading` gives ``run()`` a :class:`ReloadingReactor`, which
   records every port the server listens on and, once the reactor runs,
   watches the application's files (``_watch``).
2. A change is compiled first; a syntax error is logged and the running
   server keeps serving.
3. Otherwise the listening sockets are kept open (``_handover``), the server
   shuts down gracefully, and the process replaces itself (:func:`restart`,
   ``os.execv``) with ``python -c "...rerun()"``, which runs the same program
   (script or ``-m`` module) with the same ``sys.argv`` and working directory.
4. In the new process (:data:`houweb._role.Role.RELOADED`) the
   :class:`ReloadingReactor` adopts the inherited sockets instead of binding:
   the ports stay the same (also those picked for port 0), and connections
   made during the restart wait in the kernel's backlog instead of being
   refused, so none is lost.
5. If the new program fails to start, :func:`rerun` logs why and keeps the
   sockets listening, answering every request ``503`` (:class:`Unavailable`,
   with the error in debug mode), until the next change that compiles; then
   it tries again on the same sockets.

Workers (``_workers``) listen through a :class:`ReloadingReactor` too, that
does not watch: it keeps the sockets for them, and adopts them in a worker.

A background server (``in_background=True``) never reloads: the embedding
application owns its process (:func:`not_in_foreground` logs a warning).

This module does not import ``_run``: ``run()`` hands it the running server
and ``requestShutdown`` (see :func:`reloading`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, NoReturn

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger, LogLevel
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from . import _logging
from ._config import ServerConfig
from ._handover import (
    KEEPS_SOCKETS,
    Listener,
    RestartState,
    family_of,
    houweb_command,
    keep_open,
)
from ._role import STARTED, Role, this_process
from ._watch import SourceWatcher, application_files, compiles, traceback_files

if TYPE_CHECKING:
    from ._server import RunningServer as Server

log = Logger(namespace="houweb")

#: Seconds between "stop accepting" and the graceful shutdown of a restart,
#: for connections already accepted to deliver their request.
SETTLE_SECONDS = 0.2


def _no_server() -> Server | None:
    return None


def _nothing() -> None:
    pass


#: The environment variable that hands the server's token to the next
#: process (for its 503s while the program fails to start); rerun() removes it.
TOKEN_VARIABLE = "HOUWEB_RELOAD_TOKEN"


def restart(state: RestartState, token: str | None = None) -> NoReturn:
    """
    Replace this process by a new run of ``state.program``, keeping the kept
    sockets; ``token``, the server's, passes in the environment (readable by
    this user only, unlike the command line).
    """
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    if token is not None:
        os.environ[TOKEN_VARIABLE] = token
    else:
        os.environ.pop(TOKEN_VARIABLE, None)
    command = houweb_command("from houweb._restart import rerun; rerun()", state.to_json())
    os.execv(sys.executable, command)


# -- The reactor the server listens through ------------------------------------


class ReloadingReactor:
    """
    The reactor, as the server of a reloading program sees it: listening
    adopts the sockets a previous run of the program kept open, and running
    watches the sources and restarts the program when they change. All else
    is the real reactor's.
    """

    def __init__(
        self,
        reactor: Any,
        inherited: list[Listener],
        watch: bool,
        config: ServerConfig,
        running: Callable[[], Server | None] = _no_server,
        request_shutdown: Callable[[], None] = _nothing,
    ) -> None:
        """
        :param inherited: the sockets a previous process kept for this one.
        :param watch: restart when the application's sources change.
        :param running: returns the process's running server (``None`` once
            it was asked to stop).
        :param request_shutdown: asks it to stop gracefully.
        """
        self._reactor = reactor
        self._running = running
        self._request_shutdown = request_shutdown
        self._inherited = inherited
        self._watch = watch
        self._config = config
        self._listening: list[tuple[Any, Listener]] = []
        #: Kept sockets adopted: their copies stay open until the reactor
        #: runs, for the 503s if the program fails before (see rerun()).
        self._adopted: list[Listener] = []
        self._restarting: RestartState | None = None
        self._interrupted = False
        self._stop_watching = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    # Listening

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        return self._listen(
            Listener(port, interface),
            factory,
            lambda number: self._reactor.listenTCP(number, factory, backlog, interface),
        )

    def listenSSL(
        self, port: int, factory: Any, contextFactory: Any, backlog: int = 50, interface: str = ""
    ) -> Any:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        listening = self._listen(
            Listener(port, interface, tls=True),
            TLSMemoryBIOFactory(contextFactory, False, factory),
            lambda number: self._reactor.listenSSL(
                number, factory, contextFactory, backlog, interface
            ),
        )
        listening._type = "TLS"
        return listening

    def _listen(self, asked: Listener, adopter: Any, bind: Callable[[int], Any]) -> Any:
        """
        Adopt the socket kept from a previous run that was asked for the same
        way, or bind (on the port number it had, if it was not kept open).

        :param adopter: the factory an adopted socket serves (TLS-wrapped for ``ssl:``).
        :param bind: listens on the port number it is given, the usual way.
        """
        kept = self._take(asked)
        if kept is not None and kept.fd is not None:
            listening = self._reactor.adoptStreamPort(kept.fd, kept.family, adopter)
            self._adopted.append(kept)  # adopting duplicated it: closed once running
        else:
            listening = bind(kept.port if kept is not None else asked.requested)
        address = listening.getHost()
        asked.port, asked.family = address.port, family_of(address.host)
        self._listening.append((listening, asked))
        return listening

    def _take(self, asked: Listener) -> Listener | None:
        for kept in self._inherited:
            if kept.same_request(asked):
                self._inherited.remove(kept)
                return kept
        for kept in self._inherited:  # now bound differently: free its port
            if kept.port == asked.requested:
                kept.close()
        return None

    def kept_listeners(self) -> list[Listener]:
        """
        :returns: every port listened on so far, each with an open,
            inheritable duplicate of its socket for another process to adopt.
        """
        return [replace(record, fd=keep_open(listening)) for listening, record in self._listening]

    # Running

    def run(self, installSignalHandlers: bool = True) -> None:
        """Run the reactor; afterwards restart the program if a change asked for it."""
        for kept in self._inherited:
            kept.close()  # the new code no longer listens there
        for kept in self._adopted:
            kept.close()  # the program started: its server owns the sockets now
        if self._watch:
            self._start_watching()
        self._notice_interrupts()
        try:
            self._reactor.run(installSignalHandlers=installSignalHandlers)
        finally:
            self._stop_watching.set()
        if self._restarting is not None and not self._interrupted:
            restart(self._restarting, self._config.token)

    def _notice_interrupts(self) -> None:
        """Ctrl-C or SIGTERM during a restart's shutdown cancels the restart."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(signum)
            if callable(handler):
                signal.signal(signum, self._interrupt_then(handler))

    def _interrupt_then(self, handler: Callable[[int, Any], Any]) -> Callable[[int, Any], Any]:
        def interrupted(signum: int, frame: Any) -> Any:
            self._interrupted = True
            return handler(signum, frame)

        return interrupted

    def _watched_files(self) -> set[str]:
        settings = self._config.settings
        return application_files([settings] if isinstance(settings, str) else [])

    def _start_watching(self) -> None:
        watcher = SourceWatcher(self._watched_files, since=STARTED)

        def watch() -> None:
            for changed in watcher.changes(self._stop_watching):
                if compiles(changed):
                    self._reactor.callFromThread(self._restart, changed)
                    return

        threading.Thread(target=watch, name="houweb-reload", daemon=True).start()

    def _restart(self, changed: list[str]) -> None:
        """On the reactor thread: keep the sockets, stop accepting, shut down gracefully."""
        program = this_process.program_to_run_again()
        server = self._running()
        if server is None or not server.port_numbers() or program is None:
            return  # already stopping
        log.info("houweb: {file} changed, restarting", file=", ".join(changed))
        for listening, record in self._listening:
            if listening.connected:
                listening.stopReading()
                if KEEPS_SOCKETS:
                    record.fd = keep_open(listening)
        self._restarting = RestartState(
            program=program,
            listeners=[record for _, record in self._listening],
            files=sorted(self._watched_files()),
            log_format=_logging.current_format(),
            debug=self._config.debug,
            allowed_hosts=_allowed_hosts(server),
        )
        self._reactor.callLater(SETTLE_SECONDS, self._request_shutdown)


def _allowed_hosts(server: Server | None) -> list[str]:
    """:returns: the server's ALLOWED_HOSTS (the loopback names if none runs)."""
    from ._guards import LOOPBACK_HOSTS

    if server is None or server.context.guard is None:
        return list(LOOPBACK_HOSTS)
    return list(server.context.guard.hosts.patterns)


# -- The hooks run() calls -----------------------------------------------------


def reloading(
    reactor: Any,
    reload_source_changes: bool | None,
    config: ServerConfig,
    keep: bool = False,
    *,
    running: Callable[[], Server | None] = _no_server,
    request_shutdown: Callable[[], None] = _nothing,
) -> Any:
    """
    The reactor a foreground ``run()`` should serve through.

    :param reload_source_changes: ``run()``'s argument; ``None`` means
        ``config.debug``.
    :param keep: the listening sockets will be handed to other processes
        (workers): listen through a :class:`ReloadingReactor` in any case.
    :param running: returns the running server, which a restart stops.
    :param request_shutdown: asks it to stop gracefully (``requestShutdown``).
    :returns: ``reactor`` itself, or a :class:`ReloadingReactor` when
        reloading, keeping sockets, or when a previous run of the program
        kept sockets open.
    """
    wanted = config.debug if reload_source_changes is None else bool(reload_source_changes)
    if wanted and this_process.program_to_run_again() is None:
        log.warn("houweb: cannot reload a program given with -c or typed in; not reloading")
        wanted = False
    if not (wanted or keep or this_process.inherited):
        return reactor
    inherited = this_process.take_inherited()
    return ReloadingReactor(reactor, inherited, wanted, config, running, request_shutdown)


def not_in_foreground(reload_source_changes: bool | None) -> None:
    """
    For a background ``run()``: say that it will not reload, and close the
    sockets a previous run of the program kept for a foreground server.
    """
    if reload_source_changes:
        log.warn(
            "houweb: reload_source_changes needs a foreground server (in_background=False); "
            "not reloading"
        )
    for kept in this_process.inherited:
        kept.close()


def rerun() -> None:
    """
    The start of a process :func:`restart` made: run the program again with
    the sockets kept open; if it fails to start, wait for a fix and try again.
    """
    del sys.path[0]  # the entry restart()'s command added
    state = RestartState.from_json(sys.argv[1])
    token = os.environ.pop(TOKEN_VARIABLE, None)  # not for the program's own children
    this_process.begin(Role.RELOADED, state.program, state.listeners)
    try:
        state.program.run()
    except Exception:  # noqa: BLE001 - whatever stops the application from starting
        _logging.begin_logging(state.log_format)
        log.failure(
            "houweb: the application failed to start; waiting for a change to retry",
            level=LogLevel.error,
        )
        _wait_for_a_fix(state, traceback_files(sys.exc_info()[2]), traceback.format_exc(), token)


def _wait_for_a_fix(
    state: RestartState, more_files: set[str], error: str, token: str | None = None
) -> NoReturn:
    """
    Until a change compiles: keep the sockets and answer 503 on them (see
    :class:`Unavailable`), behind the server's Host and token checks; then
    restart with the same sockets.
    """
    # The signals first: a client may see the 503 page (and the user press
    # Ctrl-C) before starting the reactor thread has returned here.
    stop_answering: Callable[[], None] = _nothing
    _interrupt_on_signals()
    try:
        stop_answering = _answer_unavailable(state, error, token)
        files = set(state.files) | more_files | application_files()
        watcher = SourceWatcher(lambda: files, any_python_file=True, since=STARTED)
        for changed in watcher.changes():
            if compiles(changed):
                log.info("houweb: {file} changed, restarting", file=", ".join(changed))
                stop_answering()
                restart(replace(state, files=sorted(files)), token)
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM: stop as a running server does, exit status 0.
        stop_answering()
        log.info("houweb: stopped")
        raise SystemExit(0) from None
    raise AssertionError("unreachable: the watch ends only by an exception")


def _interrupt_on_signals() -> None:
    """While waiting for a fix: Ctrl-C and SIGTERM interrupt the wait (``KeyboardInterrupt``)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt)


def _answer_unavailable(
    state: RestartState, error: str, token: str | None = None
) -> Callable[[], None]:
    """
    Answer ``503`` on the kept sockets (plain TCP; a TLS one just keeps its
    connections waiting) from a reactor thread, so clients are not refused
    while the application cannot start. Where the reactor cannot run (the
    program ran it already), or sockets cannot be kept, close them instead.

    :returns: a function that stops accepting again, the sockets staying open.
    """
    from twisted.web.server import Site

    from ._reactor import BackgroundReactor, get_reactor

    try:
        reactor = get_reactor()
        if reactor.running:
            raise RuntimeError("the reactor runs already")
        unavailable = Unavailable(error if state.debug else None, state.allowed_hosts, token)
        site = Site(unavailable)
        connections = _Connections(site)
        ports = [
            reactor.adoptStreamPort(kept.fd, kept.family, connections)
            for kept in state.listeners
            if kept.fd is not None and not kept.tls
        ]
        BackgroundReactor(reactor).start()
    except Exception:  # noqa: BLE001 - the previous behaviour: refuse until fixed
        log.failure("houweb: cannot answer while the application fails to start")
        for kept in state.listeners:
            kept.close()
        return lambda: None

    def stop(stopped: threading.Event) -> None:
        """On the reactor thread: stop accepting; once the connections are closed, set ``stopped``."""
        for port in ports:
            port.stopReading()
        if connections.protocols:
            log.info(
                "houweb: answering {count} connection(s) accepted before restarting",
                count=len(connections.protocols),
            )

        def done(result: object) -> object:
            stopped.set()
            return result

        ended = connections.ended()
        ended.addTimeout(DRAIN_SECONDS, reactor)
        ended.addErrback(_given_up).addBoth(done)

    def stop_accepting() -> None:
        # The connections accepted are answered first: exec would close them
        # unanswered. Connections not accepted yet wait in the backlog.
        stopped = threading.Event()
        reactor.callFromThread(stop, stopped)
        stopped.wait(DRAIN_SECONDS + 1)

    return stop_accepting


#: Seconds a process answering 503 waits, once a fix is saved, for the
#: connections it accepted to get their answer before it starts the fixed
#: program (a client that connected and sends nothing is not waited for longer).
DRAIN_SECONDS = 3.0


def _given_up(failure: Failure) -> object:
    """:data:`DRAIN_SECONDS` passed: the connections still open close with this process."""
    if not isinstance(failure.value, defer.TimeoutError):
        failure.raiseException()
    return None


class _Connections(WrappingFactory):
    """The open connections of the 503 site, to wait until they are all closed."""

    def __init__(self, wrapped: Any) -> None:
        super().__init__(wrapped)  # type: ignore[no-untyped-call]  # not annotated
        self._waiting: list[Deferred[None]] = []

    def unregisterProtocol(self, p: Any) -> None:
        super().unregisterProtocol(p)  # type: ignore[no-untyped-call]
        if not self.protocols:
            waiting, self._waiting = self._waiting, []
            for ended in waiting:
                if not ended.called:  # not given up on (DRAIN_SECONDS)
                    ended.callback(None)

    def ended(self) -> Deferred[None]:
        """:returns: a Deferred that fires once no connection is open."""
        if not self.protocols:
            return defer.succeed(None)
        ended: Deferred[None] = Deferred()
        self._waiting.append(ended)
        return ended


class Unavailable(Resource):
    """Every request while the application cannot start: 503, and why in debug mode."""

    isLeaf = True

    def __init__(
        self, error: str | None, allowed_hosts: Iterable[str] = ("*",), token: str | None = None
    ) -> None:
        from ._auth import TokenCheck
        from ._guards import HeaderGuard, OriginPolicy

        super().__init__()  # type: ignore[no-untyped-call]  # nor is Resource
        self._error = error
        # The server's Host allow-list and token still apply: the error (a
        # traceback) is not for a DNS-rebinding page nor for a client
        # without the token.
        self._guard = HeaderGuard(
            allowed_hosts, OriginPolicy(), token=TokenCheck(token) if token is not None else None
        )

    def render(self, request: Any) -> bytes:
        # One answer per connection: a connection is not kept for the next
        # request, so a restart has no idle connection to close under a client.
        request.channel.persistent = False
        request.setHeader(b"connection", b"close")
        refusal = self._guard.refusal(
            request.method, request.requestHeaders, request.getHost().port, request.isSecure()
        )
        if refusal is not None:
            request.setResponseCode(refusal.status)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            for name, value in refusal.headers:
                request.setHeader(name.encode("latin-1"), value.encode("latin-1"))
            return (refusal.message + "\n").encode("utf-8")
        request.setResponseCode(503)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"retry-after", b"1")
        message = "The application failed to start; the server waits for a fix to be saved.\n"
        if self._error is not None:
            message += "\n" + self._error
        return message.encode("utf-8")
