"""Prometheus metrics and the health check (houweb/_metrics.py), scraped for real."""

from __future__ import annotations

import json
import socket
import struct
import threading

import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer

import houweb
from houweb.__main__ import parse

from .children import Child
from .test_dispatch import until


def families(text: str) -> dict[str, dict[tuple, float]]:
    """:returns: each sample's value by metric name, then by its labels (sorted pairs)."""
    found: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def scrape(client, port: int, path: str = "/metrics", **kwargs) -> dict:
    reply = await client.get(port, path, **kwargs)
    assert reply.status == 200, reply.text
    assert reply.header("Content-Type").startswith("text/plain; version=")
    return families(reply.text)


@pytest_twisted.ensureDeferred
async def test_metrics_count_requests_by_kind_and_status_with_latency_and_upload_bytes(
    serve, client
):
    @houweb.urlHandler("/hello")
    def hello(request):
        return "hello"

    @houweb.urlHandler("/upload")
    def upload(request):
        return "stored"

    port = (await serve(metrics=True)).port_numbers()[0]
    for _ in range(3):
        await client.get(port, "/hello")
    await client.get(port, "/missing")
    await client.post(port, "/upload", data=b"x" * 1000)
    found = await scrape(client, port)
    requests = found["houweb_requests_total"]
    assert requests[(("kind", "url_handler"), ("status", "200"))] == 4
    assert requests[(("kind", "none"), ("status", "404"))] == 1
    assert found["houweb_request_duration_seconds_count"][(("kind", "url_handler"),)] == 4
    assert (
        found["houweb_request_duration_seconds_bucket"][(("kind", "url_handler"), ("le", "+Inf"))]
        == 4
    )
    assert found["houweb_upload_bytes_total"][()] == 1000
    assert found["houweb_pool_threads"][()] == 4
    assert found["houweb_connections_open"][()] >= 1


@pytest_twisted.ensureDeferred
async def test_metrics_show_calls_in_flight_and_busy_and_queued_pool_threads(serve, client):
    entered, release = threading.Event(), threading.Event()

    @houweb.urlHandler("/block")
    def block(request):
        entered.set()
        release.wait(30)
        return "done"

    server = await serve(metrics=True, max_num_threads=1)
    port = server.port_numbers()[0]
    replies = [defer.ensureDeferred(client.get(port, "/block")) for _ in range(2)]
    try:
        await until(entered.is_set)
        await until(lambda: len(server.context.running) == 2)  # one runs, one waits
        found = await scrape(client, port)
        assert found["houweb_calls_in_flight"][()] == 1
        assert found["houweb_calls_waiting"][()] == 1
        assert found["houweb_pool_threads_busy"][()] == 1
        assert found["houweb_pool_queued"][()] == 1
        assert found["houweb_requests_in_flight"][()] == 3  # the two calls and this scrape
    finally:
        release.set()
    for reply in replies:
        assert (await reply).status == 200
    found = await scrape(client, port)
    assert found["houweb_calls_in_flight"][()] == 0
    assert found["houweb_pool_threads_busy"][()] == 0


@pytest_twisted.ensureDeferred
async def test_metrics_count_open_websockets(serve, client):
    from .support import ws_connect

    @houweb.webSocket("/ws")
    class Echo(houweb.WebSocket):
        async def connect(self, request):
            await self.accept()

        async def receive(self, text_data=None, bytes_data=None):
            await self.send(text_data=text_data)

        async def disconnect(self, code):
            pass

    server = await serve(metrics=True)
    port = server.port_numbers()[0]
    ws = await ws_connect(port, "/ws")
    ws.sendMessage(b"hi")
    assert await ws.next_message() == "hi"
    found = await scrape(client, port)
    assert found["houweb_websockets_open"][()] == 1
    ws.sendClose()
    await ws.wait_closed()


@pytest_twisted.ensureDeferred
async def test_each_server_has_its_own_metrics(serve, client):
    @houweb.urlHandler("/hello")
    def hello(request):
        return "hello"

    first = (await serve(metrics=True)).port_numbers()[0]
    second = (await serve(metrics=True)).port_numbers()[0]
    await client.get(first, "/hello")
    await client.get(first, "/hello")
    await client.get(second, "/hello")
    one, two = await scrape(client, first), await scrape(client, second)
    key = (("kind", "url_handler"), ("status", "200"))
    assert (one["houweb_requests_total"][key], two["houweb_requests_total"][key]) == (2, 1)


@pytest_twisted.ensureDeferred
async def test_health_check_answers_ok(serve, client):
    port = (await serve(metrics=True)).port_numbers()[0]
    reply = await client.get(port, "/healthz")
    assert (reply.status, json.loads(reply.body)) == (200, {"status": "ok"})


@pytest_twisted.ensureDeferred
async def test_metrics_and_health_are_off_by_default(serve, client):
    server = await serve()
    port = server.port_numbers()[0]
    assert server.metrics is None
    assert (await client.get(port, "/metrics")).status == 404
    assert (await client.get(port, "/healthz")).status == 404


@pytest_twisted.ensureDeferred
async def test_metrics_and_health_can_be_moved_or_turned_off(serve, client):
    port = (await serve(metrics=True, metrics_path="/ops/metrics", health_path="")).port_numbers()[
        0
    ]
    assert (await client.get(port, "/metrics")).status == 404
    assert (await client.get(port, "/healthz")).status == 404
    assert "houweb_requests_total" in (await scrape(client, port, "/ops/metrics"))


@pytest_twisted.ensureDeferred
async def test_metrics_and_health_need_the_token(serve, client):
    server = await serve(metrics=True, token="s3cret")
    port = server.port_numbers()[0]
    for path in ("/metrics", "/healthz"):
        refused = await client.get(port, path)
        assert refused.status == 401
        assert b"houweb_" not in refused.body and b'"status"' not in refused.body
    found = await scrape(client, port, headers={"Authorization": "Bearer s3cret"})
    # The refused scrapes were answered when their headers arrived, before
    # routing: counted as rejected, never as answered by anything.
    assert found["houweb_requests_total"] == {(("kind", "rejected"), ("status", "401")): 2}


@pytest_twisted.ensureDeferred
async def test_metrics_refuse_a_foreign_host(serve, client):
    port = (await serve(metrics=True)).port_numbers()[0]
    reply = await client.get(port, "/metrics", headers={"Host": "evil.example"})
    assert reply.status == 400
    assert b"houweb_" not in reply.body


def test_bad_metrics_paths_are_refused():
    with pytest.raises(ValueError, match="metrics_path must be a URL path"):
        houweb.run(metrics=True, metrics_path="metrics")


def test_the_programs_take_metrics_options():
    options = parse(["--metrics", "--metrics-path", "/m", "--health-path", ""])
    arguments = options.run_arguments()
    assert (arguments["metrics"], arguments["metrics_path"], arguments["health_path"]) == (
        True,
        "/m",
        "",
    )
    assert "metrics" not in parse([]).run_arguments()


def test_kinds_are_the_target_class_names_in_snake_case():
    from houweb._api import APIFunctionTarget
    from houweb._metrics import kind_of
    from houweb._static import StaticDirectory
    from houweb._websocket import WebSocketTarget
    from houweb._wsgi import WSGITarget

    assert [
        kind_of(t) for t in (APIFunctionTarget, StaticDirectory, WebSocketTarget, WSGITarget, None)
    ] == [
        "api_function",
        "static_directory",
        "web_socket",
        "wsgi",
        "none",
    ]


def test_metrics_without_prometheus_client_say_what_to_install(monkeypatch):
    import sys

    from twisted.internet import reactor

    from houweb._config import ServerConfig
    from houweb._registry import Registry
    from houweb._server import RunningServer

    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    with pytest.raises(houweb.OperationFailed, match=r"pip install 'houweb\[metrics\]'"):
        RunningServer(ServerConfig.from_arguments(port=0, metrics=True), reactor, Registry())


@pytest_twisted.ensureDeferred
async def test_a_client_that_left_before_its_answer_is_not_counted_as_answered(
    serve, client, logged
):
    # A client (or a load balancer timing out) that hangs up while its
    # handler runs got no answer, yet the metrics counted a 200 and the
    # access log wrote one: twisted.web's request.code is 200 until set.
    # nginx writes 499 (client closed request) for it.
    entered, release = threading.Event(), threading.Event()

    @houweb.urlHandler("/slow")
    def slow(request):
        entered.set()
        release.wait(30)
        return "late"

    server = await serve(metrics=True, access_log=True)
    port = server.port_numbers()[0]
    hangup = socket.create_connection(("127.0.0.1", port), timeout=10)
    hangup.sendall(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await until(entered.is_set)
    # The client leaves entirely (a reset: an end of input alone is a half
    # close, answered); once the server saw it go, the handler returns.
    hangup.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    hangup.close()
    await until(lambda: server.site.in_flight() == 0)
    release.set()
    found = await scrape(client, port)
    counted = found["houweb_requests_total"]
    assert ((("kind", "url_handler"), ("status", "200"))) not in counted, counted
    assert counted[(("kind", "url_handler"), ("status", "499"))] == 1
    (line,) = [
        e for e in logged if e.get("log_namespace") == "houweb.access" and e["target"] == "/slow"
    ]
    assert line["status"] == 499 and '"GET /slow HTTP/1.1" 499 -' in line["line"]


def test_metrics_with_several_workers_are_refused_with_the_reason():
    # With workers=2 each process had its own registry and a scrape reached
    # one at random: houweb_requests_total read 9, 11, 9, 11... (each drop a
    # counter reset to Prometheus, so rate() and increase() were wrong).
    child = Child(
        "-c", "import houweb; houweb.run(port=0, in_background=False, workers=2, metrics=True)"
    )
    with child:
        assert child.wait() == 1
        assert "metrics=True cannot be used with workers > 1" in child.output
        assert "listening" not in child.output
