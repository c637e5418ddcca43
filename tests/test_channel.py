"""The connection: request-size limits before and while the body arrives (spec §11.3)."""

from __future__ import annotations

import pytest_twisted

import houweb

from .support import connect_raw, raw_request, sleep


async def start(serve, calls, **arguments) -> int:
    @houweb.urlHandler("/up")
    def up(request):
        calls.append(len(request.body()))
        return houweb.Response(f"got {len(request.body())}")

    return (await serve(**arguments)).port_numbers()[0]


@pytest_twisted.ensureDeferred
async def test_an_announced_oversize_body_gets_413_before_100_continue(serve):
    calls = []
    port = await start(serve, calls, max_request_size=1000)
    reply = await raw_request(
        port,
        b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1001\r\nExpect: 100-continue\r\n\r\n",
    )
    assert reply.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n")
    assert b"100 Continue" not in reply
    assert b"request body exceeds the maximum request size of 1000 bytes" in reply
    assert calls == []


@pytest_twisted.ensureDeferred
async def test_a_body_at_the_limit_is_accepted_after_100_continue(serve):
    calls = []
    port = await start(serve, calls, max_request_size=1000)
    conn = await connect_raw(port)
    conn.transport.write(
        b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n"
        b"Connection: close\r\n\r\n"
    )
    for _ in range(500):
        if b"100 Continue" in conn.data:
            break
        await sleep(0.01)
    assert conn.data.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    conn.transport.write(b"x" * 1000)
    reply = await conn.done
    assert b"HTTP/1.1 200 OK" in reply and reply.endswith(b"got 1000")
    assert calls == [1000]


@pytest_twisted.ensureDeferred
async def test_a_chunked_body_crossing_the_limit_is_cut_off_with_413(serve):
    calls = []
    port = await start(serve, calls, max_request_size=1000)
    chunk = b"%x\r\n%s\r\n" % (600, b"y" * 600)
    reply = await raw_request(
        port,
        b"POST /up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3,
    )
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b"maximum request size of 1000 bytes" in reply
    assert calls == []


@pytest_twisted.ensureDeferred
async def test_a_chunked_body_under_the_limit_is_served(serve):
    calls = []
    port = await start(serve, calls, max_request_size=1000)
    chunk = b"%x\r\n%s\r\n" % (300, b"y" * 300)
    reply = await raw_request(
        port,
        b"POST /up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + chunk * 3
        + b"0\r\n\r\n",
    )
    assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"got 900")


@pytest_twisted.ensureDeferred
async def test_an_oversize_api_call_gets_a_json_413(serve):
    port = await start(serve, [], max_request_size=10)
    reply = await raw_request(
        port, b"POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\n\r\nxxxxxxxxxxx"
    )
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b"Content-Type: application/json" in reply
    assert reply.endswith(b'{"error": "request body exceeds the maximum request size of 10 bytes"}')


@pytest_twisted.ensureDeferred
async def test_a_body_longer_than_its_content_length_leaves_the_rest_as_the_next_request(
    serve,
):
    calls = []
    port = await start(serve, calls)
    reply = await raw_request(
        port,
        b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabcGARBAGE\r\n\r\n",
    )
    assert reply.startswith(b"HTTP/1.1 200 OK") and b"got 3" in reply
    assert b"HTTP/1.1 400 Bad Request" in reply
    assert calls == [3]


@pytest_twisted.ensureDeferred
async def test_a_body_shorter_than_its_content_length_is_a_408_after_the_request_timeout(
    serve, client
):
    calls = []
    port = await start(serve, calls, request_timeout=0.5)
    reply = await raw_request(
        port, b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nabc", timeout=10
    )
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert calls == []
    assert (await client.post(port, "/up", data=b"fine")).body == b"got 4"


@pytest_twisted.ensureDeferred
async def test_the_server_keeps_serving_after_each_rejection(serve, client):
    calls = []
    port = await start(serve, calls, max_request_size=10)
    for _ in range(3):
        reply = await raw_request(
            port, b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\n\r\nxxxxxxxxxxx"
        )
        assert reply.startswith(b"HTTP/1.1 413 ")
    assert (await client.post(port, "/up", data=b"ok")).body == b"got 2"
