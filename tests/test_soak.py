"""
Load soak: many concurrent keep-alive clients mixing plain and async
handlers, static files, uploads (in memory and spooled) and API calls
against a server in a child process, whose file descriptors, threads and
memory are read from ``/proc`` before and after.

Bounded for CI (a few thousand requests, well under a minute); a longer run:
``SOAK_REQUESTS_PER_CLIENT=1000 python -m pytest -s tests/test_soak.py``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable

import pytest

from .children import app, eventually
from .support import ServerProcess, get
from .test_uploads import FORM_TYPE, form_body

CLIENTS = 50
#: The server's max_num_threads (tests/apps/soak_app.py).
POOL_SIZE = 4
REQUESTS_PER_CLIENT = int(os.environ.get("SOAK_REQUESTS_PER_CLIENT", "100"))
WARM_UP_PER_CLIENT = 6
#: Growth allowed after the soak: descriptors, resident memory (threads: none).
FD_TOLERANCE = 2
RSS_TOLERANCE = 20 * 1024 * 1024

STATIC = os.urandom(32 * 1024)
UPLOADS = [os.urandom(1024), os.urandom(16 * 1024)]  # kept in memory, spooled to disk


@dataclass(frozen=True)
class Usage:
    """What the server process holds."""

    fds: int
    threads: int
    rss: int

    @classmethod
    def of(cls, pid: int) -> Usage:
        fields = {}
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                name, _, value = line.partition(":")
                fields[name] = value.strip()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return cls(fds, int(fields["Threads"]), int(fields["VmRSS"].split()[0]) * 1024)

    def __str__(self) -> str:
        return f"{self.fds} fds, {self.threads} threads, {self.rss / 2**20:.1f} MiB RSS"


def exchange(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes | None = None,
    content_type: str | None = None,
) -> bytes:
    """One request on ``conn``; :returns: the body of its 200 answer."""
    headers = {"Content-Type": content_type} if content_type else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    assert response.status == 200, (response.status, data[:200])
    return data


def hello(conn: http.client.HTTPConnection, n: int) -> None:
    assert exchange(conn, "GET", f"/hello?n={n}") == f"hello {n}".encode()


def async_hello(conn: http.client.HTTPConnection, n: int) -> None:
    assert exchange(conn, "GET", f"/async?n={n}") == f"async {n}".encode()


def static_file(conn: http.client.HTTPConnection, n: int) -> None:
    assert exchange(conn, "GET", "/static/blob.bin") == STATIC


def upload(conn: http.client.HTTPConnection, n: int) -> None:
    data = UPLOADS[n % len(UPLOADS)]
    body = form_body(("file", f"f{n}.bin", "application/octet-stream", data))
    answer = exchange(conn, "POST", "/upload", body, FORM_TYPE).decode()
    in_memory = len(data) <= 4096
    assert answer == f"{len(data)} {hashlib.sha256(data).hexdigest()} {in_memory}"


def api_call(conn: http.client.HTTPConnection, n: int) -> None:
    body = json.dumps(["soak.add", [n, 1], {}]).encode()
    assert json.loads(exchange(conn, "POST", "/api", body, "application/json")) == n + 1


MIX: list[Callable[[http.client.HTTPConnection, int], None]] = [
    hello,
    async_hello,
    static_file,
    upload,
    api_call,
]


@dataclass
class Tally:
    """What the clients saw, filled from their threads."""

    served: int = 0
    reconnects: int = 0

    def __post_init__(self) -> None:
        self.failures: list[str] = []
        self.lock = threading.Lock()


def client(port: int, number: int, requests: int, tally: Tally, start: threading.Barrier) -> None:
    """One keep-alive client: ``requests`` requests of the mix, in turn."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    served = reconnects = 0
    failures = []
    start.wait(30)
    for i in range(requests):
        kind = MIX[(number + i) % len(MIX)]
        try:
            kind(conn, number * requests + i)
            served += 1
        except Exception as exc:  # noqa: BLE001 - every failure is reported
            failures.append(f"{kind.__name__}: {exc!r}")
            conn.close()
        if conn.sock is None and i < requests - 1:  # the server closed it
            reconnects += 1
    conn.close()
    with tally.lock:
        tally.served += served
        tally.reconnects += reconnects
        tally.failures += failures


def load(port: int, requests_per_client: int) -> Tally:
    """Run ``CLIENTS`` clients at once; :returns: what they saw."""
    tally = Tally()
    start = threading.Barrier(CLIENTS)
    threads = [
        threading.Thread(target=client, args=(port, n, requests_per_client, tally, start))
        for n in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a client never finished"
    return tally


def fill_pool(port: int) -> None:
    """Have the server start every thread of its pool (none is ever stopped)."""
    answers: list[tuple[int, bytes]] = []

    def fill() -> None:
        answers.append(get(f"http://127.0.0.1:{port}/fill-pool", 30))

    fillers = [threading.Thread(target=fill) for _ in range(POOL_SIZE)]
    for thread in fillers:
        thread.start()
    for thread in fillers:
        thread.join(30)
    assert answers == [(200, b"full")] * POOL_SIZE


def steady(pid: int) -> Usage | None:
    """:returns: the server's usage if its descriptors and threads hold still a moment."""
    first = Usage.of(pid)
    time.sleep(0.3)
    second = Usage.of(pid)
    return second if (first.fds, first.threads) == (second.fds, second.threads) else None


def settled(pid: int, baseline: Usage) -> Usage | None:
    """:returns: the server's usage once its descriptors and threads are back."""
    now = Usage.of(pid)
    if now.fds <= baseline.fds + FD_TOLERANCE and now.threads <= baseline.threads:
        return now
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID")
def test_soak_serves_every_request_and_gives_back_fds_threads_and_memory(tmp_path):
    static = tmp_path / "static"
    static.mkdir()
    (static / "blob.bin").write_bytes(STATIC)
    spool = tmp_path / "spool"
    spool.mkdir()
    server = ServerProcess(app("soak_app.py"), str(static), env={"TMPDIR": str(spool)})
    try:
        port = server.port()
        pid = server.process.pid
        warm = load(port, WARM_UP_PER_CLIENT)  # every code path run once
        assert warm.failures == []
        fill_pool(port)
        baseline = eventually(lambda: steady(pid), timeout=10)
        began = time.monotonic()
        tally = load(port, REQUESTS_PER_CLIENT)
        seconds = time.monotonic() - began
        after = eventually(lambda: settled(pid, baseline), timeout=15)
    finally:
        server.kill()
    logged = "".join(server.lines)
    total = CLIENTS * REQUESTS_PER_CLIENT
    print(
        f"\nsoak: {tally.served}/{total} requests from {CLIENTS} keep-alive clients in"
        f" {seconds:.1f}s ({tally.served / seconds:.0f}/s), {len(tally.failures)} failed,"
        f" {tally.reconnects} reconnects; server before: {baseline}; after: {after}"
        f" ({(after.rss - baseline.rss) / 2**20:+.1f} MiB)"
    )
    assert tally.failures == []
    assert tally.served == total
    assert tally.reconnects == 0  # keep-alive held throughout
    assert after.threads == baseline.threads
    assert after.rss - baseline.rss < RSS_TOLERANCE
    assert os.listdir(spool) == []  # every spooled upload deleted
    assert "Traceback" not in logged and "#error" not in logged and "#critical" not in logged
