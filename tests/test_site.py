"""Connection-level protection in the site: idle and request timeouts."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import defer

import houweb

from .support import connect_raw, sleep
from .test_dispatch import until


@pytest_twisted.ensureDeferred
async def test_idle_connections_are_closed_after_the_idle_timeout(serve):
    server = await serve(idle_timeout=0.3)
    raw = await connect_raw(server.port_numbers()[0])
    await until(lambda: len(server.site.houweb_connections) == 1)
    assert await raw.done == b""  # closed by the server, nothing sent


@pytest_twisted.ensureDeferred
async def test_a_request_that_trickles_in_gets_408(serve, client):
    houweb.urlHandler("/x")(lambda request: "x")
    server = await serve(request_timeout=0.5, idle_timeout=30)
    port = server.port_numbers()[0]
    raw = await connect_raw(port)
    raw.transport.write(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    for _ in range(20):  # a byte every 50 ms keeps the idle timer from firing
        if raw.done.called:
            break
        raw.transport.write(b"a")
        await sleep(0.05)
    answer = await raw.done
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout")
    assert b"did not arrive within 0.5 seconds" in answer
    assert (await client.get(port, "/x")).text == "x"


@pytest_twisted.ensureDeferred
async def test_a_request_whose_headers_trickle_in_gets_408(serve, client):
    houweb.urlHandler("/x")(lambda request: "x")
    server = await serve(request_timeout=0.5, idle_timeout=30)
    raw = await connect_raw(server.port_numbers()[0])
    raw.transport.write(b"GET /x HTTP/1.1\r\n")
    for _ in range(20):  # a header byte every 50 ms keeps the idle timer from firing
        if raw.done.called:
            break
        raw.transport.write(b"X")
        await sleep(0.05)
    assert (await raw.done).startswith(b"HTTP/1.1 408 Request Timeout")


@pytest_twisted.ensureDeferred
async def test_many_idle_connections_do_not_stop_a_normal_request(serve, client):
    houweb.urlHandler("/x")(lambda request: "served")
    server = await serve(idle_timeout=1.0)
    port = server.port_numbers()[0]
    idle = [await connect_raw(port) for _ in range(300)]
    await until(lambda: len(server.site.houweb_connections) >= 300)
    assert (await client.get(port, "/x")).text == "served"
    await defer.gatherResults([conn.done for conn in idle])  # all closed by the timeout
