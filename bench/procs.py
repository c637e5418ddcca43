"""
Server processes: started pinned to a CPU, waited for until they answer,
measured through /proc, and stopped by their PID.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from .servers import ServerSpec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Cores:
    """Which CPUs the servers and the load generator run on (empty: unpinned)."""

    server: frozenset[int] = frozenset()
    load: frozenset[int] = frozenset()

    @classmethod
    def split(cls) -> Cores:
        """The first CPU for servers, the others for load, when there are two or more."""
        available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if len(available) < 2 or shutil.which("taskset") is None:
            return cls()
        return cls(frozenset(available[:1]), frozenset(available[1:]))

    def prefix(self, cpus: frozenset[int]) -> list[str]:
        """:returns: the ``taskset -c`` prefix pinning a command to ``cpus``."""
        return ["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []

    def describe(self) -> str:
        if not self.server:
            return "unpinned (fewer than 2 CPUs or no taskset)"
        return f"servers on CPU {sorted(self.server)}, load on CPU {sorted(self.load)}"


def free_port() -> int:
    """:returns: a TCP port free on loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """:returns: the status and body of ``GET path`` on loopback."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass
class ServerProcess:
    """One running server under test."""

    spec: ServerSpec
    port: int
    process: subprocess.Popen[bytes]
    started: float
    log_path: str
    ready_after: float | None = field(default=None)

    @classmethod
    def start(
        cls, spec: ServerSpec, files: str, cores: Cores, log_dir: str, *extra: str
    ) -> ServerProcess:
        """Start ``spec`` on a free port (``extra``: more arguments); see :meth:`wait_ready`."""
        port = free_port()
        log_path = os.path.join(log_dir, f"{spec.name}-{port}.log")
        command = [
            *cores.prefix(cores.server),
            sys.executable,
            "-m",
            f"bench.servers.{spec.module}",
            "--port",
            str(port),
            "--files",
            files,
            *extra,
        ]
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
        )
        with open(log_path, "wb") as log:
            started = time.perf_counter()
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
            )
        return cls(spec, port, process, started, log_path)

    def wait_ready(self, timeout: float = 30.0) -> float:
        """
        Poll ``GET /hello`` until it answers 200.

        :returns: seconds from process start to that first answer.
        :raises RuntimeError: if the server died or did not answer in time.
        """
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.spec.name} exited: see {self.log_path}")
            try:
                status, _ = get(self.port, "/hello", timeout=1.0)
            except OSError:
                time.sleep(0.002)
                continue
            if status == 200:
                self.ready_after = time.perf_counter() - self.started
                return self.ready_after
        raise RuntimeError(
            f"{self.spec.name} did not answer within {timeout}s: see {self.log_path}"
        )

    def status(self, key: str) -> int:
        """:returns: a ``/proc/PID/status`` figure (``VmRSS``, ``VmHWM``) in bytes, 0 if unknown."""
        try:
            with open(f"/proc/{self.process.pid}/status") as status:
                for line in status:
                    if line.startswith(key + ":"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def cpu_seconds(self) -> float:
        """:returns: the CPU time (user + system, every thread) the server has used."""
        try:
            with open(f"/proc/{self.process.pid}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def reset_peak(self) -> None:
        """Start counting the peak RSS (VmHWM) afresh, where Linux allows it."""
        try:
            with open(f"/proc/{self.process.pid}/clear_refs", "w") as refs:
                refs.write("5")
        except OSError:
            pass

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (then SIGKILL) this server, by its PID, and reap it."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
