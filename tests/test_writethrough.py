"""
Writing to a plain TCP transport at once (houweb/_writethrough.py): bytes go
to the socket in the same turn when nothing is buffered, and after what is
buffered otherwise, in order.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest_twisted
from twisted.internet import defer, protocol, reactor

from houweb._writethrough import write_now


class Writer(protocol.Protocol):
    """Runs ``on_connect(transport)`` when a client connects."""

    def __init__(self, on_connect: Any) -> None:
        self.on_connect = on_connect

    def connectionMade(self) -> None:
        self.on_connect(self.transport)


def read_all(client: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = client.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest_twisted.inlineCallbacks
def test_bytes_written_to_an_idle_connection_leave_in_the_same_turn():
    buffered: list[int] = []
    made = defer.Deferred()

    def on_connect(transport: Any) -> None:
        write_now(transport, b"x" * 1000)
        # Twisted's write would leave them in its buffer until the next turn.
        buffered.append(transport._tempDataLen + len(transport.dataBuffer) - transport.offset)
        transport.loseConnection()
        made.callback(None)

    factory = protocol.Factory.forProtocol(lambda: Writer(on_connect))
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10)
    try:
        yield made
        data = yield _in_thread(read_all, client, 1000)
    finally:
        client.close()
        yield port.stopListening()
    assert buffered == [0]
    assert data == b"x" * 1000


@pytest_twisted.inlineCallbacks
def test_bytes_written_behind_buffered_bytes_arrive_after_them():
    made = defer.Deferred()
    size = 4 * 1024 * 1024  # more than the socket takes at once

    def on_connect(transport: Any) -> None:
        transport.write(b"a" * size)
        write_now(transport, b"b" * 10)
        write_now(transport, b"c" * 10)
        transport.loseConnection()
        made.callback(None)

    factory = protocol.Factory.forProtocol(lambda: Writer(on_connect))
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10)
    try:
        yield made
        data = yield _in_thread(read_all, client, size + 20)
    finally:
        client.close()
        yield port.stopListening()
    assert data == b"a" * size + b"b" * 10 + b"c" * 10


def _in_thread(function: Any, *args: Any) -> defer.Deferred[Any]:
    from twisted.internet.threads import deferToThread

    return deferToThread(function, *args)


@pytest_twisted.inlineCallbacks
def test_several_buffers_arrive_whole_and_in_order_when_the_socket_takes_part():
    made = defer.Deferred()
    head, body, tail = b"h" * 10, bytes(range(256)) * 32768, b"t" * 10  # 8 MiB in the middle

    def on_connect(transport: Any) -> None:
        write_now(transport, head, body, tail)
        write_now(transport, b"after")
        transport.loseConnection()
        made.callback(None)

    factory = protocol.Factory.forProtocol(lambda: Writer(on_connect))
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10)
    try:
        yield made
        data = yield _in_thread(read_all, client, len(head + body + tail) + 5)
    finally:
        client.close()
        yield port.stopListening()
    assert data == head + body + tail + b"after"


@pytest_twisted.inlineCallbacks
def test_empty_pieces_are_skipped_and_nothing_is_left_buffered():
    made = defer.Deferred()
    buffered: list[int] = []

    def on_connect(transport: Any) -> None:
        write_now(transport, b"", b"a", b"", b"b")
        write_now(transport, b"", b"")
        write_now(transport)
        buffered.append(transport._tempDataLen + len(transport.dataBuffer) - transport.offset)
        transport.loseConnection()
        made.callback(None)

    factory = protocol.Factory.forProtocol(lambda: Writer(on_connect))
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10)
    try:
        yield made
        data = yield _in_thread(read_until_closed, client)
    finally:
        client.close()
        yield port.stopListening()
    assert buffered == [0]
    assert data == b"ab"


def read_until_closed(client: socket.socket) -> bytes:
    """:returns: what arrives until the connection ends (closed or reset)."""
    data = b""
    try:
        while chunk := client.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


@pytest_twisted.inlineCallbacks
def test_nothing_written_after_abort_connection_reaches_the_client():
    # Twisted's write after abortConnection buffers bytes that are never
    # sent (the connection ends with a reset); the shortcut must not send them.
    made = defer.Deferred()

    def on_connect(transport: Any) -> None:
        transport.abortConnection()
        write_now(transport, b"too late")
        made.callback(None)

    factory = protocol.Factory.forProtocol(lambda: Writer(on_connect))
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10)
    try:
        yield made
        data = yield _in_thread(read_until_closed, client)
    finally:
        client.close()
        yield port.stopListening()
    assert data == b""
