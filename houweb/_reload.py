"""
``reload_source_changes``: a foreground server restarts its program when a
source file of the application is saved.

How, in order:

1. :func:`reloading` gives ``run()`` a :class:`ReloadingReactor`, which
   records every port the server listens on and, once the reactor runs,
   watches the application's files (:func:`application_files`) with
   ``watchfiles``.
2. A change is compiled first (:func:`compiles`); a syntax error is logged
   and the running server keeps serving.
3. Otherwise the listening sockets are kept open (duplicated, inheritable),
   the server shuts down gracefully, and the process replaces itself
   (``os.execv``) with ``python -c "...rerun()"``, which runs the same program
   (script or ``-m`` module) with the same ``sys.argv`` and working directory.
4. In the new process the :class:`ReloadingReactor` adopts the inherited
   sockets instead of binding: the ports stay the same (also those picked for
   port 0), and connections made during the restart wait in the kernel's
   backlog instead of being refused, so none is lost.
5. If the new program fails to start, :func:`rerun` logs why and keeps the
   sockets listening, answering every request ``503`` (with the error in
   debug mode), until the next change that compiles; then it tries again on
   the same sockets.

A background server (``in_background=True``) never reloads: the embedding
application owns its process (:func:`not_in_foreground` logs a warning).
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import site
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NoReturn

from twisted.logger import Logger, LogLevel
from twisted.web.resource import Resource

from . import _logging
from ._config import ServerConfig
from ._run import STARTED, requestShutdown, serverPorts

if TYPE_CHECKING:
    import watchfiles

log = Logger(namespace="houweb")

#: Seconds between "stop accepting" and the graceful shutdown of a restart,
#: for connections already accepted to deliver their request.
SETTLE_SECONDS = 0.2
#: How often (ms) the watcher looks for modules imported since it started.
RESCAN_MS = 1000

_HOUWEB_DIR = Path(__file__).resolve().parent


# -- Which files are the application's ------------------------------------


@lru_cache(maxsize=1)
def _library_roots() -> tuple[Path, ...]:
    """:returns: the directories of the standard library and installed packages."""
    names = ("stdlib", "platstdlib", "purelib", "platlib", "scripts")
    roots = {sysconfig.get_paths().get(name) for name in names}
    roots.update(getattr(site, "getsitepackages", list)())
    roots.add(site.getusersitepackages())
    return (*(Path(root).resolve() for root in roots if root), _HOUWEB_DIR)


def is_application_file(path: str) -> bool:
    """
    :returns: whether ``path`` is an existing ``.py`` file of the application:
        not of the standard library, an installed package, or houweb.
    """
    if not path.endswith(".py") or not os.path.isfile(path):
        return False
    resolved = Path(path).resolve()
    if any(part in ("site-packages", "dist-packages") for part in resolved.parts):
        return False
    return not any(resolved.is_relative_to(root) for root in _library_roots())


def application_files(extra: Iterable[str] = ()) -> set[str]:
    """
    :param extra: more files to include (the settings file), if they exist.
    :returns: the real paths of the application's loaded source files.
    """
    candidates = [getattr(module, "__file__", None) for module in list(sys.modules.values())]
    files = {os.path.realpath(f) for f in candidates if f and is_application_file(f)}
    return files | {os.path.realpath(f) for f in extra if os.path.isfile(f)}


def compiles(paths: Iterable[str]) -> bool:
    """
    Compile each Python file in ``paths``; log the first syntax error with its
    traceback.

    :returns: whether they all compile.
    """
    for path in paths:
        try:
            with open(path, "rb") as file:
                compile(file.read(), path, "exec")
        except (SyntaxError, ValueError):
            log.failure("houweb: {file} has an error; still running the previous code", file=path)
            return False
        except OSError:
            continue  # gone again: the next event tells
    return True


# -- Watching ---------------------------------------------------------------


class SourceWatcher:
    """
    Reports changes to a set of files that may grow (modules imported later
    are picked up within :data:`RESCAN_MS`), with ``watchfiles``. Directories
    are watched, not files, so editors that save by renaming are seen too.
    """

    def __init__(
        self,
        files: Callable[[], set[str]],
        any_python_file: bool = False,
        since: float | None = None,
    ) -> None:
        """
        :param files: returns the files to watch; called again now and then.
        :param any_python_file: report every ``.py`` file in their
            directories, not only these files (used while the application
            cannot start, when the fix may be a new file).
        :param since: also report, once watching, the files modified after
            this time (a ``time.time()``): saved while the program started,
            before there was anything to notice it.
        """
        self._files = files
        self._any_python_file = any_python_file
        self._since = since
        #: Every file watched so far: one deleted stays watched, so that
        #: saving it again (editors that delete, then write) is seen.
        self._watched: set[str] = set()

    def _wanted(self, change: watchfiles.Change, path: str) -> bool:
        if self._any_python_file:
            return path.endswith(".py")
        return os.path.realpath(path) in self._watched

    def _modified_before_watching(self) -> set[str]:
        """:returns: once, the watched files modified since ``since`` (not in the future)."""
        since, self._since = self._since, None
        if since is None:
            return set()
        now = time.time()
        return {f for f in self._watched if since < _modified(f) <= now}

    def changes(self, stop: threading.Event | None = None) -> Iterator[list[str]]:
        """
        :param stop: ends the iteration when set.
        :returns: lists of changed files that exist, as they happen.
        """
        import watchfiles  # here: it costs start-up time a server that does not reload need not pay

        stop = stop if stop is not None else threading.Event()
        while not stop.is_set():
            self._watched |= self._files()
            directories = sorted(
                {d for d in map(os.path.dirname, self._watched) if os.path.isdir(d)}
            )
            if not directories:
                stop.wait(RESCAN_MS / 1000)
                continue
            for batch in watchfiles.watch(
                *directories,
                watch_filter=self._wanted,
                stop_event=stop,
                rust_timeout=RESCAN_MS,
                yield_on_timeout=True,
                recursive=False,
            ):
                changed = sorted(
                    {os.path.realpath(p) for _, p in batch if os.path.isfile(p)}
                    | self._modified_before_watching()
                )
                if changed:
                    yield changed
                elif not self._files() <= self._watched:
                    break  # more modules loaded: watch their directories too


def _modified(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


# -- How to run the program again ----------------------------------------------


@dataclass(frozen=True)
class Program:
    """How this program was started: a script or a ``-m`` module, its argv and directory."""

    argv: list[str]
    cwd: str
    module: str | None = None
    path: str | None = None

    @classmethod
    def current(cls) -> Program | None:
        """
        :returns: how to run this program again; ``None`` when it cannot be
            (``python -c``, the interactive interpreter).
        """
        if _rerun_program is not None:
            return _rerun_program
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        argv, cwd = list(sys.argv), os.getcwd()
        if spec is not None and spec.name not in ("__main__", None):
            return cls(argv, cwd, module=spec.name)
        path = getattr(main, "__file__", None)
        if path and os.path.isfile(path):
            return cls(argv, cwd, path=os.path.abspath(path))
        return None

    def run(self) -> None:
        """Run the program here, as ``python path`` or ``python -m module`` would."""
        os.chdir(self.cwd)
        sys.argv[:] = self.argv
        if self.module is not None:
            _set_first_path(self.cwd)
            runpy.run_module(self.module, run_name="__main__", alter_sys=True)
        else:
            assert self.path is not None
            _set_first_path(os.path.dirname(self.path))
            runpy.run_path(self.path, run_name="__main__")


def _set_first_path(directory: str) -> None:
    """Put the program's directory first on ``sys.path``, where ``python`` puts it."""
    if not (getattr(sys.flags, "safe_path", False) or sys.flags.isolated):
        sys.path[0] = directory  # replaces the "" that -c put there


@dataclass
class Listener:
    """One port the server listens on, and how it was asked for."""

    requested: int
    interface: str
    tls: bool = False
    port: int = 0
    family: int = socket.AF_INET
    #: An open, inheritable duplicate of the listening socket, or ``None``.
    fd: int | None = None

    def same_request(self, other: Listener) -> bool:
        """:returns: whether both were asked for with the same port, interface and TLS."""
        return (self.requested, self.interface, self.tls) == (
            other.requested,
            other.interface,
            other.tls,
        )

    def close(self) -> None:
        """Close the kept socket (its port number is remembered)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@dataclass
class RestartState:
    """What one process hands the next across ``os.execv``."""

    program: Program
    listeners: list[Listener] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    log_format: str = "text"
    #: The server's debug mode: a program that fails to start says why in its 503s.
    debug: bool = False
    #: The server's ALLOWED_HOSTS, which those 503s keep checking (its token
    #: goes in the environment, never on the command line: see :func:`restart`).
    allowed_hosts: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RestartState:
        data = json.loads(text)
        return cls(
            program=Program(**data["program"]),
            listeners=[Listener(**entry) for entry in data["listeners"]],
            files=data["files"],
            log_format=data["log_format"],
            debug=data.get("debug", False),
            allowed_hosts=data.get("allowed_hosts", []),
        )


def houweb_command(statement: str, *args: str) -> list[str]:
    """
    :returns: the command line of a new Python process, with this one's
        interpreter flags, that imports this houweb and runs ``statement``
        (its entry point removes the ``sys.path`` entry again), ``args``
        becoming ``sys.argv[1:]``.
    """
    houweb_parent = str(_HOUWEB_DIR.parent)
    code = f"import sys; sys.path.insert(0, {houweb_parent!r}); {statement}"
    flags = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    return [sys.executable, *flags, "-c", code, *args]


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
    command = houweb_command("from houweb._reload import rerun; rerun()", state.to_json())
    os.execv(sys.executable, command)


# -- The reactor the server listens through ------------------------------------


#: Whether listening sockets can pass to the new process; elsewhere (Windows)
#: the new process binds the same port numbers again.
_KEEPS_SOCKETS = os.name == "posix"


def _keep(listening: Any) -> int:
    """:returns: an inheritable duplicate of a listening port's socket, which stays open."""
    fd = os.dup(listening.fileno())
    os.set_inheritable(fd, True)
    # Twisted shuts a socket it bound down when it stops listening, which
    # would end the listening of the duplicate too.
    listening._shouldShutdown = False
    return fd


def _family(interface: str) -> int:
    return socket.AF_INET6 if ":" in interface else socket.AF_INET


class ReloadingReactor:
    """
    The reactor, as the server of a reloading program sees it: listening
    adopts the sockets a previous run of the program kept open, and running
    watches the sources and restarts the program when they change. All else
    is the real reactor's.
    """

    def __init__(
        self, reactor: Any, inherited: list[Listener], watch: bool, config: ServerConfig
    ) -> None:
        self._reactor = reactor
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
        asked.port, asked.family = address.port, _family(address.host)
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
        return [replace(record, fd=_keep(listening)) for listening, record in self._listening]

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
        program = Program.current()
        if not serverPorts() or program is None:
            return  # already stopping
        log.info("houweb: {file} changed, restarting", file=", ".join(changed))
        for listening, record in self._listening:
            if listening.connected:
                listening.stopReading()
                if _KEEPS_SOCKETS:
                    record.fd = _keep(listening)
        self._restarting = RestartState(
            program=program,
            listeners=[record for _, record in self._listening],
            files=sorted(self._watched_files()),
            log_format=_logging.current_format(),
            debug=self._config.debug,
            allowed_hosts=_allowed_hosts(),
        )
        self._reactor.callLater(SETTLE_SECONDS, requestShutdown)


def _allowed_hosts() -> list[str]:
    """:returns: the running server's ALLOWED_HOSTS (the loopback names if none runs)."""
    from . import _run
    from ._guards import LOOPBACK_HOSTS

    server = _run._process.server
    if server is None or server.context.guard is None:
        return list(LOOPBACK_HOSTS)
    return list(server.context.guard.hosts.patterns)


# -- The hooks run() calls -----------------------------------------------------

#: Set in a process started by :func:`restart`.
_rerun_program: Program | None = None
_inherited: list[Listener] = []


def reloading(
    reactor: Any, reload_source_changes: bool | None, config: ServerConfig, keep: bool = False
) -> Any:
    """
    The reactor a foreground ``run()`` should serve through.

    :param reload_source_changes: ``run()``'s argument; ``None`` means
        ``config.debug``.
    :param keep: the listening sockets will be handed to other processes
        (workers): listen through a :class:`ReloadingReactor` in any case.
    :returns: ``reactor`` itself, or a :class:`ReloadingReactor` when
        reloading, keeping sockets, or when a previous run of the program
        kept sockets open.
    """
    wanted = config.debug if reload_source_changes is None else bool(reload_source_changes)
    if wanted and Program.current() is None:
        log.warn("houweb: cannot reload a program given with -c or typed in; not reloading")
        wanted = False
    if not (wanted or keep or _inherited):
        return reactor
    inherited, _inherited[:] = list(_inherited), []
    return ReloadingReactor(reactor, inherited, wanted, config)


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
    for kept in _inherited:
        kept.close()


def rerun() -> None:
    """
    The start of a process :func:`restart` made: run the program again with
    the sockets kept open; if it fails to start, wait for a fix and try again.
    """
    global _rerun_program
    del sys.path[0]  # the entry restart()'s command added
    state = RestartState.from_json(sys.argv[1])
    token = os.environ.pop(TOKEN_VARIABLE, None)  # not for the program's own children
    _rerun_program = state.program
    _inherited[:] = state.listeners
    try:
        state.program.run()
    except Exception:  # noqa: BLE001 - whatever stops the application from starting
        _logging.begin_logging(state.log_format)
        log.failure(
            "houweb: the application failed to start; waiting for a change to retry",
            level=LogLevel.error,
        )
        _wait_for_a_fix(state, traceback_files(sys.exc_info()[2]), traceback.format_exc(), token)


def traceback_files(tb: Any) -> set[str]:
    """:returns: the application files a traceback passes through."""
    return {
        os.path.realpath(frame.filename)
        for frame in traceback.extract_tb(tb)
        if is_application_file(frame.filename)
    }


def _wait_for_a_fix(
    state: RestartState, more_files: set[str], error: str, token: str | None = None
) -> NoReturn:
    """
    Until a change compiles: keep the sockets and answer 503 on them (see
    :class:`Unavailable`), behind the server's Host and token checks; then
    restart with the same sockets.
    """
    stop_answering = _answer_unavailable(state, error, token)
    files = set(state.files) | more_files | application_files()
    watcher = SourceWatcher(lambda: files, any_python_file=True, since=STARTED)
    for changed in watcher.changes():
        if compiles(changed):
            log.info("houweb: {file} changed, restarting", file=", ".join(changed))
            stop_answering()
            restart(replace(state, files=sorted(files)), token)
    raise AssertionError("unreachable: the watch ends only by an exception")


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
    from twisted.internet import threads
    from twisted.web.server import Site

    from ._reactor import BackgroundReactor, get_reactor

    try:
        reactor = get_reactor()
        if reactor.running:
            raise RuntimeError("the reactor runs already")
        site = Site(Unavailable(error if state.debug else None, state.allowed_hosts, token))
        ports = [
            reactor.adoptStreamPort(kept.fd, kept.family, site)
            for kept in state.listeners
            if kept.fd is not None and not kept.tls
        ]
        BackgroundReactor(reactor).start()
    except Exception:  # noqa: BLE001 - the previous behaviour: refuse until fixed
        log.failure("houweb: cannot answer while the application fails to start")
        for kept in state.listeners:
            kept.close()
        return lambda: None

    def stop_accepting() -> None:
        threads.blockingCallFromThread(reactor, lambda: [port.stopReading() for port in ports])

    return stop_accepting


class Unavailable(Resource):
    """Every request while the application cannot start: 503, and why in debug mode."""

    isLeaf = True

    def __init__(
        self, error: str | None, allowed_hosts: Iterable[str] = ("*",), token: str | None = None
    ) -> None:
        from ._auth import TokenCheck
        from ._guards import HeaderGuard, OriginPolicy

        super().__init__()
        self._error = error
        # The server's Host allow-list and token still apply: the error (a
        # traceback) is not for a DNS-rebinding page nor for a client
        # without the token.
        self._guard = HeaderGuard(
            allowed_hosts, OriginPolicy(), token=TokenCheck(token) if token is not None else None
        )

    def render(self, request: Any) -> bytes:
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
