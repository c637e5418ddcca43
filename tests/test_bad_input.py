"""Malformed requests get a short 4xx, never a 500, and the server keeps serving."""

from __future__ import annotations

import pytest
import pytest_twisted

import houweb

from .support import raw_request

CASES = {
    "garbage request line": b"HELLO\r\n\r\n",
    "too many request line parts": b"GET / HTTP/1.1 extra\r\nHost: localhost\r\n\r\n",
    "unknown HTTP version": b"GET / HTTP/9.9\r\nHost: localhost\r\n\r\n",
    "header without colon": b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
    "bad content length": b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: abc\r\n\r\n",
    "two content lengths": b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "unknown transfer encoding": b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n",
    "bad chunk size": b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "bad percent encoding": b"GET /%zz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    "raw non-utf8 byte in path": b"GET /\xff HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "encoded NUL in path": b"GET /a%00b HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    "overlong utf-8 in path": b"GET /%C0%AE%C0%AE/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    "bad utf-8 in query": b"GET /echo?q=%FF HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    "header line too long": b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: "
    + b"a" * 20000
    + b"\r\n\r\n",
    "request line too long": b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "headers too large in total": b"GET / HTTP/1.1\r\n"
    + b"X-A: "
    + b"a" * 8000
    + b"\r\nX-B: "
    + b"b" * 8000
    + b"\r\nX-C: "
    + b"c" * 8000
    + b"\r\n\r\n",
}


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.") else 0


@pytest.mark.parametrize("payload", list(CASES.values()), ids=list(CASES))
@pytest_twisted.ensureDeferred
async def test_malformed_request_is_a_4xx_and_server_keeps_serving(serve, client, payload):
    houweb.urlHandler("/echo")(lambda request: "echo")
    port = (await serve()).port_numbers()[0]
    raw = await raw_request(port, payload)
    assert 400 <= status_of(raw) < 500, raw[:200]
    assert (await client.get(port, "/echo")).text == "echo"


@pytest_twisted.ensureDeferred
async def test_unknown_methods_reach_the_handler(serve):
    houweb.urlHandler("/m")(lambda request: request.method())
    port = (await serve()).port_numbers()[0]
    raw = await raw_request(
        port, b"BREW /m HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    assert status_of(raw) == 200 and raw.endswith(b"BREW")


@pytest_twisted.ensureDeferred
async def test_duplicate_headers_are_joined_not_rejected(serve):
    houweb.urlHandler("/h")(lambda request: request.headers()["Accept"])
    port = (await serve()).port_numbers()[0]
    raw = await raw_request(
        port,
        b"GET /h HTTP/1.1\r\nHost: localhost\r\nAccept: a\r\nAccept: b\r\nConnection: close\r\n\r\n",
    )
    assert status_of(raw) == 200 and raw.endswith(b"a, b")


@pytest_twisted.ensureDeferred
async def test_pipelined_requests_are_answered_in_order(serve):
    houweb.urlHandler("/p", is_prefix=True)(lambda request: request.path())
    port = (await serve(max_num_threads=4)).port_numbers()[0]
    payload = (
        b"".join(b"GET /p/%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % i for i in range(5))
        + b"GET /p/last HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    raw = await raw_request(port, payload)
    bodies = [part.split(b"\r\n\r\n", 1)[1][:7] for part in raw.split(b"HTTP/1.1 200 OK")[1:]]
    assert [b.split(b"HTTP")[0] for b in bodies] == [
        b"/p/0",
        b"/p/1",
        b"/p/2",
        b"/p/3",
        b"/p/4",
        b"/p/last",
    ]
