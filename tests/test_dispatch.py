"""Running handlers: the pool, async handlers, errors and debug (spec §7)."""

from __future__ import annotations

import asyncio
import threading

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.logger import LogLevel

import houweb

from .conftest import messages
from .support import connect_raw, sleep


async def until(condition, timeout: float = 10.0) -> None:
    """Wait (without blocking the reactor) until ``condition()`` is true."""
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await sleep(0.01)
    raise AssertionError("condition never became true")


@pytest_twisted.ensureDeferred
async def test_plain_handlers_run_off_the_reactor_thread(serve, client):
    threads = []

    @houweb.urlHandler("/t")
    def handler(request):
        threads.append(threading.current_thread())
        return "ok"

    port = (await serve()).port_numbers()[0]
    await client.get(port, "/t")
    assert threads and threads[0] is not threading.current_thread()
    assert threads[0].name.startswith("PoolThread-houweb")


@pytest_twisted.ensureDeferred
async def test_concurrency_is_bounded_by_max_num_threads(serve, client):
    release = threading.Event()
    lock = threading.Lock()
    state = {"active": 0, "most": 0, "started": 0}

    @houweb.urlHandler("/block")
    def block(request):
        with lock:
            state["active"] += 1
            state["started"] += 1
            state["most"] = max(state["most"], state["active"])
        release.wait(30)
        with lock:
            state["active"] -= 1
        return "done"

    server = await serve(max_num_threads=2)
    port = server.port_numbers()[0]
    replies = [client.get(port, f"/block?i={i}") for i in range(3)]
    pending = [defer.ensureDeferred(r) for r in replies]
    await until(lambda: state["started"] == 2)
    # The third call reached the pool (it is counted) but waits: its start
    # is recorded by the pool thread that takes it, and none is free.
    await until(lambda: len(server.context.running) == 3)
    assert len(server.context.running.snapshot()) == 2
    assert state["started"] == 2, "a third handler ran while two threads were busy"
    release.set()
    results = await defer.gatherResults(pending)
    assert [r.text for r in results] == ["done"] * 3
    assert state["most"] == 2


@pytest_twisted.ensureDeferred
async def test_a_slow_handler_does_not_stall_other_requests(serve, client):
    release = threading.Event()
    houweb.urlHandler("/slow")(lambda r: release.wait(30) and "slow")
    houweb.urlHandler("/fast")(lambda r: "fast")
    port = (await serve(max_num_threads=2)).port_numbers()[0]
    slow = defer.ensureDeferred(client.get(port, "/slow"))
    assert (await client.get(port, "/fast")).text == "fast"
    release.set()
    assert (await slow).text == "slow"


@pytest_twisted.ensureDeferred
async def test_async_handlers_await_asyncio_and_deferreds_on_the_reactor(serve, client):
    seen = []

    @houweb.urlHandler("/a")
    async def handler(request):
        seen.append(threading.current_thread())
        await asyncio.sleep(0.01)
        value = await task.deferLater(reactor, 0.01, lambda: "deferred")
        future = asyncio.get_running_loop().run_in_executor(None, lambda: "executor")
        return f"{value} {await future}"

    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/a")).text == "deferred executor"
    assert seen == [threading.current_thread()]


@pytest_twisted.ensureDeferred
async def test_async_handler_answers_while_the_pool_is_busy(serve, client):
    release = threading.Event()
    houweb.urlHandler("/busy")(lambda r: release.wait(30) and "busy")

    @houweb.urlHandler("/async")
    async def quick(request):
        await asyncio.sleep(0)
        return "async"

    port = (await serve(max_num_threads=1)).port_numbers()[0]
    busy = defer.ensureDeferred(client.get(port, "/busy"))
    assert (await client.get(port, "/async")).text == "async"
    release.set()
    await busy


@pytest_twisted.ensureDeferred
async def test_async_handler_exception_is_500(serve, client):
    @houweb.urlHandler("/fail")
    async def fail(request):
        await asyncio.sleep(0)
        raise KeyError("nope")

    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/fail")).status == 500


@pytest_twisted.ensureDeferred
async def test_raising_handler_is_500_without_traceback_but_logged(serve, client, logged):
    def boom(request):
        raise ValueError("secret detail")

    houweb.urlHandler("/boom")(boom)
    port = (await serve()).port_numbers()[0]
    reply = await client.get(port, "/boom")
    assert reply.status == 500
    assert b"Traceback" not in reply.body and b"secret detail" not in reply.body
    assert b"Internal server error" in reply.body
    errors = [e for e in logged if e.get("log_level") == LogLevel.error]
    assert any("secret detail" in str(e.get("log_failure", "")) for e in errors)
    assert (await client.get(port, "/boom")).status == 500  # still serving


@pytest_twisted.ensureDeferred
async def test_debug_mode_sends_the_traceback_as_text(serve, client):
    def boom(request):
        raise ValueError("visible detail")

    houweb.urlHandler("/boom")(boom)
    port = (await serve(debug=True)).port_numbers()[0]
    reply = await client.get(port, "/boom")
    assert reply.status == 500
    assert reply.header("Content-Type") == "text/plain"
    assert reply.text.startswith("Traceback (most recent call last):")
    assert "ValueError: visible detail" in reply.text
    assert "in boom" in reply.text and "twisted" not in reply.text.split("\n")[1]


@pytest_twisted.ensureDeferred
async def test_results_other_than_response_str_or_bytes_are_500(serve, client, logged):
    houweb.urlHandler("/int")(lambda r: 42)
    houweb.urlHandler("/none")(lambda r: None)
    houweb.urlHandler("/str")(lambda r: "hi")
    houweb.urlHandler("/bytes")(lambda r: b"\x00")
    port = (await serve()).port_numbers()[0]
    reply = await client.get(port, "/int")
    assert reply.status == 500 and b"returned int; expected Response, str or bytes" in reply.body
    assert b"returned NoneType" in (await client.get(port, "/none")).body
    text = await client.get(port, "/str")
    assert (text.status, text.header("Content-Type"), text.body) == (200, "text/html", b"hi")
    binary = await client.get(port, "/bytes")
    assert (binary.header("Content-Type"), binary.body) == ("application/octet-stream", b"\x00")
    assert "returned int" in messages(logged)


@pytest_twisted.ensureDeferred
async def test_client_leaving_mid_handler_is_not_an_error(serve, client, logged):
    entered, release, finished = threading.Event(), threading.Event(), threading.Event()

    @houweb.urlHandler("/leave")
    def leave(request):
        entered.set()
        release.wait(30)
        finished.set()
        return "too late"

    server = await serve()
    port = server.port_numbers()[0]
    raw = await connect_raw(port)
    raw.transport.write(b"GET /leave HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await until(entered.is_set)
    # Leaves entirely (a reset): an end of input alone is a half close, answered.
    raw.transport.abortConnection()
    await raw.done
    await until(lambda: not server.site.houweb_connections)  # the server saw it leave
    release.set()
    await until(finished.is_set)
    await until(lambda: len(server.context.running) == 0)  # its answer was handled
    assert (await client.get(port, "/nothing")).status == 404
    bad = [e for e in logged if e.get("log_level") in (LogLevel.error, LogLevel.critical)]
    assert bad == []


@pytest_twisted.ensureDeferred
async def test_debug_mode_logs_one_line_per_request(serve, client, logged):
    houweb.urlHandler("/hello")(lambda r: "hello")
    port = (await serve(debug=True)).port_numbers()[0]
    await client.get(port, "/hello?x=1")

    def request_lines() -> list[str]:
        return [m for m in messages(logged).splitlines() if m.startswith('"GET /hello?x=1"')]

    await until(request_lines)  # logged once the response is written
    lines = request_lines()
    assert len(lines) == 1
    method_path, status, size, ms = lines[0].rsplit(" ", 3)
    assert (status, size) == ("200", "5") and ms.endswith("ms")


@pytest_twisted.ensureDeferred
async def test_no_request_lines_without_debug(serve, client, logged):
    houweb.urlHandler("/hello")(lambda r: "hello")
    port = (await serve()).port_numbers()[0]
    await client.get(port, "/hello")
    assert '"GET /hello"' not in messages(logged)


@pytest_twisted.ensureDeferred
async def test_a_file_answer_whose_client_left_mid_handler_is_deleted_not_sent(
    serve, client, tmp_path
):
    # The answer of a handler whose client left is discarded: a file it
    # asked to delete is deleted all the same, and nothing is written.
    entered, release, finished = threading.Event(), threading.Event(), threading.Event()
    report = tmp_path / "report.txt"
    report.write_text("for nobody")

    @houweb.urlHandler("/report")
    def send_report(request):
        entered.set()
        release.wait(30)
        finished.set()
        return houweb.fileResponse(str(report), delete_file=True)

    server = await serve()
    port = server.port_numbers()[0]
    raw = await connect_raw(port)
    raw.transport.write(b"GET /report HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await until(entered.is_set)
    # Leaves entirely (a reset): an end of input alone is a half close, answered.
    raw.transport.abortConnection()
    await raw.done
    await until(lambda: not server.site.houweb_connections)  # the server saw it leave
    release.set()
    await until(finished.is_set)
    await until(lambda: not report.exists())
    assert raw.data == b""  # nothing was sent before it left
    assert (await client.get(port, "/nothing")).status == 404


class _BrokenTarget:
    """A target whose ``answer`` fails: at once (raises) or later (a failed Deferred)."""

    def __init__(self, later: bool) -> None:
        self.later = later

    def answer(self, call):
        if self.later:
            return defer.fail(RuntimeError("the target broke later"))
        raise RuntimeError("the target broke at once")


@pytest.mark.parametrize("later", [False, True], ids=["raises", "fails_later"])
@pytest_twisted.ensureDeferred
async def test_a_target_that_cannot_answer_is_500_logged_and_the_server_goes_on(
    serve, client, registry, logged, later
):
    from houweb._registry import EXACT

    registry.add_path(EXACT, "/broken", [], _BrokenTarget(later))

    @houweb.urlHandler("/fine")
    def fine(request):
        return "fine"

    server = await serve()
    port = server.port_numbers()[0]
    reply = await client.get(port, "/broken")
    assert reply.status == 500
    assert b"Internal server error" in reply.body
    failures = [e for e in logged if e.get("log_failure") is not None]
    assert len(failures) == 1 and failures[0]["log_failure"].check(RuntimeError)
    assert "could not answer" in messages(failures)
    failures[0]["log_failure"].cleanFailure()
    assert (await client.get(port, "/fine")).body == b"fine"


@pytest_twisted.ensureDeferred
async def test_a_url_handler_is_named_once_not_on_every_request(serve, client, monkeypatch):
    # Its name (for the log and shutdown) was formatted on each request, on
    # the reactor thread; it does not change.
    import houweb._registry

    named: list[object] = []
    real = houweb._registry.describe

    def noting(function):
        named.append(function)
        return real(function)

    monkeypatch.setattr(houweb._registry, "describe", noting)

    @houweb.urlHandler("/named")
    def named_handler(request):
        return "ok"

    port = (await serve()).port_numbers()[0]
    for _ in range(3):
        assert (await client.get(port, "/named")).body == b"ok"
    assert named == [named_handler]


@pytest_twisted.ensureDeferred
async def test_calls_in_progress_are_forgotten_whether_the_handler_returns_or_raises(serve, client):
    @houweb.urlHandler("/ok")
    def ok(request):
        return "ok"

    @houweb.urlHandler("/raises")
    def raises(request):
        raise ValueError("expected by the test")

    server = await serve()
    port = server.port_numbers()[0]
    assert (await client.get(port, "/ok")).status == 200
    assert (await client.get(port, "/raises")).status == 500
    assert len(server.context.running) == 0
