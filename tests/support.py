"""
Helpers for houweb's tests: real servers on free loopback ports, HTTP with
treq and raw sockets, captured log events, and subprocesses run by PID.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import treq
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.web.client import HTTPConnectionPool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APPS = os.path.join(ROOT, "tests", "apps")


@dataclass
class Reply:
    """A response as tests look at it."""

    status: int
    headers: Any
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return None if values is None else ", ".join(values)

    def header_list(self, name: str) -> list[str]:
        return list(self.headers.getRawHeaders(name) or [])

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


class Client:
    """treq with a pool of its own, aimed at one server's ports."""

    def __init__(self) -> None:
        self.pool = HTTPConnectionPool(reactor, persistent=True)

    async def request(
        self,
        method: str,
        port: int,
        path: str,
        headers: Mapping[str, Any] | None = None,
        data: Any = None,
        **kwargs: Any,
    ) -> Reply:
        url = f"http://127.0.0.1:{port}{path}"
        response = await treq.request(
            method, url, headers=headers, data=data, pool=self.pool, **kwargs
        )
        body = await treq.content(response)
        return Reply(response.code, response.headers, body)

    async def get(self, port: int, path: str, **kwargs: Any) -> Reply:
        return await self.request("GET", port, path, **kwargs)

    async def post(self, port: int, path: str, **kwargs: Any) -> Reply:
        return await self.request("POST", port, path, **kwargs)

    def close(self) -> defer.Deferred[None]:
        return self.pool.closeCachedConnections()


class _Collect(protocol.Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Any) -> None:
        self.done.callback(self.data)


async def raw_request(port: int, payload: bytes, timeout: float = 10) -> bytes:
    """Send ``payload`` as is and return all the server sends until it closes."""
    proto = _Collect()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), proto)
    proto.transport.write(payload)
    timer = reactor.callLater(timeout, proto.transport.abortConnection)
    data = await proto.done
    if timer.active():
        timer.cancel()
    return data


async def connect_raw(port: int) -> _Collect:
    """An open raw connection; write with ``.transport.write``."""
    proto = _Collect()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), proto)
    return proto


def sleep(seconds: float) -> defer.Deferred[None]:
    """A Deferred that fires after ``seconds``, for async tests."""
    from twisted.internet import task

    return task.deferLater(reactor, seconds, lambda: None)


class ServerProcess:
    """
    A Python script run in a child process that prints ``PORT <n>`` lines;
    ended by its PID.
    """

    def __init__(self, script: str, *args: str, env: Mapping[str, str] | None = None) -> None:
        full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, full_env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, script, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=full_env,
            text=True,
        )
        self.lines: list[str] = []
        self._drain: threading.Thread | None = None

    def wait_for_line(self, prefix: str, timeout: float = 20) -> str:
        """Read output until a line starting with ``prefix``; return that line."""
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if line.startswith(prefix):
                return line.strip()
        raise AssertionError(f"no line {prefix!r}; output so far:\n{''.join(self.lines)}")

    def port(self) -> int:
        """Wait for the ``PORT n`` line; from then on read the output in a thread."""
        port = int(self.wait_for_line("PORT").split()[1])
        self.keep_reading()
        return port

    def keep_reading(self) -> None:
        """
        Go on reading the child's output in the background, so a chatty
        server never blocks on a full pipe.
        """

        def drain() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.lines.append(line)

        self._drain = threading.Thread(target=drain, daemon=True)
        self._drain.start()

    def output(self, timeout: float = 20) -> str:
        """Wait for the process to end; return everything it printed."""
        if self._drain is not None:
            # The drain thread is the only reader: communicate() would race it
            # for the last lines.
            self.process.wait(timeout)
            self._drain.join(timeout)
            return "".join(self.lines)
        rest, _ = self.process.communicate(timeout=timeout)
        return "".join(self.lines) + (rest or "")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    """A blocking GET for tests that talk to a child process."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# WebSockets


class WSClient(WebSocketClientProtocol):  # type: ignore[misc]
    """An autobahn WebSocket client that keeps what it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.received: defer.DeferredQueue[Any] = defer.DeferredQueue()
        self.opened: defer.Deferred[WSClient] = defer.Deferred()
        self.closed: defer.Deferred[int | None] = defer.Deferred()

    def onOpen(self) -> None:
        self.opened.callback(self)

    def onMessage(self, payload: bytes, is_binary: bool) -> None:
        self.received.put(bytes(payload) if is_binary else payload.decode("utf-8"))

    def onClose(self, was_clean: bool, code: int | None, reason: str | None) -> None:
        if not self.opened.called:
            self.opened.errback(ConnectionError(reason))
        if not self.closed.called:
            self.closed.callback(code)

    def next_message(self, timeout: float = 10) -> defer.Deferred[Any]:
        """The next message received: ``str`` for text, ``bytes`` for binary."""
        return self.received.get().addTimeout(timeout, reactor)

    def wait_closed(self, timeout: float = 10) -> defer.Deferred[int | None]:
        """Fires with the close code the server sent once the connection closed."""
        return self.closed.addTimeout(timeout, reactor)


async def ws_connect(port: int, path: str, **options: Any) -> WSClient:
    """Open a WebSocket to ``ws://127.0.0.1:<port><path>``; autobahn ``options``."""
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}{path}")
    factory.protocol = WSClient
    factory.setProtocolOptions(**options)
    client = await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
    return await client.opened.addTimeout(10, reactor)  # type: ignore[no-any-return]


def ws_handshake(
    path: str,
    key: str = "dGhlIHNhbXBsZSBub25jZQ==",
    version: str = "13",
    connection: str = "Upgrade",
) -> bytes:
    """
    A raw upgrade request (RFC 6455 section 1.3's sample key by default);
    ``connection="Upgrade, close"`` for one answered over plain HTTP.
    """
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: {connection}\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: {version}\r\n\r\n"
    ).encode("ascii")


def ws_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """One masked client frame (payloads under 64 KiB)."""
    mask = b"\x01\x02\x03\x04"
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    head += bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + size.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def in_ci() -> bool:
    """:returns: whether the tests run in CI (``CI=true``), where nothing may skip."""
    return os.environ.get("CI", "").lower() == "true"


def skip_unless_ci(why: str) -> None:
    """
    Skip the test, saying ``why``; in CI (which runs as root with Debian's
    packages reachable, and whose ``.ci/run`` installs what tests need)
    fail instead, so a test that can run there never silently does not.
    """
    import pytest

    if in_ci():
        pytest.fail(f"CI=true, yet this test cannot run: {why}")
    pytest.skip(why)


def debian_program(command: str, package: str) -> str:
    """
    :returns: the path of ``command``, installing Debian's ``package`` when
        it is missing; skips the test (saying why) only when it cannot be
        installed, and fails instead in CI (see :func:`skip_unless_ci`).
    """
    import shutil

    found = shutil.which(command)
    if found:
        return found
    why = "apt-get is not available"
    if shutil.which("apt-get"):
        result = subprocess.run(
            ["apt-get", "install", "-y", "-q", package],
            capture_output=True,
            text=True,
            timeout=900,
        )
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        why = f"apt-get install {package} failed: {last[0]}"
    found = shutil.which(command)
    if not found:
        skip_unless_ci(f"{command} is missing and {why}")
    assert found is not None
    return found
