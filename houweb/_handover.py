"""
What one houweb process hands the next: how to run the program again
(:class:`Program`), the listening sockets kept open for it to adopt
(:class:`Listener`), both in one :class:`RestartState`, and the command line
that starts it (:func:`houweb_command`).

Shared by the restart of ``reload_source_changes`` (``_restart``), which
replaces this process by a new one with ``os.execv``, and by ``workers``
(``_workers``), which start more processes serving the same sockets. The
kernel keeps a kept socket listening throughout, so connections made
meanwhile wait in its backlog instead of being refused.
"""

from __future__ import annotations

import json
import os
import runpy
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_HOUWEB_DIR = Path(__file__).resolve().parent

#: Whether listening sockets can pass to the new process; elsewhere (Windows)
#: the new process binds the same port numbers again.
KEEPS_SOCKETS = os.name == "posix"


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
        :returns: how this interpreter's program was started; ``None`` when
            it cannot be run again (``python -c``, the interactive
            interpreter). A reloaded program or a worker was given its
            program instead: see ``_role.ProcessRole.program_to_run_again``.
        """
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


def keep_open(listening: Any) -> int:
    """
    :param listening: a listening Twisted port.
    :returns: an inheritable duplicate of its socket, which stays open (and
        listening) when Twisted stops listening on the port.
    """
    fd = os.dup(listening.fileno())
    os.set_inheritable(fd, True)
    # Twisted shuts a socket it bound down when it stops listening, which
    # would end the listening of the duplicate too.
    listening._shouldShutdown = False
    return fd


def family_of(interface: str) -> int:
    """:returns: the address family of a listening address."""
    return socket.AF_INET6 if ":" in interface else socket.AF_INET


@dataclass
class RestartState:
    """What one process hands the next across ``os.execv`` (or to a worker)."""

    program: Program
    listeners: list[Listener] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    log_format: str = "text"
    #: The server's debug mode: a program that fails to start says why in its 503s.
    debug: bool = False
    #: The server's ALLOWED_HOSTS, which those 503s keep checking (its token
    #: goes in the environment, never on the command line: see
    #: ``_restart.restart``).
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
