"""Connection-level protection in the site: idle and request timeouts, max_connections."""

from __future__ import annotations

import threading
from typing import Any

import pytest_twisted
from twisted.internet import defer

import houweb
from houweb._registry import EXACT

from .conftest import messages
from .support import connect_raw, raw_request, sleep
from .test_dispatch import until

GET_AND_CLOSE = b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


async def hold(server, count):
    """:returns: ``count`` idle raw connections, once the server has them all."""
    held = [await connect_raw(server.port_numbers()[0]) for _ in range(count)]
    await until(lambda: len(server.site.houweb_connections) >= count)
    return held


@pytest_twisted.ensureDeferred
async def test_idle_connections_are_closed_after_the_idle_timeout(serve):
    server = await serve(idle_timeout=0.3)
    raw = await connect_raw(server.port_numbers()[0])
    await until(lambda: len(server.site.houweb_connections) == 1)
    assert await raw.done == b""  # closed by the server, nothing sent


def trickle(raw, data: bytes) -> bool:
    """
    Send ``data``; ``False`` if the server already closed the connection.
    Under load the close can reach the event loop (uvloop, which then
    refuses the write with RuntimeError) before Twisted calls connectionLost.
    """
    try:
        raw.transport.write(data)
    except RuntimeError:
        return False
    return True


@pytest_twisted.ensureDeferred
async def test_a_request_that_trickles_in_gets_408(serve, client):
    houweb.urlHandler("/x")(lambda request: "x")
    server = await serve(request_timeout=0.5, idle_timeout=30)
    port = server.port_numbers()[0]
    raw = await connect_raw(port)
    raw.transport.write(b"POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n")
    for _ in range(20):  # a byte every 50 ms keeps the idle timer from firing
        if raw.done.called:
            break
        if not trickle(raw, b"a"):
            break
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
        if not trickle(raw, b"X"):
            break
        await sleep(0.05)
    assert (await raw.done).startswith(b"HTTP/1.1 408 Request Timeout")


@pytest_twisted.ensureDeferred
async def test_many_idle_connections_do_not_stop_a_normal_request(serve, client):
    houweb.urlHandler("/x")(lambda request: "served")
    server = await serve(idle_timeout=1.0)
    port = server.port_numbers()[0]
    idle = await hold(server, 300)
    assert (await client.get(port, "/x")).text == "served"
    await defer.gatherResults([conn.done for conn in idle])  # all closed by the timeout


@pytest_twisted.ensureDeferred
async def test_connections_beyond_max_connections_get_503_and_the_others_are_served(serve, logged):
    houweb.urlHandler("/x")(lambda request: "served")
    server = await serve(max_connections=3)
    port = server.port_numbers()[0]
    held = await hold(server, 3)
    for _ in range(2):
        refused = await raw_request(port, b"", timeout=5)
        assert refused.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert b"Connection: close" in refused and b"too many connections" in refused
    assert messages(logged).count("3 connections open (max_connections)") == 1
    held[0].transport.write(GET_AND_CLOSE)
    assert (await held[0].done).endswith(b"\r\n\r\nserved")
    await until(lambda: len(server.site.houweb_connections) == 2)
    assert (await raw_request(port, GET_AND_CLOSE)).endswith(b"\r\n\r\nserved")
    for conn in held[1:]:
        conn.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_a_target_of_a_kind_no_houweb_module_knows_answers_for_itself(
    serve, client, registry
):
    # The router asks the target itself (Target.answer), not a table of
    # responders filled by importing houweb's modules: a new kind of target
    # needs nothing registered beside it.
    answered = []

    class Echo:
        def answer(self, call):
            answered.append(call.request.path())
            return houweb.Response(f"echo {call.match.path}")

    registry.add_path(EXACT, "/echo", [], Echo())
    server = await serve()
    response = await client.get(server.port_numbers()[0], "/echo")
    assert (response.status, response.text) == (200, "echo /echo")
    assert answered == ["/echo"]


@pytest_twisted.ensureDeferred
async def test_answers_routed_without_klein_skip_the_cancellable_deferred(
    serve, client, monkeypatch
):
    # Klein's route gets a Deferred it can cancel when the client leaves
    # (_deliver_later); the router's own render needs none: a handler's
    # answer is written and its request finished straight from it.
    from houweb._site import _Router

    delivered: list[object] = []
    real = _Router._deliver_later

    def counting(self, web_request, request, answer):
        delivered.append(request)
        return real(self, web_request, request, answer)

    monkeypatch.setattr(_Router, "_deliver_later", counting)

    @houweb.urlHandler("/hello")
    def hello(request):
        return houweb.Response("hi")

    port = (await serve()).port_numbers()[0]
    for _ in range(3):
        reply = await client.get(port, "/hello")
        assert (reply.status, reply.body) == (200, b"hi")
    assert delivered == []


@pytest_twisted.ensureDeferred
async def test_the_idle_timer_firing_while_a_request_is_answered_leaves_the_connection_open(
    serve, monkeypatch
):
    # The idle timeout is off while a request is answered; its timer is left
    # armed (a cancel and a callLater per request saved) and, should it fire
    # meanwhile, ignored: the slow answer arrives, and the connection idles
    # out only idle_timeout after it.
    from houweb._channel import HouwebChannel

    fired: list[bool] = []
    original = HouwebChannel.timeoutConnection

    def recorded(channel: HouwebChannel) -> None:
        fired.append(channel.timeOut is None)  # True: while a request is answered
        original(channel)

    monkeypatch.setattr(HouwebChannel, "timeoutConnection", recorded)
    entered: list[str] = []
    release = threading.Event()

    @houweb.urlHandler("/slow")
    def slow(request: houweb.Request) -> str:
        entered.append(request.path())
        release.wait(10)
        return "slow"

    server = await serve(idle_timeout=0.5)
    raw = await connect_raw(server.port_numbers()[0])
    raw.transport.write(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await until(lambda: entered)
    await until(lambda: fired)  # the idle timer, 0.5 s after the request arrived
    assert fired == [True] and not raw.done.called
    release.set()
    await until(lambda: raw.data.endswith(b"\r\n\r\nslow"))
    assert not raw.done.called
    answered = len(raw.data)
    assert await raw.done == raw.data[:answered]  # closed idle, nothing more sent
    assert fired == [True, False]


@pytest_twisted.ensureDeferred
async def test_requests_on_a_kept_alive_connection_arm_its_idle_timer_once(serve, monkeypatch):
    # twisted.web cancelled the idle timer when a request was read and made
    # a new one when it was answered; houweb moves the one timer on.
    from houweb._site import HouwebSite

    armed: list[float] = []
    build = HouwebSite.buildProtocol

    def counting(site: HouwebSite, address: Any) -> Any:
        channel = build(site, address)
        call_later = channel.callLater  # the site's reactor's (HTTPFactory sets it)

        def counted(period: float, function: Any, *args: Any) -> Any:
            if period == 29.5:  # the idle timeout's (not a request_timeout)
                armed.append(period)
            return call_later(period, function, *args)

        channel.callLater = counted
        return channel

    monkeypatch.setattr(HouwebSite, "buildProtocol", counting)
    houweb.urlHandler("/x")(lambda request: "x")
    server = await serve(idle_timeout=29.5)
    raw = await connect_raw(server.port_numbers()[0])
    for count in range(1, 21):
        raw.transport.write(b"GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await until(lambda: raw.data.count(b"\r\n\r\nx") == count)  # noqa: B023
    raw.transport.write(b"POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc")
    await until(lambda: raw.data.count(b"\r\n\r\nx") == 21)
    assert armed == [29.5]  # when the connection was made
    raw.transport.loseConnection()
    await raw.done
