"""
What this process is to houweb, decided where it starts, not guessed later.

A process is one of three (:class:`Role`):

- the **program**: started by its user (``python app.py``, ``python -m
  houweb``, ``twistd houweb``, an application that embeds houweb). The
  default: nothing needs to say so.
- a **reloaded** program: started by a restart of ``reload_source_changes``
  (:func:`houweb._restart.rerun`), which runs the same program again; its
  ``run()`` adopts the listening sockets the previous process kept open.
- a **worker**: started by a foreground server with ``workers > 1``
  (:func:`houweb._workers.work`), which runs the same program again; its
  ``run()`` serves its parent's sockets, and stops with its parent.

The entry points of the last two set :data:`this_process` once
(:meth:`ProcessRole.begin`), before the program runs; ``run()`` (``_run``)
reads it. This module imports no other houweb module when it loads (only
``_handover``, and only when a program asks how to start again), so every
module of the process side can import it without forming a cycle, and a
plain server does not load the hand-over machinery.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._handover import Listener, Program

#: When houweb was imported: near enough when the program started. Reloading
#: also restarts for sources saved after that, before it watched them.
STARTED = time.time()


class Role(enum.Enum):
    """What started this process."""

    #: Its user: the default.
    PROGRAM = "program"
    #: A restart of ``reload_source_changes``: the program again, on kept sockets.
    RELOADED = "reloaded"
    #: A foreground server with ``workers > 1``: the program again, serving its parent's sockets.
    WORKER = "worker"


@dataclass
class WorkerOf:
    """A worker's place: its number and the process that started it."""

    #: 1 to N - 1 (the parent is 0).
    number: int
    parent_pid: int
    #: Whether ``requestShutdown()`` here has already asked the parent to stop.
    asked_parent_to_stop: bool = False


class ProcessRole:
    """
    This process's :class:`Role` and what its starter handed it: the program
    to run again and the listening sockets to adopt.
    """

    def __init__(self) -> None:
        self.role = Role.PROGRAM
        #: For a reloaded program or a worker: the program it runs (its own
        #: ``__main__`` is houweb's ``-c`` entry point, not the program); for
        #: a script run by ``python -m houweb run``, that command (:meth:`runs`).
        self.program: Program | None = None
        #: The listening sockets inherited, until ``run()`` adopts or closes them.
        self.inherited: list[Listener] = []
        #: For a worker: its number and parent.
        self.worker: WorkerOf | None = None
        self._begun = False

    def begin(
        self,
        role: Role,
        program: Program,
        inherited: list[Listener],
        worker: WorkerOf | None = None,
    ) -> None:
        """
        Say what this process is: once, where it starts, before its program runs.

        :param role: :attr:`Role.RELOADED` or :attr:`Role.WORKER`.
        :param program: the program this process runs again.
        :param inherited: the listening sockets handed over.
        :param worker: for a worker, its number and parent.
        :raises RuntimeError: if the role was set already.
        """
        if self._begun:
            raise RuntimeError(f"this process's role is set once, and is {self.role.value}")
        self._begun = True
        self.role, self.program, self.worker = role, program, worker
        self.inherited = list(inherited)

    def runs(self, program: Program) -> None:
        """
        Say how to start this program again where its ``__main__`` does not
        tell: ``python -m houweb run SCRIPT`` runs the script as
        ``__main__``, but a restart or a worker must run ``houweb run``
        again, which provides the script's ``hwebserver`` and ``hou``. A
        reloaded program or a worker keeps the program it was given (the
        same one).
        """
        if self.program is None:
            self.program = program

    def take_inherited(self) -> list[Listener]:
        """:returns: the inherited sockets, which are no longer this object's to close."""
        taken, self.inherited = self.inherited, []
        return taken

    def program_to_run_again(self) -> Program | None:
        """
        :returns: how to start this program again (for a restart or a
            worker); ``None`` when it cannot be (``python -c``, the
            interactive interpreter).
        """
        if self.program is not None:
            return self.program
        from ._handover import Program  # here: a plain server never needs it

        return Program.current()


#: This process: one per interpreter, as a process has one start.
this_process = ProcessRole()
