"""
Headless Chromium for tests, driven over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: commands on the child's fd 3, answers and
events on its fd 4, each message JSON ended by a NUL byte). No browser
driver package, no port, no sleeps: every wait is on a protocol answer or
event, with a deadline.

The calls block, so a test whose server runs on the reactor thread calls
them in another thread (``threads.deferToThread``).

Outside CI a missing Chromium skips with the reason; with ``CI=true`` it
fails, so CI cannot go green without running these tests.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
#: How every test starts Chromium here: headless, as root, and with nothing
#: that reaches for the network (this machine's is closed).
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
FLAGS = (*HEADLESS_FLAGS, "--disable-dev-shm-usage", "--remote-debugging-pipe")


def chromium_or_skip() -> str:
    """
    :returns: the Chromium executable.
    :raises pytest.fail.Exception: when it is missing and ``CI=true``.
    :raises pytest.skip.Exception: when it is missing elsewhere.
    """
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    reason = "chromium is not installed (apt-get install -y chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the browser tests")
    pytest.skip(reason)


_TRAMPOLINE = """
import fcntl, os, sys
commands, events = (fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3])
os.dup2(commands, 3)
os.dup2(events, 4)
for fd in (commands, events, *map(int, sys.argv[1:3])):
    if fd not in (3, 4):
        os.close(fd)
os.execv(sys.argv[3], sys.argv[3:])
"""


class BrowserError(AssertionError):
    """The browser answered an error, or did not answer in time."""


class Browser:
    """
    One headless Chromium with a fresh profile, and one page in it.

    :param timeout: the default deadline of each wait, in seconds.
    """

    def __init__(self, executable: str | None = None, timeout: float = 30) -> None:
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="houweb-chromium-")
        to_child_read, to_child_write = os.pipe()
        from_child_read, from_child_write = os.pipe()
        command = [executable or chromium_or_skip(), *FLAGS, f"--user-data-dir={self._profile}"]
        # A Python trampoline puts the pipe ends on fds 3 and 4, where
        # Chromium wants them, and execs it (no preexec_fn: the parent has threads).
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _TRAMPOLINE,
                str(to_child_read),
                str(from_child_write),
                *command,
                "about:blank",
            ],
            pass_fds=(to_child_read, from_child_write),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        os.close(to_child_read)
        os.close(from_child_write)
        self._out = os.fdopen(to_child_write, "wb", buffering=0)
        self._in = os.fdopen(from_child_read, "rb", buffering=0)
        self._next_id = 0
        self._lock = threading.Lock()
        self._answers: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        #: Every event seen, for failure messages (console errors and such).
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._stderr: list[bytes] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.session = self._open_page()

    # The protocol.

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = self._in.read(65536)
            if not chunk:
                break
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        waiting = self._answers.get(message["id"])
                    if waiting is not None:
                        waiting.put(message)
                else:
                    self.events.append(message)
                    self._events.put(message)
        self._events.put({"method": "houweb.closed"})

    def _drain_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line)

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """
        Send one command and wait for its answer.

        :returns: its ``result``.
        :raises BrowserError: for an error answer or none in time.
        """
        with self._lock:
            self._next_id += 1
            number = self._next_id
            answer: queue.Queue[dict[str, Any]] = queue.Queue()
            self._answers[number] = answer
        message: dict[str, Any] = {"id": number, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self._out.write(json.dumps(message).encode() + b"\0")
        try:
            reply = answer.get(timeout=self.timeout if timeout is None else timeout)
        except queue.Empty:
            raise BrowserError(f"no answer to {method} in time; {self._context()}") from None
        finally:
            with self._lock:
                self._answers.pop(number, None)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_for_event(self, method: str, timeout: float | None = None) -> dict[str, Any]:
        """:returns: the next event called ``method`` (earlier others are dropped)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            try:
                event = self._events.get(timeout=max(left, 0))
            except queue.Empty:
                raise BrowserError(f"no {method} event in time; {self._context()}") from None
            if event["method"] == method:
                return event
            if event["method"] == "houweb.closed":
                raise BrowserError(f"the browser closed before {method}; {self._context()}")

    def _context(self) -> str:
        problems = [
            e["params"]
            for e in self.events
            if e["method"]
            in ("Runtime.exceptionThrown", "Log.entryAdded", "Runtime.consoleAPICalled")
        ]
        stderr = b"".join(self._stderr[-20:]).decode(errors="replace")
        return f"page messages: {problems!r}; chromium stderr: {stderr}"

    # A page.

    def _open_page(self) -> str:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        session_id = session["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=session_id)
        return session_id

    def goto(self, url: str) -> None:
        """Load ``url`` in the page and wait for its load event."""
        while not self._events.empty():  # forget earlier pages' events
            self._events.get_nowait()
        result = self.send("Page.navigate", {"url": url}, session=self.session)
        if result.get("errorText"):
            raise BrowserError(f"could not load {url}: {result['errorText']}")
        self.wait_for_event("Page.loadEventFired")

    def evaluate(self, expression: str, timeout: float | None = None) -> Any:
        """
        Run JavaScript in the page; a promise is awaited.

        :returns: its value (JSON-like).
        :raises BrowserError: with the exception's text if it threw.
        """
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            session=self.session,
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript threw: {text}")
        return result["result"].get("value")

    def set_files(self, selector: str, paths: list[str]) -> None:
        """Choose ``paths`` in the page's ``<input type=file>`` matching ``selector``."""
        root = self.send("DOM.getDocument", session=self.session)["root"]["nodeId"]
        found = self.send(
            "DOM.querySelector", {"nodeId": root, "selector": selector}, session=self.session
        )
        if not found.get("nodeId"):
            raise BrowserError(f"no element matches {selector!r}")
        self.send(
            "DOM.setFileInputFiles",
            {"files": paths, "nodeId": found["nodeId"]},
            session=self.session,
        )

    def close(self) -> None:
        """Close the browser (by its PID if it does not go) and delete its profile."""
        try:
            self.send("Browser.close", timeout=10)
        except (BrowserError, OSError):
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self._out.close()
        self._reader.join(10)
        self._in.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
