"""
WebSocket flow control both ways (issue 15.2), measured on a server in a
child process by its RSS (from /proc): a client cannot make the server hold
what ``receive()`` has not taken yet, nor what it does not read.

Each test gives the old behaviour a bounded chance to show (the client's
data all taken, every send done), then measures: with flow control the
measure is small whenever it is taken. Then it checks nothing was lost.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from .support import APPS, ServerProcess, ws_connect
from .test_dispatch import until

MiB = 1024 * 1024
#: What the old server took in the issue's runs is hundreds of MiB; with flow
#: control a few MiB. The bound sits far from both.
GROWTH_BOUND = 48 * MiB


@pytest.fixture
def app() -> Any:
    child = ServerProcess(os.path.join(APPS, "ws_flow_app.py"))
    try:
        port = child.port()
        yield child, port
    finally:
        child.kill()


def rss(pid: int) -> int:
    """:returns: the resident memory of process ``pid``, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@implementer(IPushProducer)
class _Drained:
    """Registered on a client's transport: fires once its write buffer emptied."""

    def __init__(self) -> None:
        self.done: defer.Deferred[None] = defer.Deferred()
        self.drained = False

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        self.drained = True
        if not self.done.called:
            self.done.callback(None)

    def stopProducing(self) -> None:
        pass


async def at_most(d: defer.Deferred[Any], seconds: float) -> None:
    """Wait for ``d``, or ``seconds`` (the chance given to the old behaviour)."""
    try:
        await d.addTimeout(seconds, reactor)
    except defer.TimeoutError:
        pass


@pytest_twisted.ensureDeferred
async def test_a_slow_receive_pauses_reading_instead_of_queueing(app, client):
    child, port = app
    ws = await ws_connect(port, "/held")
    before = rss(child.process.pid)
    drained = _Drained()
    ws.transport.registerProducer(drained, True)
    for _ in range(96):
        ws.sendMessage(b"m" * MiB, isBinary=True)
    await at_most(drained.done, 5)  # the old server read all 96 MiB into its queue
    grown = rss(child.process.pid) - before
    assert grown < GROWTH_BOUND, f"server grew by {grown // MiB} MiB"
    assert not drained.drained
    assert (await client.get(port, "/release")).text == "released"
    counts = [await ws.next_message(timeout=60) for _ in range(96)]
    assert counts == [str(i) for i in range(1, 97)]  # every message, in order
    ws.sendClose(1000)
    await ws.wait_closed()


@pytest.mark.parametrize("how", ["await", "thread"])
@pytest_twisted.ensureDeferred
async def test_send_waits_for_a_client_that_does_not_read(app, how):
    child, port = app
    ws = await ws_connect(port, "/flood")
    before = rss(child.process.pid)
    ws.transport.pauseProducing()  # reads nothing for now
    ws.sendMessage(how.encode())
    try:  # the old sends never waited
        await until(lambda: "SENT ALL\n" in child.lines, timeout=5)
    except AssertionError:
        pass
    grown = rss(child.process.pid) - before
    assert grown < GROWTH_BOUND, f"server grew by {grown // MiB} MiB"
    assert "SENT ALL\n" not in child.lines
    ws.transport.resumeProducing()
    for _ in range(200):
        assert len(await ws.next_message(timeout=60)) == MiB
    await until(lambda: "SENT ALL\n" in child.lines)
    ws.sendClose(1000)
    await ws.wait_closed()


@pytest_twisted.ensureDeferred
async def test_sends_not_awaited_past_max_pending_send_close_the_connection(app):
    child, port = app
    ws = await ws_connect(port, "/flood")
    before = rss(child.process.pid)
    ws.transport.pauseProducing()
    ws.sendMessage(b"forget")
    await until(lambda: "DISCONNECT 1006\n" in child.lines, timeout=30)
    grown = rss(child.process.pid) - before
    assert grown < GROWTH_BOUND, f"server grew by {grown // MiB} MiB"
    ws.transport.abortConnection()


@pytest_twisted.ensureDeferred
async def test_a_ping_flood_from_a_client_that_does_not_read_is_not_buffered(app):
    """
    Every ping gets a pong: a client that sends pings and reads none of the
    pongs must not make the server hold them all (it stops reading from the
    client while what it wrote waits, as twisted.web does for HTTP).
    """
    child, port = app
    ws = await ws_connect(port, "/held")
    before = rss(child.process.pid)
    ws.transport.pauseProducing()  # reads no pong
    drained = _Drained()
    ws.transport.registerProducer(drained, True)
    ping = b"\x89\xfd\0\0\0\0" + b"p" * 125  # masked (with a zero key), 125 bytes
    ws.transport.write(ping * (96 * MiB // len(ping)))
    await at_most(drained.done, 10)  # the old server read them all, and queued the pongs
    grown = rss(child.process.pid) - before
    assert grown < GROWTH_BOUND, f"server grew by {grown // MiB} MiB"
    assert not drained.drained
    ws.transport.abortConnection()
