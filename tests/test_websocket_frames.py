"""
WebSocket frames read without autobahn's parser (houweb/_ws_frames.py): whole
plain frames are delivered as autobahn delivers them, and every other frame
still goes to autobahn, which closes on a bad one with the same code as ever.
On real sockets; the split-read tests feed the live server connection's
``dataReceived`` the pieces themselves, so every split is exercised.
"""

from __future__ import annotations

import asyncio
import os
import threading
import tracemalloc
from typing import Any

import pytest
import pytest_twisted

import houweb
from houweb._ws_frames import (
    GATHER_FIRST,
    SPARE_BYTES,
    SPARE_LEAST,
    Gathering,
    SpareBuffers,
    header_incomplete,
    read_frames,
    unmask,
)

from .support import connect_raw, ws_handshake
from .test_dispatch import until

MASK = b"\x37\xfa\x21\x3d"


def frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length_bytes: int | None = None,
) -> bytes:
    """One client frame, any size; ``length_bytes`` (0, 2, 8) forces a length encoding."""
    size = len(payload)
    if length_bytes is None:
        length_bytes = 0 if size < 126 else 2 if size < 0x10000 else 8
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if masked else 0
    if length_bytes == 0:
        head += bytes([mask_bit | size])
    elif length_bytes == 2:
        head += bytes([mask_bit | 126]) + size.to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + size.to_bytes(8, "big")
    if not masked:
        return head + payload
    return head + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """:returns: the (unmasked, whole) server frames in ``data``: opcode and payload."""
    frames = []
    at = 0
    while at < len(data):
        opcode, size = data[at] & 0x0F, data[at + 1] & 0x7F
        at += 2
        if size == 126:
            size, at = int.from_bytes(data[at : at + 2], "big"), at + 2
        elif size == 127:
            size, at = int.from_bytes(data[at : at + 8], "big"), at + 8
        if at + size > len(data):
            break
        frames.append((opcode, data[at : at + size]))
        at += size
    return frames


class Recorder(houweb.WebSocket):
    """Echoes every message, records the callbacks, keeps itself in ``instances``."""

    events: list[Any]
    instances: list[Any]
    max_message_size = 200_000

    async def connect(self, request):
        self.instances.append(self)
        await self.accept()

    async def receive(self, text_data=None, bytes_data=None):
        self.events.append(("receive", text_data, bytes_data))
        if text_data is not None:
            await self.send(text_data=text_data)
        else:
            await self.send(bytes_data=bytes_data)

    async def disconnect(self, code):
        self.events.append(("disconnect", code))


async def opened(serve: Any) -> tuple[Any, list[Any], Any]:
    """A raw connection to a :class:`Recorder`: the client, its events, the server side."""
    events: list[Any] = []
    instances: list[Any] = []
    houweb.webSocket("/echo")(type("Echo", (Recorder,), {"events": events, "instances": instances}))
    port = (await serve()).port_numbers()[0]
    client = await connect_raw(port)
    client.transport.write(ws_handshake("/echo"))
    await until(lambda: b"\r\n\r\n" in client.data and instances)
    assert client.data.startswith(b"HTTP/1.1 101 ")
    client.data = b""
    return client, events, instances[0]._houweb_connection


def receives(events: list[Any]) -> list[Any]:
    return [event for event in events if event[0] == "receive"]


async def closed_with(client: Any, events: list[Any]) -> int:
    """Wait for the server's close frame; answer it; :returns: its code (and checks disconnect's)."""
    await until(lambda: any(op == 8 for op, _ in server_frames(client.data)))
    code = next(
        int.from_bytes(payload[:2], "big") for op, payload in server_frames(client.data) if op == 8
    )
    client.transport.write(frame(0x8, code.to_bytes(2, "big")))
    await client.done
    await until(lambda: [e for e in events if e[0] == "disconnect"])
    assert [e for e in events if e[0] == "disconnect"] == [("disconnect", code)]
    return code


# the reader itself


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 64, 65, 2047, 2048, 2049, 100_000])
def test_unmask_is_the_rfc_xor_of_the_repeated_mask(size):
    payload = os.urandom(size)
    expected = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    assert unmask(payload, MASK) == expected
    assert unmask(memoryview(payload), memoryview(MASK)) == expected


def test_read_frames_stops_at_the_first_frame_autobahn_must_read():
    got: list[Any] = []
    data = frame(0x1, b"one") + frame(0x2, b"\x00two") + frame(0x9, b"ping") + frame(0x1, b"x")
    at, end, messages, octets = read_frames(data, 0, lambda *m: got.append(m))
    assert got == [("one", None, 3), (None, b"\x00two", 4)]
    assert (at, end, messages, octets) == (
        len(frame(0x1, b"one") + frame(0x2, b"\x00two")),
        0,
        2,
        7,
    )


def test_read_frames_reports_a_plain_frame_not_all_here():
    data = frame(0x1, b"a") + frame(0x2, b"b" * 300)[:50]
    at, end, messages, _ = read_frames(data, 0, lambda *m: None)
    assert (at, messages) == (len(frame(0x1, b"a")), 1)
    assert end == at + len(frame(0x2, b"b" * 300))


@pytest_twisted.ensureDeferred
async def test_autobahn_still_has_the_parser_state_houweb_checks_before_reading(serve):
    client, _, connection = await opened(serve)
    for name in ("data", "current_frame", "inside_message", "autoPingTimeoutCall"):
        assert hasattr(connection, name), (
            f"autobahn's protocol no longer has {name}: houweb/_websocket.py checks it to "
            "know that autobahn's parser holds nothing before reading frames itself"
        )
    assert connection._plain, "a plain connection's frames are read by houweb/_ws_frames.py"
    client.transport.abortConnection()


# split reads


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(
    ("opcode", "payload"),
    [
        (0x1, "héllo wörld 16B!".encode()),
        (0x2, bytes(range(256)) * 2),  # a 16-bit length
        (0x1, ("€" * 30_000).encode()),  # a 64-bit length, text
    ],
    ids=["text-7bit", "binary-16bit", "text-64bit"],
)
async def test_a_frame_split_across_two_reads_anywhere_is_received_whole(serve, opcode, payload):
    client, events, connection = await opened(serve)
    whole = frame(opcode, payload)
    after = frame(0x1, b"next")
    splits = list(range(1, 20)) + [len(whole) // 2, len(whole) - 1, len(whole)]
    if len(whole) < 600:
        splits = list(range(1, len(whole) + 1))
    message = payload.decode() if opcode == 0x1 else payload
    expected = []
    for split in splits:
        data = whole + after
        connection.dataReceived(data[:split])
        connection.dataReceived(data[split:])
        expected += [message, "next"]
    await until(lambda: len(receives(events)) == len(expected))
    got = [text if text is not None else data for _, text, data in receives(events)]
    assert got == expected
    client.transport.write(frame(0x8, (1000).to_bytes(2, "big")))
    assert await closed_with(client, events) == 1000


@pytest_twisted.ensureDeferred
async def test_frames_fed_one_byte_at_a_time_are_each_received_once(serve):
    client, events, connection = await opened(serve)
    data = frame(0x1, b"a" * 200) + frame(0x9, b"p") + frame(0x2, b"\x01\x02") + frame(0x1, b"")
    for at in range(len(data)):
        connection.dataReceived(data[at : at + 1])
    await until(lambda: len(receives(events)) == 3)
    assert receives(events) == [
        ("receive", "a" * 200, None),
        ("receive", None, b"\x01\x02"),
        ("receive", "", None),
    ]
    await until(lambda: (0xA, b"p") in server_frames(client.data))


@pytest_twisted.ensureDeferred
async def test_a_large_message_in_many_socket_reads_then_more_frames(serve):
    client, events, _ = await opened(serve)
    big = os.urandom(150_000)
    data = frame(0x2, big) + frame(0x1, b"after") + frame(0x2, b"")
    for at in range(0, len(data), 7_000):
        client.transport.write(data[at : at + 7_000])
    await until(lambda: len(receives(events)) == 3)
    assert receives(events) == [
        ("receive", None, big),
        ("receive", "after", None),
        ("receive", None, b""),
    ]
    await until(lambda: len(server_frames(client.data)) == 3)
    assert server_frames(client.data) == [(0x2, big), (0x1, b"after"), (0x2, b"")]


# control frames and fragments between plain frames


@pytest_twisted.ensureDeferred
async def test_ping_pong_and_fragments_between_plain_frames_keep_their_order(serve):
    client, events, _ = await opened(serve)
    client.transport.write(
        frame(0x1, b"one")
        + frame(0x9, b"ping!")
        + frame(0x2, b"two")
        + frame(0xA, b"unasked pong")
        + frame(0x1, b"thr", fin=False)
        + frame(0x9, b"mid")
        + frame(0x0, b"ee")
        + frame(0x1, b"four")
        + frame(0x8, (1000).to_bytes(2, "big"))
        + frame(0x1, b"after close")
    )
    await client.done
    await until(lambda: [e for e in events if e[0] == "disconnect"])
    assert events == [
        ("receive", "one", None),
        ("receive", None, b"two"),
        ("receive", "three", None),
        ("receive", "four", None),
        ("disconnect", 1000),
    ]
    answered = server_frames(client.data)
    assert (0xA, b"ping!") in answered and (0xA, b"mid") in answered
    assert answered[-1] == (0x8, (1000).to_bytes(2, "big"))


# bad frames: the same close code as autobahn's parser gives, after the good ones


BAD_FRAMES = {
    "reserved-bit-1": (frame(0x1, b"x", rsv=4), 1002),
    "reserved-bit-3": (frame(0x2, b"x", rsv=1), 1002),
    "unmasked": (frame(0x1, b"x", masked=False), 1002),
    "reserved-data-opcode": (frame(0x3, b"x"), 1002),
    "reserved-control-opcode": (frame(0xB, b"x"), 1002),
    "continuation-outside-a-message": (frame(0x0, b"x"), 1002),
    "fragmented-ping": (frame(0x9, b"x", fin=False), 1002),
    "long-16bit-length-for-5-bytes": (frame(0x1, b"hello", length_bytes=2), 1002),
    "long-64bit-length-for-300-bytes": (frame(0x2, b"x" * 300, length_bytes=8), 1002),
    "invalid-utf8": (frame(0x1, b"ok\xff"), 1007),
    "utf8-surrogate": (frame(0x1, b"\xed\xa0\x80"), 1007),
    "utf8-overlong": (frame(0x1, b"\xc0\xaf"), 1007),
    "utf8-cut-short": (frame(0x1, "é".encode()[:1]), 1007),
    "invalid-utf8-large": (frame(0x1, b"a" * 100_000 + b"\xff"), 1007),
    "over-max-message-size": (frame(0x2, b"x" * 200_001), 1009),
}


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(("bad", "code"), BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
async def test_a_bad_frame_after_good_ones_closes_with_autobahns_code(serve, bad, code):
    client, events, _ = await opened(serve)
    client.transport.write(frame(0x1, b"good") + frame(0x2, b"\x00") + bad + frame(0x1, b"never"))
    assert await closed_with(client, events) == code
    assert receives(events) == [("receive", "good", None), ("receive", None, b"\x00")]


@pytest_twisted.ensureDeferred
async def test_a_bad_large_text_frame_split_across_reads_closes_with_1007(serve):
    client, events, connection = await opened(serve)
    data = frame(0x1, b"fine") + frame(0x1, "é".encode() * 40_000 + b"\xc3")
    for at in range(0, len(data), 9_999):
        connection.dataReceived(data[at : at + 9_999])
    assert await closed_with(client, events) == 1007
    assert receives(events) == [("receive", "fine", None)]


@pytest_twisted.ensureDeferred
async def test_a_frame_half_read_when_the_server_closes_goes_to_autobahn_as_before(serve):
    client, events, connection = await opened(serve)
    data = frame(0x2, b"z" * 50_000) + frame(0x8, (1000).to_bytes(2, "big"))
    connection.dataReceived(data[:20_000])
    connection.close(4000)
    connection.dataReceived(data[20_000:])
    await client.done
    await until(lambda: [e for e in events if e[0] == "disconnect"])
    assert events == [("receive", None, b"z" * 50_000), ("disconnect", 4000)]
    assert server_frames(client.data)[-1] == (0x8, (4000).to_bytes(2, "big"))


@pytest_twisted.ensureDeferred
async def test_a_frame_trickled_in_tiny_reads_is_held_in_about_its_own_size(serve):
    # A frame within max_message_size whose reads come two bytes at a time
    # (a slow client, each read a fresh bytes object): what is held while it
    # is gathered must stay near the frame's size, not grow by an object per
    # read (a list of the reads held some 20 times the frame: 16 MiB frames
    # would pin hundreds of MiB per connection).
    client, events, connection = await opened(serve)
    payload = os.urandom(120_000)
    data = frame(0x2, payload)
    reads = [bytes(data[at : at + 2]) for at in range(0, len(data) - 2, 2)]
    last = data[len(reads) * 2 :]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for read in reads:
            connection.dataReceived(read)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del reads
    assert held < 2 * len(data), f"{held} bytes held while gathering a {len(data)}-byte frame"
    connection.dataReceived(last)
    await until(lambda: len(receives(events)) == 1)
    assert receives(events) == [("receive", None, payload)]


def test_header_incomplete_only_for_the_start_of_a_plain_frames_header():
    whole = frame(0x2, b"x" * 70_000)  # a 64-bit length: 14 header bytes
    assert all(header_incomplete(whole[:n], 0) for n in range(1, 14))
    assert not header_incomplete(whole[:14], 0)
    assert header_incomplete(b"zz" + frame(0x1, b"y" * 300)[:7], 2)
    assert not header_incomplete(frame(0x9, b"p")[:1], 0)  # a ping: autobahn's
    assert not header_incomplete(frame(0x1, b"u", masked=False)[:2], 0)
    assert not header_incomplete(b"", 0)


@pytest_twisted.ensureDeferred
async def test_a_send_from_a_thread_cancelled_before_it_ran_is_not_sent(serve, logged):
    # concurrent.futures semantics: cancel() returning True means the call
    # will not run. The thread sends, cancels, sends again while the reactor
    # thread is held (joined below), so the cancel lands before the send ran.
    client, _, connection = await opened(serve)
    ws = connection.endpoint
    cancelled: list[bool] = []

    def sends() -> None:
        cancelled.append(ws.send(text_data="cancelled").cancel())
        ws.send(text_data="kept")

    thread = threading.Thread(target=sends)
    thread.start()
    thread.join(10)  # on the reactor thread: nothing of the thread's ran yet
    assert cancelled == [True]
    await until(lambda: server_frames(client.data))
    assert server_frames(client.data) == [(0x1, b"kept")]
    failures = [event for event in logged if event.get("log_failure") is not None]
    assert not failures, failures[0]["log_failure"]


@pytest_twisted.ensureDeferred
async def test_a_header_half_read_when_the_server_closes_goes_to_autobahn_as_before(serve):
    client, events, connection = await opened(serve)
    data = frame(0x1, b"y" * 300) + frame(0x8, (1000).to_bytes(2, "big"))
    connection.dataReceived(data[:3])  # half of the 16-bit length
    assert connection._header is not None, "the start of the header waits in houweb"
    connection.close(4000)
    connection.dataReceived(data[3:])
    await client.done
    await until(lambda: [e for e in events if e[0] == "disconnect"])
    assert events == [("receive", "y" * 300, None), ("disconnect", 4000)]


@pytest_twisted.ensureDeferred
async def test_an_oversize_header_trickled_a_byte_at_a_time_closes_with_1009_at_once(serve):
    client, events, connection = await opened(serve)
    for byte in frame(0x2, b"x" * 200_001)[:14]:  # the header only: no payload follows
        connection.dataReceived(bytes([byte]))
    assert await closed_with(client, events) == 1009
    assert connection._frame is None and connection._header is None and not receives(events)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(
    ("bad", "code"),
    [BAD_FRAMES[name] for name in ("unmasked", "reserved-bit-1", "long-16bit-length-for-5-bytes")],
    ids=["unmasked", "reserved-bit-1", "long-16bit-length-for-5-bytes"],
)
async def test_a_bad_frame_fed_a_byte_at_a_time_closes_with_autobahns_code(serve, bad, code):
    client, events, connection = await opened(serve)
    for byte in frame(0x1, b"good") + bad:
        connection.dataReceived(bytes([byte]))
    assert await closed_with(client, events) == code
    assert receives(events) == [("receive", "good", None)]


@pytest_twisted.ensureDeferred
async def test_a_client_gone_before_answering_the_close_logs_no_error(serve, logged):
    # The server closes (here with a frame half read); the client resets the
    # connection instead of answering. autobahn leaves its close handshake
    # timer running after the connection is lost; when it fires, houweb's
    # handler asked the gone socket how much the client took (AttributeError,
    # logged as an unhandled error in autobahn's timer bucket).
    client, events, connection = await opened(serve)
    connection.dataReceived(frame(0x2, b"z" * 5_000)[:1_000])
    connection.close(4000)
    await until(lambda: any(op == 8 for op, _ in server_frames(client.data)))
    assert connection.closeHandshakeTimeoutCall is not None
    client.transport.abortConnection()
    await until(lambda: [e for e in events if e[0] == "disconnect"])
    await until(lambda: connection.closeHandshakeTimeoutCall is None)  # it fired (1 s)
    assert events == [("disconnect", 4000)]
    failures = [event for event in logged if event.get("log_failure") is not None]
    assert not failures, failures[0]["log_failure"]


@pytest_twisted.ensureDeferred
async def test_a_fragment_trickled_in_tiny_reads_is_held_in_about_its_own_size(serve):
    # A fragment (FIN clear) is autobahn's to read, and autobahn keeps a list
    # of the unmasked piece of each read: two bytes per read made it hold
    # some 21 times the payload. houweb holds such reads back until 64 KiB
    # or the rest of the payload came.
    client, events, connection = await opened(serve)
    payload = os.urandom(120_000)
    data = frame(0x2, payload, fin=False) + frame(0x0, b"!")
    reads = [bytes(data[at : at + 2]) for at in range(0, len(data), 2)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for read in reads[: len(reads) - 4]:
            connection.dataReceived(read)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 2 * len(data), f"{held} bytes held while reading a {len(data)}-byte fragment"
    for read in reads[len(reads) - 4 :]:
        connection.dataReceived(read)
    await until(lambda: len(receives(events)) == 1)
    assert receives(events) == [("receive", None, payload + b"!")]


@pytest.mark.parametrize("opcode", [0x1, 0x2], ids=["text", "binary"])
@pytest_twisted.ensureDeferred
async def test_echoes_either_side_of_the_joined_send_size_come_back_as_minimal_frames(
    serve, opcode
):
    # Payloads up to _JOIN_BELOW go out joined to their header in one send,
    # larger ones as two pieces: each size must reach the client as one
    # frame with its length minimally encoded, in the order sent.
    from houweb._websocket import _JOIN_BELOW

    client, events, _ = await opened(serve)
    sizes = [0, 1, 125, 126, _JOIN_BELOW - 1, _JOIN_BELOW, _JOIN_BELOW + 1, 65535, 65536]
    payloads = [(b"ab" * 40_000)[:size] for size in sizes]
    expected = b""
    for payload in payloads:
        client.transport.write(frame(opcode, payload))
        size = len(payload)
        if size < 126:
            head = bytes([0x80 | opcode, size])
        elif size < 0x10000:
            head = bytes([0x80 | opcode, 126]) + size.to_bytes(2, "big")
        else:
            head = bytes([0x80 | opcode, 127]) + size.to_bytes(8, "big")
        expected += head + payload
    await until(lambda: len(client.data) >= len(expected))
    assert client.data == expected
    client.transport.write(frame(0x8, (1000).to_bytes(2, "big")))
    assert await closed_with(client, events) == 1000


@pytest_twisted.ensureDeferred
async def test_an_open_websocket_is_read_without_twisteds_log_context_also_after_a_pause(
    serve, monkeypatch
):
    # The loop calls the reactor's read of an open WebSocket's socket
    # directly (no callWithLogger and log context per read); pausing reading
    # (receive() behind) gives the socket back to Twisted's registration,
    # and resuming takes it again.
    import inspect

    from houweb._websocket import _Connection

    through_logger: list[bool] = []
    original = _Connection.dataReceived

    def spy(self: Any, data: bytes) -> None:
        through_logger.append(any(f.function == "callWithLogger" for f in inspect.stack(0)))
        original(self, data)

    monkeypatch.setattr(_Connection, "dataReceived", spy)
    client, events, connection = await opened(serve)
    client.transport.write(frame(0x1, b"one"))
    await until(lambda: len(receives(events)) == 1)
    connection._read(False)  # paused, as when receive() is behind
    connection._read(True)
    client.transport.write(frame(0x1, b"two"))
    await until(lambda: len(receives(events)) == 2)
    assert through_logger[0] is True  # the handshake, read before the WebSocket is open
    assert through_logger[-2:] == [False, False]
    assert [op for op, _ in server_frames(client.data)] == [1, 1]
    client.transport.write(frame(0x8, (1000).to_bytes(2, "big")))
    assert await closed_with(client, events) == 1000


@pytest_twisted.ensureDeferred
async def test_an_error_while_reading_an_open_websocket_is_logged_and_loses_it(
    serve, monkeypatch, logged
):
    # Read directly by the reactor's _readOrWrite: an exception out of the
    # protocol is still logged and the connection lost (disconnect(1006)),
    # and the server goes on serving.
    from houweb._websocket import _Connection

    original = _Connection.dataReceived

    def failing(self: Any, data: bytes) -> None:
        if b"\x81\x85" in data:  # a 5-byte text frame
            raise RuntimeError("broken protocol")
        original(self, data)

    monkeypatch.setattr(_Connection, "dataReceived", failing)
    client, events, connection = await opened(serve)
    port = connection.transport.getHost().port
    client.transport.write(frame(0x1, b"boom!"))
    await client.done
    await until(lambda: [e for e in events if e[0] == "disconnect"])
    assert [e for e in events if e[0] == "disconnect"] == [("disconnect", 1006)]
    assert any("broken protocol" in str(e.get("log_failure", "")) for e in logged)
    again = await connect_raw(port)
    again.transport.write(ws_handshake("/echo"))
    await until(lambda: b"\r\n\r\n" in again.data)
    assert again.data.startswith(b"HTTP/1.1 101 ")
    again.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_a_resume_meeting_the_loops_closed_handle_leaves_no_reader_for_the_next_socket(
    serve, monkeypatch
):
    # On uvloop, add_reader for a socket whose poll handle the loop closed
    # (an error on it) raises RuntimeError: HouwebReactor.addReader then
    # drops the handle and loses the connection, and Twisted never counts
    # the transport as a reader. The direct registration made after the
    # resume must not go on regardless: Twisted's removeReader (the
    # connection lost) skips a reader it does not count, so the loop kept
    # reading the closed fd, and the next connection given that fd number
    # was never read (its request never answered).
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor
    from twisted.internet.defer import Deferred

    gate: Deferred[None] = Deferred()
    instances: list[Any] = []

    @houweb.webSocket("/held")
    class Held(houweb.WebSocket):
        max_pending_receive = 1  # the first message pauses reading until taken

        async def connect(self, request):
            instances.append(self)
            await self.accept()

        async def receive(self, text_data=None, bytes_data=None):
            await gate

    houweb.urlHandler("/hello")(lambda request: houweb.Response("hi", content_type="text/plain"))
    server = await serve()
    port = server.port_numbers()[0]
    client = await connect_raw(port)
    client.transport.write(ws_handshake("/held"))
    await until(lambda: b"\r\n\r\n" in client.data)
    client.transport.write(frame(0x1, b"x"))
    await until(lambda: instances and instances[0]._houweb_connection._reading_paused)
    transport = instances[0]._houweb_connection.transport
    fd = transport.fileno()
    add_reader = AsyncioSelectorReactor.addReader

    def closed_handle(reactor: Any, reader: Any) -> None:
        if reader is transport:  # as uvloop's add_reader on its closed handle
            raise RuntimeError("unable to perform operation on <UVPoll closed=True>")
        add_reader(reactor, reader)

    monkeypatch.setattr(AsyncioSelectorReactor, "addReader", closed_handle)
    gate.callback(None)  # receive() ends: reading resumes
    await until(lambda: not server.site.houweb_connections)
    monkeypatch.setattr(AsyncioSelectorReactor, "addReader", add_reader)
    again = await connect_raw(port)
    await until(lambda: server.site.houweb_connections)
    (channel,) = server.site.houweb_connections
    assert channel.transport.fileno() == fd  # the lowest free number: the same
    again.transport.write(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await until(lambda: again.data.endswith(b"\r\n\r\nhi"), timeout=5)
    again.transport.loseConnection()


# large frames: read straight into one buffer, which is kept for the next


def no_spares(connection: Any) -> None:
    """Drop the buffers kept by earlier tests (they are kept per reactor)."""
    while connection.factory.spares.take(SPARE_LEAST) is not None:
        pass


async def gathered(client: Any, connection: Any, data: bytes) -> None:
    """Send ``data`` (a large frame) so that the server gathers it: its start, then the rest."""
    client.transport.write(data[:500])
    await until(lambda: connection._frame is not None)
    client.transport.write(data[500:])


def reads_into_frame(connection: Any) -> bool:
    """Whether the server connection's transport reads straight into the frame gathered."""
    # (once aborted, the instance holds Twisted's doRead that reads nothing)
    return vars(connection.transport).get("doRead") == connection._read_into_frame


async def begun(serve: Any, size: int = 150_000) -> tuple[Any, list[Any], Any, bytes, bytes]:
    """
    A connection whose server reads a large binary frame straight into its
    buffer (its first 1,000 bytes sent): the client, its events, the server
    side, the frame's payload and the whole frame (send the rest from 1,000).
    """
    client, events, connection = await opened(serve)
    payload = os.urandom(size)
    data = frame(0x2, payload)
    client.transport.write(data[:1_000])
    await until(lambda: connection._frame is not None and reads_into_frame(connection))
    return client, events, connection, payload, data


@pytest_twisted.ensureDeferred
async def test_a_large_frame_is_read_from_the_socket_straight_into_its_buffer(serve):
    # The client writes the start of a frame, then (once the server gathers
    # it) the rest together with the next frame: the direct reads stop at the
    # frame's end and Twisted's own read takes what follows.
    client, events, connection, payload, data = await begun(serve)
    client.transport.write(data[1_000:90_000])
    client.transport.write(data[90_000:] + frame(0x1, b"next"))
    await until(lambda: len(receives(events)) == 2)
    assert receives(events) == [("receive", None, payload), ("receive", "next", None)]
    await until(lambda: len(server_frames(client.data)) == 2)
    assert server_frames(client.data) == [(0x2, payload), (0x1, b"next")]
    assert connection._frame is None and not reads_into_frame(connection)


@pytest_twisted.ensureDeferred
async def test_a_kept_buffer_longer_than_the_next_frame_delivers_that_frame_only(serve):
    client, events, connection = await opened(serve)
    no_spares(connection)
    first, second = os.urandom(180_000), os.urandom(70_000)
    await gathered(client, connection, frame(0x2, first))
    await until(lambda: len(receives(events)) == 1)
    assert connection.factory.spares.held == len(frame(0x2, first)), "its buffer is kept"
    data = frame(0x2, second)
    client.transport.write(data[:500])  # gathered in the kept 180 KB buffer
    await until(lambda: connection._frame is not None)
    assert len(connection._frame.buffer) > len(data)
    client.transport.write(data[500:])
    await until(lambda: len(receives(events)) == 2)
    assert receives(events)[1] == ("receive", None, second)
    await until(lambda: len(server_frames(client.data)) == 2)
    assert server_frames(client.data)[1] == (0x2, second)


@pytest_twisted.ensureDeferred
async def test_invalid_utf8_in_a_large_text_frame_in_a_kept_buffer_closes_with_1007(serve):
    client, events, connection = await opened(serve)
    no_spares(connection)
    await gathered(client, connection, frame(0x2, b"b" * 190_000))
    await until(lambda: len(receives(events)) == 1)
    assert connection.factory.spares.held
    data = frame(0x1, "é".encode() * 40_000 + b"\xc3")
    client.transport.write(data[:300])
    await until(lambda: connection._frame is not None)
    client.transport.write(data[300:])
    assert await closed_with(client, events) == 1007
    assert len(receives(events)) == 1


@pytest_twisted.ensureDeferred
async def test_a_header_announcing_a_large_frame_reserves_little(serve):
    # 20 bytes (a 14-byte header) announcing the largest frame allowed reserve
    # 4 KiB, not the 190 KB announced: a client reserves at most four times
    # what it sent, or GATHER_FIRST.
    client, events, connection = await opened(serve)
    no_spares(connection)
    connection.dataReceived(frame(0x2, b"x" * 190_000)[:20])
    assert connection._frame is not None and len(connection._frame.buffer) == GATHER_FIRST


def test_a_gathering_doubles_its_buffer_up_to_the_frame_and_copies_what_came():
    data = frame(0x2, os.urandom(300_000))
    gathering = Gathering(data[:10], len(data))
    assert len(gathering.buffer) == GATHER_FIRST
    at = 10
    sizes = []
    while not gathering.whole:
        room = gathering.room()
        count = min(len(room), 50_000)
        room[:count] = data[at : at + count]
        room.release()
        gathering.received(count)
        at += count
        sizes.append(len(gathering.buffer))
    assert bytes(gathering.buffer) == data
    doublings = [GATHER_FIRST]
    while 2 * doublings[-1] < len(data):
        doublings.append(2 * doublings[-1])
    assert sorted(set(sizes)) == [*doublings, len(data)]


def test_spare_buffers_give_the_smallest_that_fits_and_keep_no_more_than_their_limit():
    spares = SpareBuffers(keep=1_000, least=100)
    for size in (600, 300, 200):
        spares.give(bytearray(size))
    assert spares.held == 900  # 200 did not fit beside the others
    assert len(spares.take(250) or b"") == 300 and spares.held == 600
    assert spares.take(700) is None
    big = bytearray(2_000)
    spares.give(big)
    assert spares.take(1_500) is None, "a buffer over the limit is not kept"


def test_spare_buffers_keep_no_small_buffer_nor_give_one_to_a_small_frame():
    # small frames split between reads would otherwise fill the limit with
    # tiny buffers, each frame's take() scanning all of them
    spares = SpareBuffers(keep=SPARE_BYTES)
    for _ in range(10_000):
        spares.give(bytearray(100))
    assert spares.held == 0
    spares.give(bytearray(SPARE_LEAST))
    assert spares.take(SPARE_LEAST - 1) is None, "a small frame gets a buffer of its own"
    assert len(spares.take(SPARE_LEAST) or b"") == SPARE_LEAST and spares.held == 0


@pytest_twisted.ensureDeferred
async def test_a_websocket_is_counted_open_until_it_closes(serve):
    client, events, connection = await opened(serve)
    factory = connection.factory
    before = factory.open_connections
    assert before >= 1
    client.transport.write(frame(0x8, (1000).to_bytes(2, "big")))
    await client.done
    await until(lambda: [e for e in events if e[0] == "disconnect"])
    assert factory.open_connections == before - 1


def test_the_buffers_kept_go_when_the_last_websocket_closes():
    # Kept per reactor, the buffers would outlive the server (an embedding
    # application's process runs on): the last WebSocket to close takes them.
    from twisted.internet import reactor

    from houweb._websocket import _Factory

    factory = _Factory(reactor)
    factory.connection_opened()
    factory.connection_opened()
    factory.spares.give(bytearray(SPARE_LEAST))
    factory.connection_closed()
    assert factory.spares.held == SPARE_LEAST, "one is still open: the buffers stay"
    factory.connection_closed()
    assert factory.spares.held == 0 and factory.open_connections == 0


# the count of open WebSockets that the kept buffers go with (real sockets)


@pytest_twisted.ensureDeferred
async def test_the_buffers_a_large_frame_left_go_when_its_websocket_closes(serve):
    # End to end: a delivered large frame's buffer is kept while the
    # WebSocket is open, and goes (the count back to 0) when it closes.
    client, events, connection = await opened(serve)
    factory = connection.factory
    assert factory.open_connections == 1, "a count left over from earlier WebSockets"
    payload = os.urandom(150_000)
    await gathered(client, connection, frame(0x2, payload))
    await until(lambda: receives(events))
    assert factory.spares.held >= len(payload)
    client.transport.write(frame(0x8, (1000).to_bytes(2, "big")))
    await client.done
    await until(lambda: [e for e in events if e[0] == "disconnect"])
    assert factory.open_connections == 0 and factory.spares.held == 0


@pytest_twisted.ensureDeferred
async def test_a_server_stopped_with_websockets_open_keeps_no_buffers(serve):
    events: list[Any] = []
    instances: list[Any] = []
    houweb.webSocket("/echo")(type("Echo", (Recorder,), {"events": events, "instances": instances}))
    server = await serve()
    clients = []
    for _ in range(2):
        raw = await connect_raw(server.port_numbers()[0])
        raw.transport.write(ws_handshake("/echo"))
        await until(lambda raw=raw: b"\r\n\r\n" in raw.data)
        clients.append(raw)
    connection = instances[0]._houweb_connection
    factory = connection.factory
    assert factory.open_connections == 2
    await gathered(clients[0], connection, frame(0x2, os.urandom(150_000)))
    await until(lambda: receives(events))
    assert factory.spares.held > 0
    # a second large frame is being gathered (in the buffer kept, taken) and
    # another buffer is kept when the server stops
    clients[0].transport.write(frame(0x2, os.urandom(150_000))[:1_000])
    await until(lambda: connection._frame is not None)
    factory.spares.give(bytearray(SPARE_LEAST))
    await server.shutdown()
    for raw in clients:
        await raw.done
    await until(lambda: factory.open_connections == 0)
    assert factory.spares.held == 0


@pytest_twisted.ensureDeferred
async def test_a_connect_that_times_out_its_handshake_is_not_counted_open(serve, monkeypatch):
    entered = asyncio.Event()
    release = asyncio.Event()
    events: list[Any] = []

    @houweb.webSocket("/slow")
    class Slow(houweb.WebSocket):
        async def connect(self, request):
            entered.set()
            await release.wait()

        async def disconnect(self, code):
            events.append(("disconnect", code))

    server = await serve()
    from houweb._websocket import _factory

    factory = _factory(server.context.reactor)
    monkeypatch.setattr(factory, "openHandshakeTimeout", 1.5)  # truncated to 1 s
    raw = await connect_raw(server.port_numbers()[0])
    raw.transport.write(ws_handshake("/slow"))
    await until(entered.is_set)
    assert factory.open_connections == 1
    await raw.done  # the handshake timed out: the server dropped it
    release.set()
    await until(lambda: factory.open_connections == 0)
    assert factory.spares.held == 0


@pytest_twisted.ensureDeferred
async def test_clearing_the_kept_buffers_while_a_frame_is_gathered_keeps_that_frame(serve):
    client, events, connection = await opened(serve)
    no_spares(connection)
    connection.factory.spares.give(bytearray(200_000))
    payload = os.urandom(150_000)
    data = frame(0x2, payload)
    client.transport.write(data[:500])
    await until(lambda: connection._frame is not None)
    connection.factory.spares.clear()
    client.transport.write(data[500:])
    await until(lambda: receives(events))
    assert receives(events) == [("receive", None, payload)]
