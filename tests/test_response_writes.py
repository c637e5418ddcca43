"""
How responses leave the channel: the status line and headers with the body
in one send, straight to the socket when the transport holds nothing, and
every response still well-formed and in order for a strict client (h11).
"""

from __future__ import annotations

import hashlib

import h11
import pytest_twisted
from twisted.internet import reactor, tcp

import houweb

from .support import connect_raw, raw_request
from .test_dispatch import until

BIG = bytes(range(256)) * (8 * 4096)  # 8 MiB: more than a socket buffer takes at once


def _register(tmp_path) -> None:
    houweb.urlHandler("/hello")(lambda request: houweb.Response("hi", content_type="text/plain"))

    @houweb.urlHandler("/echo")
    def echo(request: houweb.Request) -> houweb.Response:
        return houweb.Response(request.body(), content_type="application/octet-stream")

    @houweb.urlHandler("/chunked")
    def chunked(request: houweb.Request) -> houweb.Response:
        response = houweb.Response("in chunks", content_type="text/plain")
        response.setHeader("Transfer-Encoding", "chunked")
        return response

    houweb.urlHandler("/empty")(lambda request: houweb.Response("", 204))
    houweb.urlHandler("/big")(
        lambda request: houweb.Response(BIG, content_type="application/octet-stream")
    )
    path = tmp_path / "page.txt"
    path.write_bytes(b"file body\n" * 1000)
    houweb.urlHandler("/file")(lambda request: houweb.fileResponse(str(path)))


@pytest_twisted.ensureDeferred
async def test_a_response_is_sent_without_registering_a_writer_with_the_event_loop(
    serve, tmp_path, monkeypatch
):
    # Twisted's transport buffered every response, registered a writer with
    # the event loop and sent it on the next turn (then unregistered it): two
    # epoll_ctl calls and a turn for each response.
    _register(tmp_path)
    port = (await serve()).port_numbers()[0]
    registered: list[object] = []
    add_writer = reactor.addWriter

    def counting(writer):
        if isinstance(writer, tcp.Server):
            registered.append(writer)
        return add_writer(writer)

    monkeypatch.setattr(reactor, "addWriter", counting)
    raw = await connect_raw(port)
    raw.transport.write(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await until(lambda: raw.data.endswith(b"\r\n\r\nhi"))
    raw.transport.write(b"GET /file HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await until(lambda: raw.data.endswith(b"file body\n" * 1000))
    assert raw.data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert registered == []
    raw.transport.loseConnection()


def _responses(data: bytes, methods: list[str]) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """:returns: the responses in ``data``, parsed by h11 as a client that sent ``methods``."""
    client = h11.Connection(h11.CLIENT)
    client.receive_data(data)
    client.receive_data(b"")
    answers = []
    for method in methods:
        client.send(h11.Request(method=method, target="/", headers=[("Host", "localhost")]))
        client.send(h11.EndOfMessage())
        status, headers, body = 0, {}, b""
        while True:
            event = client.next_event()
            assert event is not h11.NEED_DATA, f"incomplete response to {method}"
            if isinstance(event, h11.Response):
                status, headers = event.status_code, dict(event.headers)
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        answers.append((status, headers, body))
        if client.our_state is h11.MUST_CLOSE or client.their_state is h11.MUST_CLOSE:
            break
        client.start_next_cycle()
    return answers


@pytest_twisted.ensureDeferred
async def test_pipelined_responses_parse_with_a_strict_client_in_order(serve, tmp_path):
    _register(tmp_path)
    port = (await serve()).port_numbers()[0]
    requests = [
        ("GET", b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        ("HEAD", b"HEAD /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        ("GET", b"GET /nowhere HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        ("GET", b"GET /chunked HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        ("GET", b"GET /empty HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        ("POST", b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nabcde"),
        ("GET", b"GET /file HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        ("GET", b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        ("GET", b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    ]
    data = await raw_request(port, b"".join(payload for _, payload in requests), timeout=30)
    answers = _responses(data, [method for method, _ in requests])
    assert [status for status, _, _ in answers] == [200, 200, 404, 200, 204, 200, 200, 200, 200]
    bodies = [body for _, _, body in answers]
    assert bodies[0] == b"hi" and bodies[1] == b"" and bodies[3] == b"in chunks"
    assert bodies[4] == b"" and bodies[5] == b"abcde" and bodies[6] == b"file body\n" * 1000
    assert hashlib.sha256(bodies[7]).digest() == hashlib.sha256(BIG).digest()
    assert bodies[8] == b"hi"
    assert answers[1][1][b"content-length"] == b"2"  # HEAD: the length, no body


@pytest_twisted.ensureDeferred
async def test_a_body_larger_than_the_socket_takes_arrives_whole(serve, tmp_path):
    _register(tmp_path)
    port = (await serve()).port_numbers()[0]
    data = await raw_request(
        port, b"GET /big HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", timeout=30
    )
    [(status, headers, body)] = _responses(data, ["GET"])
    assert status == 200 and headers[b"content-length"] == b"%d" % len(BIG)
    assert body == BIG


@pytest_twisted.ensureDeferred
async def test_nothing_written_after_the_connection_was_aborted_reaches_the_client(serve, tmp_path):
    # Twisted's abortConnection drops what the transport holds and all that
    # is written after it (the socket is reset on the next turn); a response
    # written in that turn must not leave straight on the socket instead.
    _register(tmp_path)
    server = await serve()
    raw = await connect_raw(server.port_numbers()[0])
    raw.transport.write(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await until(lambda: raw.data.endswith(b"\r\n\r\nhi"))
    [channel] = server.site.houweb_connections
    channel.transport.abortConnection()
    channel.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate")
    data = await raw.done
    assert data.endswith(b"\r\n\r\nhi"), data
