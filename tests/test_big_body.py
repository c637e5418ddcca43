"""
Large response bodies (houweb/_big_body.py): a large API result held in
pieces and a large bytes body, sent a slice at a time as the client takes
them, over real sockets: whole and byte-exact, to slow readers, over TLS,
across pipelined requests and for HEAD; freed when the client leaves; other
clients answered meanwhile.
"""

from __future__ import annotations

import gc
import json
import sys
import weakref
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, reactor, ssl
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS

import houweb
from houweb import _big_body, _channel
from houweb._big_body import LARGE, SLICE, BodyProducer, PiecedResponse

from .support import connect_raw, raw_request
from .test_tls import self_signed

#: More than loopback's socket buffers hold, so the body is still being sent
#: while a client that does not read waits.
BIG = 24 * 1024 * 1024 + 7
ROWS = [
    {"id": i, "name": f"item {i}", "value": i * 0.25, "tags": ["a", "é"]} for i in range(60_000)
]
ROWS_JSON = json.dumps(ROWS, allow_nan=False).encode()


def split(raw: bytes) -> tuple[bytes, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return head, body


def length(head: bytes) -> int:
    """:returns: the Content-Length of a response's head."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            return int(value)
    raise AssertionError(f"no Content-Length in {head!r}")


def api_call(name: str, *, method: bytes = b"POST", close: bool = True) -> bytes:
    body = json.dumps([name, [], {}]).encode()
    return (
        method + b" /api HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n%s\r\n" % (len(body), b"Connection: close\r\n" if close else b"")
    ) + body


def get(path: str, *, method: bytes = b"GET", close: bool = False) -> bytes:
    return method + b" %s HTTP/1.1\r\nHost: localhost\r\n%s\r\n" % (
        path.encode(),
        b"Connection: close\r\n" if close else b"",
    )


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, tuple[bytes, ...]]]:
    """Every ``(transport, pieces)`` the HTTP channel hands to its transport during the test."""
    seen: list[tuple[Any, tuple[bytes, ...]]] = []
    real = _channel.write_now

    def spy(transport: Any, *pieces: bytes) -> None:
        seen.append((transport, pieces))
        real(transport, *pieces)

    monkeypatch.setattr(_channel, "write_now", spy)
    return seen


class ProducerEvents:
    """Deferreds fired the first time a :class:`BodyProducer` is paused or stopped."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paused: defer.Deferred[None] = defer.Deferred()
        self.stopped: defer.Deferred[None] = defer.Deferred()
        self.producers: list[weakref.ref[BodyProducer]] = []
        real_init, real_pause = BodyProducer.__init__, BodyProducer.pauseProducing
        real_stop = BodyProducer.stopProducing
        events = self

        def init(producer: BodyProducer, *args: Any) -> None:
            events.producers.append(weakref.ref(producer))
            real_init(producer, *args)

        def pause(producer: BodyProducer) -> None:
            real_pause(producer)
            if not events.paused.called:
                events.paused.callback(None)

        def stop(producer: BodyProducer) -> None:
            real_stop(producer)
            if not events.stopped.called:
                events.stopped.callback(None)

        monkeypatch.setattr(BodyProducer, "__init__", init)
        monkeypatch.setattr(BodyProducer, "pauseProducing", pause)
        monkeypatch.setattr(BodyProducer, "stopProducing", stop)


@pytest.fixture
def producer_events(monkeypatch: pytest.MonkeyPatch) -> ProducerEvents:
    return ProducerEvents(monkeypatch)


@pytest.fixture
def no_gc() -> Any:
    """The cyclic garbage collector off for the test: only reference counts free objects."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()


def serve_rows() -> None:
    @houweb.apiFunction("f")
    def rows(request: houweb.Request) -> list[dict[str, Any]]:
        return ROWS


@pytest_twisted.ensureDeferred
async def test_a_large_api_result_arrives_whole_and_byte_exact(serve):
    serve_rows()
    port = (await serve()).port_numbers()[0]
    head, body = split(await raw_request(port, api_call("f.rows")))
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert length(head) == len(ROWS_JSON)
    assert b"Content-Type: application/json" in head
    assert body == ROWS_JSON


@pytest_twisted.ensureDeferred
async def test_a_large_api_result_reaches_the_transport_in_pieces_not_one_buffer(serve, writes):
    # Before: one 4 MB write, whose unsent rest was copied into the
    # transport's buffer on the reactor thread.
    serve_rows()
    port = (await serve()).port_numbers()[0]
    head, body = split(await raw_request(port, api_call("f.rows")))
    assert body == ROWS_JSON
    sizes = [len(piece) for _, pieces in writes for piece in pieces]
    assert max(sizes) <= SLICE and sum(sizes) > len(ROWS_JSON)


@pytest_twisted.ensureDeferred
async def test_a_large_bytes_body_reaches_the_transport_in_slices(serve, writes):
    data = bytes(range(256)) * (BIG // 256) + b"end"
    houweb.urlHandler("/big")(lambda request: houweb.Response(data, content_type="x/y"))
    port = (await serve()).port_numbers()[0]
    head, body = split(await raw_request(port, get("/big", close=True)))
    assert length(head) == len(data) and body == data
    assert max(len(piece) for _, pieces in writes for piece in pieces) <= SLICE


@pytest_twisted.ensureDeferred
async def test_a_slow_reader_gets_every_byte_with_little_buffered_for_it(
    serve, writes, producer_events
):
    data = b"0123456789abcdef" * (BIG // 16)
    houweb.urlHandler("/big")(lambda request: houweb.Response(data, content_type="x/y"))
    port = (await serve()).port_numbers()[0]
    raw = await connect_raw(port)
    raw.transport.pauseProducing()  # reads nothing until told
    raw.transport.write(get("/big", close=True))
    await producer_events.paused
    # The producer waits for the client: only what the socket buffers took
    # and about the transport's buffer size are out of the pieces.
    transport = writes[-1][0]
    buffered = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    assert buffered <= transport.bufferSize + SLICE
    assert sum(len(p) for _, pieces in writes for p in pieces) < BIG // 2
    raw.transport.resumeProducing()
    head, body = split(await raw.done)
    assert head.startswith(b"HTTP/1.1 200 OK") and body == data


@pytest_twisted.ensureDeferred
async def test_another_client_is_answered_while_a_large_body_is_being_sent(
    serve, client, producer_events
):
    serve_rows()
    data = b"x" * BIG
    houweb.urlHandler("/big")(lambda request: houweb.Response(data, content_type="x/y"))
    houweb.urlHandler("/hello")(lambda request: "hello")
    port = (await serve()).port_numbers()[0]
    raw = await connect_raw(port)
    raw.transport.pauseProducing()
    raw.transport.write(get("/big", close=True))
    await producer_events.paused  # mid-body, waiting for the client
    assert (await client.get(port, "/hello")).body == b"hello"
    assert json.loads((await client.post(port, "/api", data={"json": '["f.rows", [], {}]'})).body)
    raw.transport.resumeProducing()
    head, body = split(await raw.done)
    assert body == data


@pytest_twisted.ensureDeferred
async def test_pipelined_requests_around_large_bodies_are_answered_in_order(serve):
    serve_rows()
    data = b"y" * (LARGE * 3 + 1)
    houweb.urlHandler("/big")(lambda request: houweb.Response(data, content_type="x/y"))
    houweb.urlHandler("/small")(lambda request: "small")
    port = (await serve()).port_numbers()[0]
    raw = await raw_request(
        port,
        api_call("f.rows", close=False)
        + get("/small")
        + get("/big")
        + get("/big", method=b"HEAD")
        + get("/small", close=True),
    )
    head, rest = split(raw)
    assert head.startswith(b"HTTP/1.1 200") and rest[: len(ROWS_JSON)] == ROWS_JSON
    head, rest = split(rest[len(ROWS_JSON) :])
    assert length(head) == 5 and rest[:5] == b"small"
    head, rest = split(rest[5:])
    assert rest[: len(data)] == data
    head, rest = split(rest[len(data) :])
    assert length(head) == len(data)  # HEAD: no body
    head, rest = split(rest)
    assert length(head) == 5 and rest == b"small"


@pytest.mark.parametrize("pieced", [False, True])
@pytest_twisted.ensureDeferred
async def test_head_of_a_large_body_gives_its_length_without_it(serve, pieced):
    data = b"z" * BIG
    if pieced:
        pieces = [data[i : i + 100_000] for i in range(0, BIG, 100_000)]
        houweb.urlHandler("/big")(lambda request: PiecedResponse(pieces, content_type="x/y"))
    else:
        houweb.urlHandler("/big")(lambda request: houweb.Response(data, content_type="x/y"))
    port = (await serve()).port_numbers()[0]
    raw = await raw_request(port, get("/big", method=b"HEAD") + get("/nope", close=True))
    head, rest = split(raw)
    assert head.startswith(b"HTTP/1.1 200") and length(head) == BIG
    assert rest.startswith(b"HTTP/1.1 404")


@pytest_twisted.ensureDeferred
async def test_an_http_1_0_client_gets_a_large_body_and_a_close(serve):
    serve_rows()
    port = (await serve()).port_numbers()[0]
    call = json.dumps(["f.rows", [], {}]).encode()
    raw = await raw_request(
        port,
        b"POST /api HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        % len(call)
        + call,
    )
    head, body = split(raw)
    assert head.startswith(b"HTTP/1.0 200 OK") and body == ROWS_JSON


def dechunk(body: bytes) -> bytes:
    """:returns: the data of a chunked body (which must end with its last chunk)."""
    data = []
    while True:
        size, _, body = body.partition(b"\r\n")
        if int(size, 16) == 0:
            assert body == b"\r\n"
            return b"".join(data)
        data.append(body[: int(size, 16)])
        assert body[int(size, 16) : int(size, 16) + 2] == b"\r\n"
        body = body[int(size, 16) + 2 :]


@pytest_twisted.ensureDeferred
async def test_a_large_chunked_body_arrives_whole(serve):
    data = bytes(range(256)) * (LARGE // 128) + b"end"

    def chunked(request: houweb.Request) -> houweb.Response:
        response = houweb.Response(data, content_type="x/y")
        response.setHeader("Transfer-Encoding", "chunked")
        return response

    houweb.urlHandler("/chunked")(chunked)
    port = (await serve()).port_numbers()[0]
    head, body = split(await raw_request(port, get("/chunked", close=True)))
    assert b"\r\nTransfer-Encoding: chunked" in head and b"Content-Length" not in head
    assert dechunk(body) == data


@pytest_twisted.ensureDeferred
async def test_a_large_api_result_arrives_byte_exact_over_tls(serve, tmp_path):
    serve_rows()
    key, cert = self_signed(tmp_path)
    server = await serve(listen=[f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"])
    trust = ssl.Certificate.loadPEM(open(cert, "rb").read())
    agent = Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=trust))
    response = await treq.post(
        f"https://localhost:{server.port_numbers()[1]}/api",
        json.dumps(["f.rows", [], {}]).encode(),
        headers={"Content-Type": ["application/json"]},
        agent=agent,
    )
    assert await response.content() == ROWS_JSON


@pytest_twisted.ensureDeferred
async def test_a_client_leaving_mid_body_frees_the_body(serve, client, producer_events, no_gc):
    data = b"L" * BIG
    before = sys.getrefcount(data)
    responses: list[weakref.ref[houweb.Response]] = []

    def big(request: houweb.Request) -> houweb.Response:
        response = houweb.Response(data, content_type="x/y")
        responses.append(weakref.ref(response))
        return response

    houweb.urlHandler("/big")(big)
    houweb.urlHandler("/hello")(lambda request: "still here")
    port = (await serve()).port_numbers()[0]
    raw = await connect_raw(port)
    raw.transport.pauseProducing()
    raw.transport.write(get("/big"))
    await producer_events.paused
    assert sys.getrefcount(data) > before  # held while it is due
    raw.transport.abortConnection()
    await producer_events.stopped
    assert sys.getrefcount(data) == before
    assert (await client.get(port, "/hello")).body == b"still here"
    assert responses[0]() is None and producer_events.producers[0]() is None


@pytest_twisted.ensureDeferred
async def test_a_client_leaving_mid_result_frees_the_pieced_result(
    serve, client, producer_events, no_gc, monkeypatch
):
    made: list[weakref.ref[PiecedResponse]] = []

    class Watched(PiecedResponse):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(weakref.ref(self))

    from houweb import _api_wire

    monkeypatch.setattr(_api_wire, "PiecedResponse", Watched)

    @houweb.apiFunction("f")
    def rows(request: houweb.Request) -> list[dict[str, Any]]:
        return ROWS * 8  # more than the socket buffers hold

    port = (await serve()).port_numbers()[0]
    raw = await connect_raw(port)
    raw.transport.pauseProducing()
    raw.transport.write(api_call("f.rows", close=False))
    await producer_events.paused
    raw.transport.abortConnection()
    await producer_events.stopped
    houweb.urlHandler("/hello")(lambda request: "still here")
    assert (await client.get(port, "/hello")).body == b"still here"
    assert len(made) == 1 and made[0]() is None
    assert producer_events.producers[0]() is None


def test_a_pieced_response_is_a_response_with_its_body_in_pieces():
    response = PiecedResponse([b"[1, ", b"", b"2]"], content_type="application/json")
    assert response.body() == b"[1, 2]" and response.contentLength() == 6
    assert response.contentType() == "application/json" and response.status() == 200
    assert "6 bytes in 3 pieces" in repr(response)
    response.setBody("replaced", "text/plain")
    assert _big_body.body_pieces(response) == [b"replaced"]
    assert response.contentLength() == 8 and response.contentType() == "text/plain"
    assert _big_body.body_pieces(houweb.Response(b"plain")) == [b"plain"]
