"""One server's lifecycle: binding, warnings, graceful shutdown (spec §3.1, §3.2)."""

from __future__ import annotations

import re
import socket
import sys
import threading

import pytest
import pytest_twisted
from twisted.internet import defer, error, reactor
from twisted.web._newclient import ResponseNeverReceived

import houweb
from houweb._config import ServerConfig
from houweb._server import RunningServer

from .conftest import messages
from .support import connect_raw
from .test_dispatch import until


def busy_port() -> socket.socket:
    """A socket listening on a free loopback port, for the test to collide with."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest_twisted.ensureDeferred
async def test_busy_main_port_raises_operation_failed_naming_it(registry):
    blocker = busy_port()
    port = blocker.getsockname()[1]
    try:
        server = RunningServer(ServerConfig.from_arguments(port=port), reactor, registry)
        with pytest.raises(houweb.OperationFailed, match=f"port {port} .*address already in use"):
            await server.start()
        assert server.port_numbers() == []
    finally:
        blocker.close()


@pytest_twisted.ensureDeferred
async def test_a_server_that_failed_to_start_leaves_nothing_attached_to_its_registry(registry):
    """
    A server follows its registry's lifecycles (an ASGI app registered while
    it runs): a start that fails (a busy port; a bridge retrying) never shuts
    down, and its listener kept every failed server (site, pool) for as long
    as the registry, each told of every later ASGI app.
    """
    blocker = busy_port()
    port = blocker.getsockname()[1]
    try:
        for _ in range(3):
            server = RunningServer(ServerConfig.from_arguments(port=port), reactor, registry)
            with pytest.raises(houweb.OperationFailed, match="address already in use"):
                await server.start()
        assert registry._lifecycle_listeners == []
    finally:
        blocker.close()


def test_a_server_refused_for_want_of_the_mcp_sdk_leaves_nothing_attached(registry, monkeypatch):
    """run(mcp=True) without the MCP SDK: the half-made server is not held by its registry."""
    monkeypatch.setitem(sys.modules, "houweb._mcp", None)  # what a missing SDK makes of the import
    with pytest.raises(houweb.OperationFailed, match="needs the MCP Python SDK"):
        RunningServer(ServerConfig.from_arguments(port=0, mcp=True), reactor, registry)
    assert registry._lifecycle_listeners == []


@pytest_twisted.ensureDeferred
async def test_busy_extra_port_closes_the_main_port_again(registry):
    blocker = busy_port()
    taken = blocker.getsockname()[1]
    free = busy_port()
    main = free.getsockname()[1]
    free.close()
    try:
        server = RunningServer(
            ServerConfig.from_arguments(port=main, ports=[taken]), reactor, registry
        )
        with pytest.raises(houweb.OperationFailed, match=f"port {taken}"):
            await server.start()
        assert not listening(main)
    finally:
        blocker.close()


@pytest_twisted.ensureDeferred
async def test_port_zero_and_extra_ports_are_reported_in_order(serve):
    server = await serve(ports=[0, 0], listen=["tcp:0:interface=127.0.0.1"])
    numbers = server.port_numbers()
    assert len(set(numbers)) == 4 and all(numbers)
    assert numbers[0] == server.context.main_port


@pytest_twisted.ensureDeferred
async def test_nothing_registered_starts_warns_and_answers_404(serve, client, logged):
    port = (await serve()).port_numbers()[0]
    assert "nothing is registered" in messages(logged)
    assert (await client.get(port, "/")).status == 404


@pytest_twisted.ensureDeferred
async def test_start_up_log_names_each_url_and_its_reach(serve, logged):
    server = await serve(ports=[0])
    for port in server.port_numbers():
        assert f"listening on http://127.0.0.1:{port}/ (loopback only)" in messages(logged)


class Blocking:
    """A handler that blocks until released; registered as URL handler and API function."""

    def __init__(self, path: str, answer: str) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

        def blocks(request: houweb.Request) -> str:
            self.entered.set()
            self.release.wait(60)
            return answer

        houweb.urlHandler(path)(blocks)
        houweb.apiFunction()(blocks)


@pytest_twisted.ensureDeferred
async def test_in_flight_request_completes_after_shutdown_and_new_ones_are_refused(serve, client):
    slow = Blocking("/slow", "finished")
    entered, release = slow.entered, slow.release
    server = await serve()
    port = server.port_numbers()[0]
    reply = defer.ensureDeferred(client.get(port, "/slow"))
    await until(entered.is_set)
    stopped = server.shutdown()
    await until(lambda: not listening(port))  # shutdown has begun: no longer accepting
    with pytest.raises(error.ConnectError):
        await client.get(port, "/slow")
    assert not stopped.called  # it waits for the handler, which is still blocked
    release.set()
    assert (await reply).text == "finished"
    await stopped


@pytest.mark.parametrize(
    ("path", "body", "named"),
    [
        ("/stuck?x=1", None, r"URL handler tests\.test_server\.\S+\.blocks \(POST /stuck, "),
        (
            "/api",
            b'["blocks", [], {}]',
            r"API function blocks \(tests\.test_server\.\S+\.blocks\) \(POST /api, ",
        ),
    ],
)
@pytest_twisted.ensureDeferred
async def test_handler_that_never_returns_is_abandoned_and_named_after_the_grace(
    serve, client, logged, path, body, named
):
    stuck = Blocking("/stuck", "never sent")
    server = await serve(shutdown_grace=0.3)
    headers = {"Content-Type": "application/json"}
    reply = defer.ensureDeferred(
        client.post(server.port_numbers()[0], path, data=body, headers=headers)
    )
    await until(stuck.entered.is_set)
    await server.shutdown()
    stuck.release.set()
    assert "still running after the 0.3s shutdown grace" in messages(logged)
    found = re.search(f"abandoned {named}running for (\\d+\\.\\d)s\\)", messages(logged))
    assert found, messages(logged)
    assert 0.3 <= float(found.group(1)) < 30
    with pytest.raises(ResponseNeverReceived):  # its connection was dropped
        await reply


@pytest_twisted.ensureDeferred
async def test_a_running_handler_whose_client_left_is_named_when_shutdown_abandons_it(
    serve, logged
):
    left = Blocking("/left", "nobody to send it to")
    server = await serve(shutdown_grace=30)
    raw = await connect_raw(server.port_numbers()[0])
    raw.transport.write(b"GET /left HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await until(left.entered.is_set)
    raw.transport.abortConnection()
    await until(lambda: not server.site.houweb_connections)
    await server.shutdown()  # nothing to wait for: no connection is open
    left.release.set()
    assert "still running after" not in messages(logged)
    assert "abandoned URL handler tests.test_server." in messages(logged)
    assert ".blocks (GET /left, running for " in messages(logged)


@pytest_twisted.ensureDeferred
async def test_finished_raising_and_async_handlers_are_no_longer_counted_as_running(serve, client):
    houweb.urlHandler("/ok")(lambda request: "ok")

    @houweb.urlHandler("/raises")
    def raises(request):
        raise RuntimeError("boom")

    @houweb.urlHandler("/async")
    async def later(request):
        return "later"

    server = await serve()
    port = server.port_numbers()[0]
    for path, status in [("/ok", 200), ("/raises", 500), ("/async", 200)]:
        assert (await client.get(port, path)).status == status
    assert len(server.context.running) == 0


@pytest_twisted.ensureDeferred
async def test_idle_keep_alive_connections_are_closed_at_shutdown(serve, client):
    houweb.urlHandler("/hi")(lambda request: "hi")
    server = await serve()
    port = server.port_numbers()[0]
    assert (await client.get(port, "/hi")).text == "hi"
    assert len(server.site.houweb_connections) == 1
    await server.shutdown()
    await until(lambda: not server.site.houweb_connections)


@pytest_twisted.ensureDeferred
async def test_calls_still_queued_when_the_grace_runs_out_are_dropped_and_never_run(
    serve, client, logged
):
    ran: list[str] = []
    entered, release = threading.Event(), threading.Event()

    @houweb.urlHandler("/queued")
    def blocks(request: houweb.Request) -> str:
        ran.append(request.GET()["n"])
        entered.set()
        release.wait(60)
        return "late"

    server = await serve(max_num_threads=1, shutdown_grace=0.3)
    port = server.port_numbers()[0]
    replies = [defer.ensureDeferred(client.get(port, f"/queued?n={n}")) for n in range(3)]
    for reply in replies:
        reply.addErrback(lambda failure: None)  # their connections are dropped
    await until(entered.is_set)
    await until(lambda: len(server.context.running) == 3)  # one runs, two wait in the queue
    await server.shutdown()
    release.set()
    await until(lambda: not any(thread.is_alive() for thread in server.pool.threads))
    assert len(ran) == 1, ran  # the two queued calls never ran, not even after the release
    log = messages(logged)
    assert "dropped 2 queued call(s) that had not started" in log
    abandoned = re.findall(
        r"abandoned URL handler \S+ \(GET /queued, running for (\d+\.\d)s\)", log
    )
    assert len(abandoned) == 1, log  # only the call that started
    assert 0.3 <= float(abandoned[0]) < 30


@pytest_twisted.ensureDeferred
async def test_a_call_a_pool_thread_took_as_shutdown_ends_is_named_or_never_runs(
    serve, client, logged, monkeypatch
):
    # A pool thread that took a queued call but had not yet started it when
    # the grace ran out (descheduled between the two; emulated by pausing it
    # there) ran it after "stopped", and the abandoned-calls log missed it.
    from houweb import _pool

    ran: list[str] = []
    entered, release = threading.Event(), threading.Event()
    taken, go = threading.Event(), threading.Event()
    real_run, runs = _pool._run, []

    def paused_run(*call: object) -> None:
        runs.append(call)
        if len(runs) == 2:  # the queued call, taken off the queue
            taken.set()
            go.wait(30)
        real_run(*call)  # type: ignore[arg-type]

    monkeypatch.setattr(_pool, "_run", paused_run)

    @houweb.urlHandler("/first")
    def first(request: houweb.Request) -> str:
        entered.set()
        release.wait(30)
        return "first"

    @houweb.urlHandler("/second")
    def second(request: houweb.Request) -> str:
        ran.append("second")
        return "second"

    server = await serve(max_num_threads=1, shutdown_grace=0.3)
    port = server.port_numbers()[0]
    # One after the other: the pool's single thread must take /first first
    # (sent together, /second could arrive first and be the call paused).
    replies = [defer.ensureDeferred(client.get(port, "/first"))]
    await until(entered.is_set)
    replies.append(defer.ensureDeferred(client.get(port, "/second")))
    for reply in replies:
        reply.addErrback(lambda failure: None)  # the second's connection is dropped
    await until(lambda: len(server.context.running) == 2)
    release.set()
    await until(taken.is_set)
    await server.shutdown()
    go.set()
    await until(lambda: not any(thread.is_alive() for thread in server.pool.threads))
    log = messages(logged)
    if ran:  # it started before the pool stopped: then it is named
        assert re.search(r"abandoned URL handler \S+second \(GET /second", log), log
