"""
``workers``: one foreground server's ports served by several processes, so
plain Python handlers can use more than one core.

The process that called ``run(workers=N)`` binds the ports as usual and
serves them too; it then starts N - 1 worker processes, each running the same
program again (script or ``-m`` module, same ``sys.argv``: so the same
handlers get registered) with the listening sockets inherited. The kernel
hands each new connection to one of the processes accepting on the socket.
This reuses the socket hand-over of reloading (``_handover``): a worker
(:data:`houweb._role.Role.WORKER`) adopts the inherited sockets in ``run()``
instead of binding.

The first process supervises: a worker that dies is started again after a
second; at shutdown each worker gets SIGTERM (and so its own graceful
shutdown), and ``run()`` returns once all have ended. A worker that finds its
parent gone shuts itself down. Each worker has its own memory: module-level
state is not shared between them.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

from twisted.internet import defer, protocol, task
from twisted.internet.process import reapAllProcesses
from twisted.logger import Logger

from . import _logging
from ._errors import OperationFailed
from ._handover import Listener, RestartState, houweb_command
from ._role import Role, WorkerOf, this_process

log = Logger(namespace="houweb")

#: Seconds before a worker that died is started again.
RESPAWN_DELAY = 1.0
#: How often (seconds) a worker checks that the process that started it lives.
PARENT_CHECK_INTERVAL = 1.0


def is_worker() -> bool:
    """:returns: whether this process is a worker started by another houweb process."""
    return this_process.role is Role.WORKER


def check_workers(workers: object, background: bool) -> int:
    """
    :returns: ``run()``'s ``workers`` argument, checked.
    :raises TypeError, ValueError: for a value that is not a positive int.
    :raises OperationFailed: for several workers where they cannot be had.
    """
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise TypeError(f"workers must be an int, not {type(workers).__name__}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    if workers == 1 or is_worker():
        return workers
    if background:
        raise OperationFailed("workers > 1 needs a foreground server (in_background=False)")
    if os.name != "posix":
        raise OperationFailed("workers > 1 needs a POSIX system (listening sockets are inherited)")
    if this_process.program_to_run_again() is None:
        raise OperationFailed(
            "workers > 1 needs a program houweb can start again: a script or a -m module, "
            "not python -c or the interactive interpreter"
        )
    return workers


class Workers:
    """The worker processes of one foreground server, supervised from its reactor."""

    def __init__(self, reactor: Any, count: int, listeners: list[Listener]) -> None:
        program = this_process.program_to_run_again()
        assert program is not None  # check_workers() made sure
        self._reactor = reactor
        self._listeners = listeners
        self._state = RestartState(
            program=program, listeners=listeners, log_format=_logging.current_format()
        )
        self._count = count
        self._running: dict[int, _WorkerProcess] = {}
        self._stopping = False
        self._all_ended = False
        self._when_ended: list[defer.Deferred[None]] = []
        self._kill_later: Any = None

    def start(self) -> None:
        """Start workers 1 to N - 1."""
        self._notice_ended_children()
        for number in range(1, self._count):
            self._spawn(number)

    def _notice_ended_children(self) -> None:
        """
        Reap ended workers on SIGCHLD. Twisted does this only when it installs
        its own signal handlers, which a houweb foreground server does not.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGCHLD)

        def ended(signum: int, frame: Any) -> None:
            self._reactor.callFromThread(reapAllProcesses)
            if callable(previous):
                previous(signum, frame)

        signal.signal(signal.SIGCHLD, ended)

    def _spawn(self, number: int) -> None:
        if self._stopping:
            return
        worker = _WorkerProcess(self, number)
        fds: dict[int, Any] = {0: 0, 1: 1, 2: 2}
        fds.update({kept.fd: kept.fd for kept in self._listeners if kept.fd is not None})
        argv = houweb_command(
            "from houweb._workers import work; work()",
            self._state.to_json(),
            str(number),
            str(os.getpid()),
        )
        self._reactor.spawnProcess(worker, sys.executable, argv, env=dict(os.environ), childFDs=fds)
        self._running[number] = worker
        log.info("houweb: started worker {number} (pid {pid})", number=number, pid=worker.pid)

    def ended(self, worker: _WorkerProcess, status: str) -> None:
        """A worker process ended: start it again, unless the server is stopping."""
        if self._running.get(worker.number) is worker:
            del self._running[worker.number]
        if self._stopping:
            self._finish_if_all_ended()
            return
        log.error(
            "houweb: worker {number} (pid {pid}) ended ({status}); starting it again",
            number=worker.number,
            pid=worker.pid,
            status=status,
        )
        self._reactor.callLater(RESPAWN_DELAY, self._spawn, worker.number)

    def stop(self, grace: float) -> defer.Deferred[None]:
        """
        Ask every worker to shut down gracefully (SIGTERM); kill those still
        running ``grace`` + 2 seconds later.

        :returns: a Deferred that fires once all have ended.
        """
        if not self._stopping:
            self._stopping = True
            for worker in list(self._running.values()):
                worker.signal("TERM")
            if self._running:
                self._kill_later = self._reactor.callLater(grace + 2, self.kill)
            self._finish_if_all_ended()
        ended: defer.Deferred[None] = defer.Deferred()
        if self._all_ended:
            ended.callback(None)
        else:
            self._when_ended.append(ended)
        return ended

    def _finish_if_all_ended(self) -> None:
        """Once stopping and no worker runs: close the sockets, wake who waits."""
        if self._running or self._all_ended:
            return
        self._all_ended = True
        if self._kill_later is not None and self._kill_later.active():
            self._kill_later.cancel()
        self._close_sockets()
        waiting, self._when_ended = self._when_ended, []
        for ended in waiting:
            ended.callback(None)

    def kill(self) -> None:
        """Stop every worker still running at once (SIGKILL)."""
        for worker in list(self._running.values()):
            log.warn("houweb: worker {number} did not stop in time; killed", number=worker.number)
            worker.signal("KILL")

    def kill_now(self) -> None:
        """For a process about to exit: end the workers without the reactor."""
        self._stopping = True
        for worker in list(self._running.values()):
            if worker.pid is not None:
                try:
                    os.kill(worker.pid, signal.SIGKILL)
                except OSError:
                    pass
        self._close_sockets()

    def _close_sockets(self) -> None:
        for kept in self._listeners:
            kept.close()


class _WorkerProcess(protocol.ProcessProtocol):
    """One worker process, as the supervisor sees it."""

    def __init__(self, workers: Workers, number: int) -> None:
        self._workers = workers
        self.number = number
        self.pid: int | None = None

    def connectionMade(self) -> None:
        self.pid = getattr(self.transport, "pid", None)

    def signal(self, name: str) -> None:
        transport: Any = self.transport
        try:
            transport.signalProcess(name)
        except Exception:  # noqa: BLE001 - it ended meanwhile
            pass

    def processEnded(self, reason: Any) -> None:
        self._workers.ended(self, reason.getErrorMessage())


def start_workers(reactor: Any, count: int) -> Workers | None:
    """
    Start the workers of a foreground server whose ports are listening.

    :param reactor: the :class:`~houweb._restart.ReloadingReactor` it listens through.
    :returns: the supervisor, or ``None`` for one process or inside a worker.
    """
    if count < 2 or is_worker():
        return None
    workers = Workers(reactor, count, reactor.kept_listeners())
    workers.start()
    return workers


def stop_all_from_worker() -> bool:
    """
    In a worker, ``requestShutdown()`` stops the whole server: the worker
    asks its parent (SIGTERM, once), which stops every worker gracefully.

    :returns: whether this process is a worker (and so asked its parent).
    """
    worker = this_process.worker
    if worker is None:
        return False
    if not worker.asked_parent_to_stop:
        worker.asked_parent_to_stop = True
        try:
            os.kill(worker.parent_pid, signal.SIGTERM)
        except OSError:
            return False  # the parent is gone: stop this worker alone
    return True


def watch_parent(reactor: Any, request_shutdown: Any) -> None:
    """In a worker: shut down gracefully once the process that started it is gone."""
    worker = this_process.worker
    if worker is None:
        return
    parent = worker.parent_pid

    def check() -> None:
        if os.getppid() != parent:
            log.warn("houweb: the process that started this worker is gone; stopping")
            checking.stop()
            request_shutdown()

    checking = task.LoopingCall(check)
    checking.clock = reactor
    checking.start(PARENT_CHECK_INTERVAL, now=False)


def work() -> None:
    """
    The start of a worker process: run the program again, with the parent's
    listening sockets to adopt. Ctrl-C in a terminal reaches the whole
    process group; a worker leaves it to its parent, which sends SIGTERM.
    """
    del sys.path[0]  # the entry the -c command added
    state = RestartState.from_json(sys.argv[1])
    worker = WorkerOf(number=int(sys.argv[2]), parent_pid=int(sys.argv[3]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    this_process.begin(Role.WORKER, state.program, state.listeners, worker)
    state.program.run()
