"""
The bytes of a complete in-memory answer, written in one go by
``HouwebRequest.houweb_answer``, are those twisted.web's ``setResponseCode``,
``setHeader``, ``write`` and ``finish`` send for it (Date aside, which changes
every second), for every kind of answer and connection; each parses with a
strict client (h11); and a header cannot split the response.
"""

from __future__ import annotations

import re
import socket
import threading
from typing import Any

import pytest_twisted
from twisted.internet import defer, reactor, threads
from twisted.web import server as web_server

import houweb
from houweb import _render
from houweb._channel import HouwebRequest

from .support import raw_request
from .test_dispatch import until
from .test_response_writes import _responses

#: Requests sent on one connection, pipelined: (method, bytes).
PIPELINED = [
    ("GET", b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    ("HEAD", b"HEAD /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    ("GET", b"GET /nocontent HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    ("HEAD", b"HEAD /nocontent HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    ("GET", b"GET /notmodified HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    ("GET", b"GET /cookies HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    ("GET", b"GET /override HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    ("GET", b"GET /empty HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    ("HEAD", b"HEAD /empty HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    ("GET", b"GET /created HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    ("GET", b"GET /unicode HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    ("GET", b"GET /framing HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    ("GET", b"GET /nowhere HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    ("POST", b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nabcde"),
    ("GET", b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
]
#: Requests each sent on a connection of its own (the server closes it).
ALONE = [
    ("GET", b"GET /hello HTTP/1.0\r\nHost: localhost\r\n\r\n"),
    ("GET", b"GET /hello HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n"),
    ("HEAD", b"HEAD /hello HTTP/1.0\r\nHost: localhost\r\n\r\n"),
    ("GET", b"GET /nocontent HTTP/1.0\r\nHost: localhost\r\n\r\n"),
    ("GET", b"GET /cookies HTTP/1.1\r\nHost: localhost\r\nConnection: Close\r\n\r\n"),
    ("GET", b"GET /chunked HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
]


def _register() -> None:
    houweb.urlHandler("/hello")(lambda request: houweb.Response("hi", content_type="text/plain"))
    houweb.urlHandler("/nocontent")(lambda request: houweb.Response("ignored", 204))
    houweb.urlHandler("/notmodified")(lambda request: houweb.Response("ignored", 304))
    houweb.urlHandler("/empty")(lambda request: houweb.Response(""))
    houweb.urlHandler("/created")(lambda request: houweb.Response(b"{}", 201, "application/json"))

    @houweb.urlHandler("/cookies")
    def cookies(request: houweb.Request) -> houweb.Response:
        response = houweb.Response("c", content_type="text/plain")
        response.setCookie("a", "1")
        response.setCookie("b", "2", path="/")
        response.addHeader("X-Repeat", "one")
        response.addHeader("x-repeat", "two")
        return response

    @houweb.urlHandler("/override")
    def override(request: houweb.Request) -> houweb.Response:
        response = houweb.Response("o", content_type="text/x-mine")
        response.setHeader("Server", "mine/1")
        response.setHeader("Date", "Thu, 01 Jan 1970 00:00:00 GMT")
        return response

    @houweb.urlHandler("/unicode")
    def unicode(request: houweb.Request) -> houweb.Response:
        response = houweb.Response("ü", content_type="text/plain; charset=utf-8")
        response.setHeader("X-Name", "Zoë")
        return response

    @houweb.urlHandler("/framing")
    def framing(request: houweb.Request) -> houweb.Response:
        response = houweb.Response("framed", content_type="text/plain")
        response.setHeader("Content-Length", "999")
        return response

    @houweb.urlHandler("/chunked")
    def chunked(request: houweb.Request) -> houweb.Response:
        response = houweb.Response("in chunks", content_type="text/plain")
        response.setHeader("transfer-encoding", " Chunked ")
        return response

    @houweb.urlHandler("/echo")
    def echo(request: houweb.Request) -> houweb.Response:
        return houweb.Response(request.body(), content_type="application/octet-stream")


def _normalised(data: bytes) -> bytes:
    """``data`` with twisted.web's Date values (which change every second) blanked."""
    return re.sub(rb"\r\nDate: (?!Thu, 01 Jan 1970)[^\r]*", b"\r\nDate: -", data)


async def _exchanges(port: int) -> list[bytes]:
    """:returns: what the server sent for the pipelined requests, then for each alone."""
    answers = [await raw_request(port, b"".join(payload for _, payload in PIPELINED))]
    for _, payload in ALONE:
        answers.append(await raw_request(port, payload))
    return answers


@pytest_twisted.ensureDeferred
async def test_answers_written_in_one_go_are_the_bytes_twisted_web_writes(serve, monkeypatch):
    _register()
    taken: list[bool] = []
    at_once = _render._write_at_once

    def counted(request: Any, response: houweb.Response) -> bool:
        taken.append(at_once(request, response))
        return taken[-1]

    monkeypatch.setattr(_render, "_write_at_once", counted)
    direct = await _exchanges((await serve()).port_numbers()[0])
    # Every answer here went the direct way but the chunked one.
    assert taken.count(True) == len(taken) - 1 and taken[-1] is False, taken
    monkeypatch.setattr(_render, "_write_at_once", lambda request, response: False)
    through_twisted = await _exchanges((await serve()).port_numbers()[0])
    assert [_normalised(d) for d in direct] == [_normalised(d) for d in through_twisted]


@pytest_twisted.ensureDeferred
async def test_each_answer_parses_with_a_strict_client_and_says_what_twisted_web_would(serve):
    _register()
    port = (await serve()).port_numbers()[0]
    pipelined, *alone = await _exchanges(port)
    answers = _responses(pipelined, [method for method, _ in PIPELINED])
    assert [status for status, _, _ in answers] == [
        200, 200, 204, 204, 304, 200, 200, 200, 200, 201, 200, 200, 404, 200, 200
    ]  # fmt: skip
    hello, head, nocontent, _, notmodified, cookies, override, empty, head_empty = answers[:9]
    assert hello[2] == b"hi" and hello[1][b"content-length"] == b"2"
    assert hello[1][b"server"] == b"houweb" and hello[1][b"content-type"] == b"text/plain"
    assert head[2] == b"" and head[1][b"content-length"] == b"2"
    assert nocontent[2] == b"" and b"content-length" not in nocontent[1]
    assert notmodified[2] == b"" and b"content-length" not in notmodified[1]
    assert empty[1][b"content-length"] == b"0" and head_empty[1][b"content-length"] == b"0"
    cookie_lines = re.findall(rb"Set-Cookie: ([ab])=", pipelined)
    assert cookie_lines == [b"a", b"b"]  # both, in order
    assert b"\r\nX-Repeat: one\r\nX-Repeat: two\r\n" in pipelined
    assert override[1][b"server"] == b"mine/1"
    assert override[1][b"date"] == b"Thu, 01 Jan 1970 00:00:00 GMT"
    assert override[1][b"content-type"] == b"text/x-mine"
    assert pipelined.count(b"\r\nServer: ") == len(PIPELINED)  # HEAD and 204 answers too
    unicode, framing = answers[10], answers[11]
    assert unicode[1][b"x-name"] == "Zoë".encode() and unicode[2] == "ü".encode()
    assert framing[1][b"content-length"] == b"6" and framing[2] == b"framed"
    assert answers[-1][1][b"connection"] == b"close"
    for (method, _), data in zip(ALONE, alone):
        [(status, headers, body)] = _responses(data, [method])
        assert status in (200, 204)
    assert alone[0].startswith(b"HTTP/1.0 200 OK\r\n") and b"Connection:" not in alone[0]
    assert alone[1].startswith(b"HTTP/1.0 200 OK\r\n") and b"Connection:" not in alone[1]
    assert alone[2].endswith(b"\r\n\r\n") and b"Content-Length: 2\r\n" in alone[2]
    assert b"\r\nConnection: close\r\n" in alone[4]
    [(_, chunked, body)] = _responses(alone[5], ["GET"])
    assert chunked[b"transfer-encoding"] == b"chunked" and body == b"in chunks"


@pytest_twisted.ensureDeferred
async def test_an_answer_in_progress_at_shutdown_closes_its_connection_as_before(
    serve, monkeypatch
):
    # stopWhenIdle with a request in flight: the answer goes out whole, then
    # the connection closes; a request already waiting behind it is not read.
    entered: list[str] = []
    release = threading.Event()

    @houweb.urlHandler("/slow")
    def slow(request: houweb.Request) -> houweb.Response:
        entered.append(request.path())
        release.wait(10)
        return houweb.Response("done", content_type="text/plain")

    results = []
    for direct in (True, False):
        if not direct:
            monkeypatch.setattr(_render, "_write_at_once", lambda request, response: False)
        server = await serve()
        port = server.port_numbers()[0]
        release.clear()
        entered.clear()
        sent = defer.ensureDeferred(
            raw_request(
                port,
                b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n"
                b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n",
            )
        )
        await until(lambda: len(entered) == 1)
        for channel in server.site.houweb_connections:
            channel.stopWhenIdle()
        reactor.callLater(0, release.set)
        results.append(_normalised(await sent))
        await threads.deferToThread(lambda: None)
    assert results[0] == results[1]
    [(status, _, body)] = _responses(results[0], ["GET"])
    assert status == 200 and body == b"done" and len(entered) == 1


@pytest_twisted.ensureDeferred
async def test_a_header_value_with_a_line_break_cannot_split_the_response(serve):
    # Response.setHeader refuses CR and LF; were one to slip through (a
    # header list edited by hand), the value is still sent on one line, as
    # twisted.web does: no second header, no second response.
    @houweb.urlHandler("/split")
    def split(request: houweb.Request) -> houweb.Response:
        response = houweb.Response("first", content_type="text/plain")
        response._headers.append(
            (
                "X-Note",
                "a\r\nX-Injected: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged",
            )
        )
        return response

    port = (await serve()).port_numbers()[0]
    data = await raw_request(
        port,
        b"GET /split HTTP/1.1\r\nHost: localhost\r\n\r\n"
        b"GET /split HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    answers = _responses(data, ["GET", "GET"])
    assert [(status, body) for status, _, body in answers] == [(200, b"first"), (200, b"first")]
    assert all(b"x-injected" not in headers for _, headers, _ in answers)
    assert data.count(b"HTTP/1.1 200 OK\r\n") == 2  # the forged one is inside a header line
    assert answers[0][1][b"x-note"] == b"a X-Injected: 1  HTTP/1.1 200 OK Content-Length: 6  forged"


@pytest_twisted.ensureDeferred
async def test_a_control_character_in_a_header_is_refused_when_set_not_sent(serve):
    # NUL, VT, DEL... in a value (a Content-Type too) made an answer no strict
    # client could parse; a name with a trailing newline passed the token
    # check ("$" matches before it) and failed only when the answer was
    # written. Each is refused by setHeader, whose caller then gets the error.
    refused: list[str] = []

    def attempt(name: str, value: str) -> None:
        try:
            houweb.Response("x", content_type="text/plain").setHeader(name, value)
        except ValueError as exc:
            refused.append(str(exc))

    for name, value in [
        ("X-A", "a\x00b"),
        ("X-A", "a\x0bb"),
        ("X-A", "a\x7fb"),
        ("Content-Type", "text/plain\x00"),
        ("X-A\n", "v"),
    ]:
        attempt(name, value)
    assert len(refused) == 5, refused
    assert "control character" in refused[0] and "invalid header name" in refused[-1]
    cookie = houweb.Response("x")
    for name, value in [("sid\n", "v"), ("sid", "v\n")]:
        try:
            cookie.setCookie(name, value)
        except ValueError as exc:
            refused.append(str(exc))
    assert "invalid cookie name" in refused[5] and "cannot hold" in refused[6]

    @houweb.urlHandler("/tab")
    def tab(request: houweb.Request) -> houweb.Response:
        response = houweb.Response("t", content_type="text/plain")
        response.setHeader("X-Tab", "a\tb é")  # HTAB and text past ASCII are fine
        return response

    @houweb.urlHandler("/nul")
    def nul(request: houweb.Request) -> houweb.Response:
        return houweb.Response("n", content_type="text/plain\x00")

    port = (await serve()).port_numbers()[0]
    data = await raw_request(
        port,
        b"GET /tab HTTP/1.1\r\nHost: localhost\r\n\r\n"
        b"GET /nul HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    answers = _responses(data, ["GET", "GET"])
    assert answers[0][1][b"x-tab"] == "a\tb é".encode() and answers[0][2] == b"t"
    assert answers[1][0] == 500 and b"\x00" not in data


@pytest_twisted.ensureDeferred
async def test_pipelined_requests_wait_while_their_client_does_not_read(serve):
    # 60 requests of 40 bytes for a 1 MB answer, sent at once by a client
    # that does not read: twisted.web parsed and answered each as soon as
    # the one before was finished, queueing every answer in memory (60 MB).
    # Now the next request waits for the transport to drain; once the
    # client reads, every answer arrives, in order.
    calls: list[int] = []
    body = b"x" * 1_000_000

    @houweb.urlHandler("/large")
    def large(request: houweb.Request) -> houweb.Response:
        calls.append(len(calls))
        return houweb.Response(body + str(len(calls)).encode(), content_type="text/plain")

    server = await serve()
    port = server.port_numbers()[0]
    count = 60
    payload = b"GET /large HTTP/1.1\r\nHost: localhost\r\n\r\n" * (count - 1)
    payload += b"GET /large HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    connection = socket.create_connection(("127.0.0.1", port))
    connection.sendall(payload)
    await until(lambda: len(server.site.houweb_connections) == 1)
    [channel] = server.site.houweb_connections
    await until(lambda: channel._waitingForTransport and not channel.requests)
    transport = channel.transport
    buffered = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    # (the kernel's socket buffers take a few answers before the transport's fills)
    assert buffered < 3 * len(body) and len(calls) < count // 2, (buffered, len(calls))

    def read_all() -> bytes:
        connection.settimeout(30)
        chunks = []
        while chunk := connection.recv(1 << 20):
            chunks.append(chunk)
        connection.close()
        return b"".join(chunks)

    data = await threads.deferToThread(read_all)
    answers = _responses(data, ["GET"] * count)
    assert [answer[2][-3:].lstrip(b"x") for answer in answers] == [
        str(n).encode() for n in range(1, count + 1)
    ]


@pytest_twisted.ensureDeferred
async def test_whether_the_connection_stays_open_is_the_servers_and_what_it_says(
    serve, monkeypatch, tmp_path
):
    # A handler's Connection header replaced the server's: "keep-alive" on a
    # connection the server then closed (the client asked to close, HTTP/1.0,
    # shutdown) told the client to send its next request on it; "close" on
    # one the server kept open. Now only "close" is taken from a handler, and
    # the server then closes; the same on both write paths, files included.
    document = tmp_path / "page.txt"
    document.write_bytes(b"page")

    @houweb.urlHandler("/stay")
    def stay(request: houweb.Request) -> houweb.Response:
        response = houweb.Response("stay", content_type="text/plain")
        response.setHeader("Connection", "keep-alive")
        return response

    @houweb.urlHandler("/leave")
    def leave(request: houweb.Request) -> houweb.Response:
        response = houweb.Response("leave", content_type="text/plain")
        response.setHeader("connection", "Upgrade, Close")
        return response

    @houweb.urlHandler("/leave-file")
    def leave_file(request: houweb.Request) -> houweb.Response:
        response = houweb.Response(str(document), content_type="text/plain", is_file_name=True)
        response.setHeader("Connection", "close")
        return response

    exchanges = [
        b"GET /stay HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        b"GET /stay HTTP/1.0\r\nHost: localhost\r\n\r\n",
        b"GET /leave HTTP/1.1\r\nHost: localhost\r\n\r\nGET /stay HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET /leave-file HTTP/1.1\r\nHost: localhost\r\n\r\n"
        b"GET /stay HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ]
    results = []
    for direct in (True, False):
        if not direct:
            monkeypatch.setattr(_render, "_write_at_once", lambda request, response: False)
        port = (await serve()).port_numbers()[0]
        results.append([_normalised(await raw_request(port, payload)) for payload in exchanges])
    assert results[0] == results[1]
    closed, old, left, left_file = results[0]
    assert closed.count(b"\r\nConnection: close\r\n") == 1 and b"keep-alive" not in closed
    assert b"Connection:" not in old and b"keep-alive" not in old
    for data, body in ((left, b"leave"), (left_file, b"page")):
        # answered, said so, closed: the request behind it is not read
        [(status, headers, received)] = _responses(data, ["GET", "GET"])
        assert (status, received, headers[b"connection"]) == (200, body, b"close")
        assert data.count(b"HTTP/1.1 200 OK") == 1


@pytest_twisted.ensureDeferred
async def test_a_1xx_answer_has_no_body_and_closes_its_connection(serve):
    # Response allows 100..599 and "no body is sent for 1xx": twisted.web
    # sent a 1xx chunked, whose "0\r\n\r\n" a client reads as the start of
    # the next answer. It goes without a body, and the connection closes
    # (a client that got a 1xx still waits for a final answer).
    @houweb.urlHandler("/early")
    def early(request: houweb.Request) -> houweb.Response:
        response = houweb.Response("ignored", 103, content_type="text/plain")
        response.addHeader("Link", "</style.css>; rel=preload")
        return response

    port = (await serve()).port_numbers()[0]
    data = await raw_request(
        port,
        b"GET /early HTTP/1.1\r\nHost: localhost\r\n\r\n"
        b"GET /early HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 103 Early Hints\r\n") and rest == b"", data
    assert b"\r\nConnection: close\r\n" in head + b"\r\n"
    assert b"Transfer-Encoding" not in head and b"Content-Length" not in head


@pytest_twisted.ensureDeferred
async def test_an_answer_in_progress_at_shutdown_says_the_connection_closes(serve):
    # stopWhenIdle with a request in flight closed the connection after its
    # answer without the answer saying so: a client would send its next
    # request on it, to have it dropped. The answer now carries
    # "Connection: close", on both write paths.
    entered: list[str] = []
    release = threading.Event()

    @houweb.urlHandler("/slow")
    def slow(request: houweb.Request) -> houweb.Response:
        entered.append(request.path())
        release.wait(10)
        return houweb.Response("done", content_type="text/plain")

    server = await serve()
    port = server.port_numbers()[0]
    sent = defer.ensureDeferred(raw_request(port, b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n"))
    await until(lambda: len(entered) == 1)
    for channel in server.site.houweb_connections:
        channel.stopWhenIdle()
    reactor.callLater(0, release.set)
    data = await sent
    [(status, headers, body)] = _responses(data, ["GET"])
    assert (status, body, headers.get(b"connection")) == (200, b"done", b"close")


@pytest_twisted.ensureDeferred
async def test_houweb_process_sends_the_headers_twisted_webs_process_sends(serve, monkeypatch):
    # HouwebRequest.process sets Server and Date itself (the date formatted
    # once a second): every answer is the bytes twisted.web's own
    # Request.process gives it (Date's value aside: the second may change).
    _register()
    own = await _exchanges((await serve()).port_numbers()[0])

    def twisted_process(web_request: HouwebRequest) -> None:
        web_request.channel.site.houweb_track(web_request)
        web_server.Request.process(web_request)

    monkeypatch.setattr(HouwebRequest, "process", twisted_process)
    theirs = await _exchanges((await serve()).port_numbers()[0])
    assert [_normalised(d) for d in own] == [_normalised(d) for d in theirs]
    assert all(data.count(b"\r\nDate: ") == data.count(b"HTTP/1.") for data in own)
