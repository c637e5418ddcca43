"""
Child processes for the tests of running houweb (``python -m houweb``,
``twistd houweb``, scripts calling ``run()``): their output is read by a
thread, so every wait has a deadline; they are ended by PID.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

from .support import APPS, ROOT

T = TypeVar("T")

#: The start-up log line naming a URL: group 1 is the port.
LISTENING = re.compile(r"houweb: listening on https?://[^ ]*:(\d+)/")
#: Runs twistd's main function (``python -m twisted`` runs ``twist``, not twistd).
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"


def app(name: str) -> str:
    """:returns: the path of ``tests/apps/<name>``."""
    return os.path.join(APPS, name)


class Child:
    """A Python child process whose output (stdout and stderr) is collected as it comes."""

    def __init__(self, *args: str, cwd: str | None = None) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd or ROOT,
            text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @classmethod
    def houweb(cls, *args: str, cwd: str | None = None) -> Child:
        """``python -m houweb ARGS``."""
        return cls("-m", "houweb", *args, cwd=cwd)

    @classmethod
    def twistd(cls, *args: str, cwd: str | None = None) -> Child:
        """``twistd ARGS``, e.g. ``twistd("-n", "houweb", "--port", "0")``."""
        return cls("-c", TWISTD, *args, cwd=cwd)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.kill()

    @property
    def output(self) -> str:
        """Everything printed so far."""
        with self._changed:
            return "".join(self.lines)

    def wait_for(
        self, pattern: str | re.Pattern[str], after: int = 0, timeout: float = 20
    ) -> re.Match[str]:
        """
        :param after: skip the first ``after`` lines (see :meth:`mark`).
        :returns: the match of the first line (past ``after``) matching ``pattern``.
        :raises AssertionError: with the output, if none comes within ``timeout`` s.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[after:]:
                    found = regex.search(line)
                    if found:
                        return found
                after = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"no line matching {regex.pattern!r} in:\n{''.join(self.lines)}"
                    )
                self._changed.wait(min(left, 0.5))

    def mark(self) -> int:
        """:returns: how many lines were printed so far, for ``wait_for(after=...)``."""
        with self._changed:
            return len(self.lines)

    def port(self, after: int = 0, timeout: float = 20) -> int:
        """:returns: the port of the next ``houweb: listening on`` line."""
        return int(self.wait_for(LISTENING, after, timeout).group(1))

    def ports(self, count: int, timeout: float = 20) -> list[int]:
        """:returns: the ports of the first ``count`` ``houweb: listening on`` lines."""
        found: list[int] = []
        after = 0
        while len(found) < count:
            match = self.wait_for(LISTENING, after, timeout)
            found.append(int(match.group(1)))
            with self._changed:
                after = self.lines.index(match.string, after) + 1
        return found

    def send_signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 20) -> int:
        """:returns: the exit status, once the process ended (and its output was read)."""
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        return code

    def kill(self) -> None:
        """End the process by its PID if it still runs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self._reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def get(port: int, path: str, timeout: float = 10) -> tuple[int, str]:
    """A blocking GET on 127.0.0.1: ``(status, body as text)``."""
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8")


def eventually(check: Callable[[], T | None], timeout: float = 15, every: float = 0.1) -> T:
    """
    :returns: the first true result of ``check()``, tried until ``timeout`` s;
        exceptions count as not yet.
    :raises AssertionError: if none came.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception as exc:  # noqa: BLE001 - not yet
            last = exc
        else:
            if result:
                return result
            last = result
        time.sleep(every)
    raise AssertionError(f"not within {timeout}s; last result: {last!r}")


def in_background(function: Callable[[], T]) -> Callable[[float], T]:
    """
    Start ``function`` in a thread now.

    :returns: a function that waits up to its argument in seconds for the
        result (re-raising what ``function`` raised).
    """
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append((True, function()))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiter
            outcome.append((False, exc))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()

    def result(timeout: float) -> T:
        thread.join(timeout)
        assert outcome, f"still running after {timeout}s"
        ok, value = outcome[0]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    return result


def logged_port(text: str) -> int | None:
    """:returns: the port of the first ``houweb: listening on`` line in ``text``."""
    found = LISTENING.search(text)
    return int(found.group(1)) if found else None


def free_port() -> int:
    """:returns: a port that was free a moment ago on 127.0.0.1."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def refuses(port: int) -> bool:
    """:returns: whether nothing listens on 127.0.0.1:``port``."""
    import socket

    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) != 0
