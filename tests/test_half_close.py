"""
Clients that half-close: they send their requests, then the end of their
input (``shutdown(SHUT_WR)``, as ``nc -N`` does), and read the answers.
"""

from __future__ import annotations

import socket
import ssl
import threading

import pytest_twisted
from twisted.internet import threads
from twisted.logger import LogLevel

import houweb

from .support import connect_raw
from .test_dispatch import until
from .test_tls import self_signed
from .test_websocket import disconnects, open_raw, recorder, settled


def _send_and_half_close(port: int, payload: bytes) -> bytes:
    """
    Send ``payload``, shut the socket's sending side, and read until the
    server closes (a blocking socket, as ``nc -N``: run in a thread).

    :returns: all the server sent.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        for _ in range(10_000):
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def half_closed(port: int, payload: bytes) -> object:
    """:returns: a Deferred of :func:`_send_and_half_close`'s answer."""
    return threads.deferToThread(_send_and_half_close, port, payload)


GET = b"GET /%s HTTP/1.1\r\nHost: localhost\r\n\r\n"


def answers(data: bytes) -> list[bytes]:
    """:returns: the bodies of the (Content-Length framed) answers in ``data``, in order."""
    bodies = []
    for _ in range(100):
        if not data:
            return bodies
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        bodies.append(rest[:length])
        data = rest[length:]
    raise AssertionError("too many answers")


@pytest_twisted.ensureDeferred
async def test_a_half_closed_client_gets_the_answer_of_a_plain_handler(serve):
    houweb.urlHandler("/plain")(lambda request: houweb.Response("plain answer"))
    port = (await serve()).port_numbers()[0]
    assert answers(await half_closed(port, GET % b"plain")) == [b"plain answer"]


@pytest_twisted.ensureDeferred
async def test_a_half_closed_client_gets_the_answer_of_an_async_handler(serve):
    @houweb.urlHandler("/async")
    async def handler(request):
        return houweb.Response("async answer")

    port = (await serve()).port_numbers()[0]
    assert answers(await half_closed(port, GET % b"async")) == [b"async answer"]


@pytest_twisted.ensureDeferred
async def test_a_handler_still_running_at_the_end_of_input_is_answered_after_it(serve):
    started, gate = threading.Event(), threading.Event()

    @houweb.urlHandler("/slow")
    def slow(request):
        started.set()
        gate.wait(10)
        return houweb.Response("worth the wait")

    server = await serve()
    reply = half_closed(server.port_numbers()[0], GET % b"slow")
    await until(started.is_set)
    # The end of input reached the server while the handler runs.
    await until(lambda: any(c.houweb_input_ended for c in server.site.houweb_connections))
    gate.set()
    assert answers(await reply) == [b"worth the wait"]
    await until(lambda: not server.site.houweb_connections)


@pytest_twisted.ensureDeferred
async def test_pipelined_requests_before_the_end_of_input_are_all_answered_in_order(serve):
    @houweb.urlHandler("/n")
    def number(request):
        return houweb.Response(request.GET()["n"])

    port = (await serve()).port_numbers()[0]
    payload = b"".join(b"GET /n?n=%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % n for n in range(1, 4))
    assert answers(await half_closed(port, payload)) == [b"1", b"2", b"3"]


@pytest_twisted.ensureDeferred
async def test_a_body_cut_short_by_the_end_of_input_is_not_run_and_the_connection_closes(serve):
    calls: list[bytes] = []

    @houweb.urlHandler("/up")
    def up(request):
        calls.append(request.body())
        return houweb.Response("ran")

    server = await serve()
    port = server.port_numbers()[0]
    cut = b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nabc"
    assert await half_closed(port, cut) == b""
    # A whole request before it is answered; the one cut short is not run.
    whole = b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nok"
    assert answers(await half_closed(port, whole + cut)) == [b"ran"]
    assert calls == [b"ok"]
    await until(lambda: not server.site.houweb_connections)
    assert calls == [b"ok"]


@pytest_twisted.ensureDeferred
async def test_a_head_cut_short_by_the_end_of_input_closes_the_connection(serve):
    calls: list[str] = []
    houweb.urlHandler("/up")(lambda request: calls.append("ran") or houweb.Response("ran"))
    server = await serve()
    port = server.port_numbers()[0]
    assert await half_closed(port, b"GET /up HTTP/1.1\r\nHost: local") == b""
    assert await half_closed(port, b"") == b""
    assert calls == []
    await until(lambda: not server.site.houweb_connections)


@pytest_twisted.ensureDeferred
async def test_a_half_closed_websocket_closes_as_a_lost_connection(serve):
    events = recorder()
    server = await serve()
    connection = await open_raw(server.port_numbers()[0])
    connection.transport.loseWriteConnection()
    await connection.done
    await settled(events)
    assert disconnects(events) == [("disconnect", 1006)]
    await until(lambda: not server.site.houweb_connections and server.site.in_flight() == 0)


@pytest_twisted.ensureDeferred
async def test_a_client_gone_entirely_at_the_end_of_input_is_let_go_once_answered(
    serve, client, logged
):
    # A client that closed its socket sends the same end of input as one
    # that half-closed: its answer is written, its kernel resets the
    # connection, and the server lets it go without an error.
    entered, release = threading.Event(), threading.Event()

    @houweb.urlHandler("/slow")
    def slow(request):
        entered.set()
        release.wait(10)
        return houweb.Response("for nobody")

    server = await serve()
    port = server.port_numbers()[0]
    raw = await connect_raw(port)
    raw.transport.write(GET % b"slow")
    await until(entered.is_set)
    raw.transport.loseConnection()
    await raw.done
    await until(lambda: any(c.houweb_input_ended for c in server.site.houweb_connections))
    release.set()
    await until(lambda: not server.site.houweb_connections and server.site.in_flight() == 0)
    assert (await client.get(port, "/nothing")).status == 404
    assert [e for e in logged if e.get("log_level") in (LogLevel.error, LogLevel.critical)] == []


def _tls_send_and_half_close(
    port: int, payload: bytes, cert: str, half_close: bool = True
) -> bytes:
    """
    As :func:`_send_and_half_close`, over TLS: the TCP sending side is shut,
    without close_notify (unless ``half_close`` is false: the server closes).
    """
    context = ssl.create_default_context(cafile=cert)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            sock.sendall(payload)
            if half_close:
                socket.socket.shutdown(sock, socket.SHUT_WR)
            chunks = []
            for _ in range(10_000):
                try:
                    chunk = sock.recv(65536)
                except (ssl.SSLError, OSError):
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)


@pytest_twisted.ensureDeferred
async def test_a_tls_client_that_half_closes_is_let_go_and_the_server_goes_on(
    serve, tmp_path, logged
):
    # Twisted's TLS layer takes the end of the TCP input for a lost
    # connection (houweb's channel is not asked): the connection closes
    # cleanly and the server serves the next TLS client.
    started, gate = threading.Event(), threading.Event()

    @houweb.urlHandler("/slow", ports=[-1])
    def slow(request):
        started.set()
        gate.wait(10)
        return houweb.Response("late")

    houweb.urlHandler("/s", ports=[-1])(lambda request: houweb.Response("secure"))
    key, cert = self_signed(tmp_path)
    server = await serve(listen=[f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"])
    tls_port = server.port_numbers()[1]
    reply = threads.deferToThread(_tls_send_and_half_close, tls_port, GET % b"slow", cert)
    await until(started.is_set)
    await reply
    await until(lambda: not server.site.houweb_connections)
    gate.set()
    await until(lambda: server.site.in_flight() == 0 and len(server.context.running) == 0)
    close_get = b"GET /s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    again = await threads.deferToThread(_tls_send_and_half_close, tls_port, close_get, cert, False)
    assert answers(again) == [b"secure"]
    assert [e for e in logged if e.get("log_level") in (LogLevel.error, LogLevel.critical)] == []
