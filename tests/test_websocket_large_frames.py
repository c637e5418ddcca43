"""
Large WebSocket frames gathered in one buffer and read straight into it
(houweb._ws_frames.Gathering, SpareBuffers; _Connection._read_into_frame):
a reviewer's attacks on them, over real sockets.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import pytest_twisted

import houweb

from .test_dispatch import until
from .test_websocket_frames import (
    Recorder,
    begun,
    closed_with,
    frame,
    no_spares,
    opened,
    reads_into_frame,
    receives,
    server_frames,
)


def failures(logged: list[Any]) -> list[Any]:
    return [event for event in logged if event.get("log_failure") is not None]


@pytest_twisted.ensureDeferred
async def test_small_frames_split_across_reads_leave_no_small_buffers_kept(serve):
    # Any frame whose end is in a later read is gathered, however small: a
    # client (or just TCP) splitting small frames must not fill the kept
    # buffers with thousands of tiny ones, scanned whole for every frame.
    client, events, connection = await opened(serve)
    no_spares(connection)
    for index in range(20):
        data = frame(0x2, bytes([index]) * 40)
        client.transport.write(data[:10])
        await until(lambda: connection._frame is not None)
        client.transport.write(data[10:])
        await until(lambda count=index + 1: len(receives(events)) == count)
    assert [bytes_data for _, _, bytes_data in receives(events)] == [
        bytes([index]) * 40 for index in range(20)
    ]
    spares = connection.factory.spares
    assert spares.held == 0, "no buffer of a small frame is kept"


def leave(client: Any, how: str) -> None:
    """The client leaves: ``abort`` (its socket closed), ``fin`` (its end of input), ``rst`` (a reset)."""
    import socket
    import struct

    if how == "fin":
        client.transport.loseWriteConnection()
        return
    if how == "rst":  # closed with SO_LINGER 0
        sock = client.transport.getHandle()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.transport.abortConnection()


@pytest.mark.parametrize("how", ["abort", "fin", "rst"])
@pytest_twisted.ensureDeferred
async def test_a_client_leaving_while_its_frame_is_read_directly_disconnects_with_1006(
    serve, logged, how
):
    client, events, connection, _, data = await begun(serve)
    client.transport.write(data[1_000:40_000])
    await until(lambda: connection._frame is not None and connection._frame.filled >= 40_000)
    leave(client, how)
    await until(lambda: [e for e in events if e[0] == "disconnect"])
    assert events == [("disconnect", 1006)]
    assert connection._frame is None and not reads_into_frame(connection)
    assert not failures(logged), failures(logged)[0]["log_failure"]


@pytest_twisted.ensureDeferred
async def test_the_server_closing_while_a_frame_is_read_directly_closes_with_its_code(serve):
    client, events, connection, payload, data = await begun(serve)
    connection.close(4000)
    client.transport.write(data[1_000:])
    assert await closed_with(client, events) == 4000
    # autobahn reads it (a data frame while closing: delivered, as before the direct reads)
    assert receives(events) == [("receive", None, payload)]
    assert not reads_into_frame(connection)


@pytest_twisted.ensureDeferred
async def test_a_ping_sent_while_a_frame_is_read_directly_then_its_pong_and_the_next(serve):
    client, events, connection, payload, data = await begun(serve)
    connection.sendPing(b"ping!")
    client.transport.write(data[1_000:] + frame(0xA, b"ping!") + frame(0x1, b"after"))
    await until(lambda: len(receives(events)) == 2)
    assert receives(events) == [("receive", None, payload), ("receive", "after", None)]
    assert connection.autoPingTimeoutCall is None
    await until(lambda: sum(op in (1, 2) for op, _ in server_frames(client.data)) == 2)
    client.transport.write(frame(0x1, "ünï".encode() * 30_000))  # plain frames again
    await until(lambda: len(receives(events)) == 3)
    assert receives(events)[2] == ("receive", "ünï" * 30_000, None)


@pytest_twisted.ensureDeferred
async def test_two_connections_gathering_at_once_from_kept_buffers_keep_their_own_bytes(serve):
    a, a_events, a_connection = await opened(serve)
    b, b_events, b_connection = await opened(serve)
    no_spares(a_connection)
    # kept buffers, longer than the frames to come, holding other bytes
    spares = a_connection.factory.spares
    spares.give(bytearray(b"\xee" * 300_000))
    spares.give(bytearray(b"\xdd" * 300_000))
    a_payload, b_payload = os.urandom(120_000), b"b" * 100_000
    a_data, b_data = frame(0x2, a_payload), frame(0x1, b_payload)
    a.transport.write(a_data[:700])
    b.transport.write(b_data[:900])
    await until(lambda: a_connection._frame is not None and b_connection._frame is not None)
    assert a_connection._frame.buffer is not b_connection._frame.buffer
    assert not spares.held, "both gather in a kept buffer"
    for at in range(700, len(a_data), 30_000):  # interleaved pieces
        a.transport.write(a_data[at : at + 30_000])
        b.transport.write(b_data[at + 200 : at + 30_200])
        end = min(at + 30_000, len(a_data) - 1)
        await until(
            lambda end=end: a_connection._frame is None or a_connection._frame.filled >= end
        )
    b.transport.write(b_data[len(a_data) + 200 :])
    await until(lambda: len(receives(a_events)) == 1 and len(receives(b_events)) == 1)
    assert receives(a_events) == [("receive", None, a_payload)]
    assert receives(b_events) == [("receive", b_payload.decode(), None)]


@pytest_twisted.ensureDeferred
async def test_a_frame_trickled_in_small_pieces_read_directly_arrives_whole(serve):
    client, events, connection = await opened(serve)
    payload = os.urandom(100_000)
    data = frame(0x2, payload) + frame(0x1, b"next")
    client.transport.write(data[:20])
    await until(lambda: reads_into_frame(connection))
    at = 20
    while at < len(data) - 1_000:
        client.transport.write(data[at : at + 997])
        at += 997
        await until(
            lambda end=at: connection._frame is not None and connection._frame.filled >= end
        )
    client.transport.write(data[at:])  # the frame's last bytes and the next frame
    await until(lambda: len(receives(events)) == 2)
    assert receives(events) == [("receive", None, payload), ("receive", "next", None)]


@pytest_twisted.ensureDeferred
async def test_an_oversize_frame_after_a_kept_buffer_closes_with_1009(serve):
    client, events, connection = await opened(serve)
    no_spares(connection)
    data = frame(0x2, b"k" * 199_000)
    client.transport.write(data[:500])
    await until(lambda: connection._frame is not None)
    client.transport.write(data[500:])
    await until(lambda: len(receives(events)) == 1)
    assert connection.factory.spares.held
    client.transport.write(frame(0x2, b"x" * 200_001)[:3_000])  # over the 200 KB limit
    assert await closed_with(client, events) == 1009
    assert len(receives(events)) == 1


@pytest_twisted.ensureDeferred
async def test_a_bad_frame_after_a_gathered_one_in_the_same_read_closes_with_1002(serve):
    client, events, connection, payload, data = await begun(serve)
    client.transport.write(data[1_000:] + frame(0x2, b"unmasked", masked=False))
    assert await closed_with(client, events) == 1002
    assert receives(events) == [("receive", None, payload)]


@pytest_twisted.ensureDeferred
async def test_large_messages_over_tls_are_gathered_without_direct_reads(
    serve, tmp_path, monkeypatch
):
    from houweb._ws_frames import Gathering

    from .test_websocket import wss_echo

    copied: list[int] = []  # the reads copied into a frame gathered (no direct reads)
    add = Gathering.add
    monkeypatch.setattr(Gathering, "add", lambda self, data: copied.append(1) or add(self, data))
    events: list[Any] = []
    instances: list[Any] = []
    houweb.webSocket("/echo")(type("Echo", (Recorder,), {"events": events, "instances": instances}))
    ws = await wss_echo(serve, tmp_path)
    connection = instances[0]._houweb_connection
    payloads = [os.urandom(190_000), os.urandom(70_000), "ü".encode() * 90_000, os.urandom(10)]
    for payload in payloads:
        ws.sendMessage(payload, isBinary=payload[:2] != "ü".encode())
    echoed = [await ws.next_message() for _ in payloads]
    assert echoed[:2] == payloads[:2] and echoed[3] == payloads[3]
    assert echoed[2] == "ü" * 90_000
    assert not reads_into_frame(connection)
    assert copied, "the large frames were gathered from TLS's reads"
    ws.sendClose(1000)
    assert await ws.wait_closed() == 1000


@pytest_twisted.ensureDeferred
async def test_a_client_stalled_mid_frame_read_directly_is_dropped_with_1006(serve, logged):
    # Pinged every idle_timeout + 1 s; the pong cannot come mid-frame, and
    # nothing else does: dropped, nothing of it left.
    running: list[Any] = []

    async def start() -> Any:
        running.append(await serve(idle_timeout=0.3))
        return running[0]

    client, events, connection = await opened(start)
    data = frame(0x2, os.urandom(150_000))
    client.transport.write(data[:1_000])
    await until(lambda: reads_into_frame(connection))
    await until(lambda: [e for e in events if e[0] == "disconnect"], timeout=15)
    assert events == [("disconnect", 1006)]
    assert connection._frame is None and not reads_into_frame(connection)
    await client.done
    await until(lambda: not running[0].site.houweb_connections)
    assert not failures(logged), failures(logged)[0]["log_failure"]


@pytest_twisted.ensureDeferred
async def test_a_client_trickling_a_frame_read_directly_is_not_dropped_for_silence(serve):
    # The bytes read straight into the frame count as hearing from the client
    # (as Twisted's reads do): a ping unanswered while they come drops nothing.
    async def start() -> Any:
        return await serve(idle_timeout=0.3)

    client, events, connection = await opened(start)
    payload = os.urandom(150_000)
    data = frame(0x2, payload)
    client.transport.write(data[:1_000])
    await until(lambda: reads_into_frame(connection))
    at = 1_000
    for _ in range(3):  # each time the server waits for a pong: a piece instead
        await until(lambda: connection.autoPingTimeoutCall is not None, timeout=15)
        armed = connection.autoPingTimeoutCall
        client.transport.write(data[at : at + 1_000])
        at += 1_000
        await until(
            lambda armed=armed: (
                connection.autoPingTimeoutCall is not armed
                or connection.state != connection.STATE_OPEN
            ),
            timeout=15,
        )
        assert connection.state == connection.STATE_OPEN and not events
    pongs = b"".join(frame(0xA, ping) for op, ping in server_frames(client.data) if op == 0x9)
    client.transport.write(data[at:] + pongs)
    await until(lambda: receives(events))
    assert receives(events) == [("receive", None, payload)]


@pytest_twisted.ensureDeferred
async def test_connections_each_announcing_a_huge_frame_with_a_few_bytes_reserve_little(serve):
    # A 14-byte header and 10 bytes of payload from each of many connections
    # (up to max_connections) must not each reserve tens of KiB: what a
    # connection reserves stays a few times what it sent (and a few KiB).
    connections = []
    clients = []
    for _ in range(5):
        client, _events, connection = await opened(serve)
        clients.append(client)
        connections.append(connection)
    no_spares(connections[0])
    start = frame(0x2, b"x" * 190_000)[:24]
    for client in clients:
        client.transport.write(start)
    await until(lambda: all(connection._frame is not None for connection in connections))
    reserved = [len(connection._frame.buffer) for connection in connections]
    assert max(reserved) <= 4096, reserved


@pytest_twisted.ensureDeferred
async def test_direct_reads_leave_the_doread_of_an_aborted_transport_alone(serve):
    # Twisted's abortConnection sets a doRead that reads nothing on the
    # instance until the connection is lost: gathering a frame then (or a
    # frame's end) must not replace it with a read, nor take it away.
    client, events, connection = await opened(serve)
    transport = connection.transport
    transport.abortConnection()
    aborted = vars(transport)["doRead"]
    connection._set_direct_reads(True)
    assert vars(transport)["doRead"] is aborted
    connection._set_direct_reads(False)
    assert vars(transport)["doRead"] is aborted
    await until(lambda: [e for e in events if e[0] == "disconnect"])
    assert events == [("disconnect", 1006)]


@pytest_twisted.ensureDeferred
async def test_the_reactor_reads_through_the_doread_set_on_the_transport_instance(
    serve, monkeypatch
):
    # houweb relies on Twisted's reactor looking up the transport's doRead
    # at each readiness event (AsyncioSelectorReactor._readOrWrite does
    # ``selectable.doRead``): an instance attribute then takes the reads.
    # Were a Twisted release to bind it when the socket is registered, the
    # frames would still arrive, through Twisted's reads: this says so.
    from houweb._websocket import _Connection

    direct: list[int] = []
    read_into_frame = _Connection._read_into_frame

    def counted(self: Any) -> object:
        direct.append(1)
        return read_into_frame(self)

    monkeypatch.setattr(_Connection, "_read_into_frame", counted)
    client, events, connection = await opened(serve)
    payload = os.urandom(150_000)
    data = frame(0x2, payload)
    client.transport.write(data[:500])
    await until(lambda: connection._frame is not None)
    client.transport.write(data[500:])
    await until(lambda: len(receives(events)) == 1)
    assert receives(events) == [("receive", None, payload)]
    assert direct, "the reactor did not call the doRead set on the transport instance"
