"""The live status page (houweb/_statuspage.py), in a real browser too."""

from __future__ import annotations

import json
import threading

import pytest
import pytest_twisted
from twisted.internet import defer, threads

import houweb
from houweb.__main__ import parse

from .browser import Browser, chromium_or_skip
from .support import raw_request, ws_connect, ws_handshake
from .test_dispatch import until


def register_blocking():
    entered, release = threading.Event(), threading.Event()

    @houweb.urlHandler("/block")
    def block(request):
        entered.set()
        release.wait(30)
        return "done"

    @houweb.urlHandler("/boom")
    def boom(request):
        raise RuntimeError("kaboom")

    return entered, release


async def status(client, port: int, **kwargs) -> dict:
    reply = await client.get(port, "/houweb/status.json", **kwargs)
    assert reply.status == 200, reply.text
    return json.loads(reply.body)


@pytest_twisted.ensureDeferred
async def test_status_shows_the_call_running_now_and_forgets_it_when_done(serve, client):
    entered, release = register_blocking()
    server = await serve(status_page=True)
    port = server.port_numbers()[0]
    reply = defer.ensureDeferred(client.get(port, "/block?x=1"))
    try:
        await until(entered.is_set)
        now = await status(client, port)
        (call,) = now["calls"]
        assert call["function"].endswith("block")
        assert (call["method"], call["path"], call["client"]) == ("GET", "/block", "127.0.0.1")
        assert call["seconds"] >= 0
        assert now["pool"] == {"threads": 4, "busy": 1, "queued": 0}
        assert now["connections"] >= 2 and now["ports"] == [port]
    finally:
        release.set()
    assert (await reply).status == 200
    assert (await status(client, port))["calls"] == []


@pytest_twisted.ensureDeferred
async def test_status_lists_recent_errors(serve, client):
    register_blocking()
    port = (await serve(status_page=True)).port_numbers()[0]
    assert (await client.get(port, "/boom")).status == 500
    (error,) = (await status(client, port))["errors"]
    assert (error["method"], error["target"], error["status"]) == ("GET", "/boom", 500)


@pytest_twisted.ensureDeferred
async def test_the_status_page_is_off_by_default(serve, client):
    port = (await serve()).port_numbers()[0]
    for path in ("/houweb/status", "/houweb/status.json", "/houweb/status/live"):
        assert (await client.get(port, path)).status == 404


@pytest_twisted.ensureDeferred
async def test_the_status_page_refuses_clients_that_came_through_a_proxy(serve, client):
    entered, release = register_blocking()
    port = (await serve(status_page=True)).port_numbers()[0]
    reply = defer.ensureDeferred(client.get(port, "/block"))
    try:
        await until(entered.is_set)
        for header in ("X-Forwarded-For", "Forwarded"):
            for path in ("/houweb/status", "/houweb/status.json"):
                refused = await client.get(port, path, headers={header: "203.0.113.9"})
                assert refused.status == 403
                assert b"/block" not in refused.body and b"calls" not in refused.body
    finally:
        release.set()
    await reply


@pytest_twisted.ensureDeferred
async def test_a_rebound_name_cannot_read_the_status_even_when_any_host_is_allowed(serve, client):
    # ALLOWED_HOSTS = ["*"] (Houdini's default off loopback) lets a DNS-rebinding
    # page in a browser on this machine reach the server: its requests come
    # from loopback, with no proxy header. The status page (other clients'
    # requests, query strings included) must still not answer it.
    entered, release = register_blocking()
    port = (await serve(status_page=True, allowed_hosts=["*"])).port_numbers()[0]
    reply = defer.ensureDeferred(client.get(port, "/block?secret=42"))
    try:
        await until(entered.is_set)
        rebound = {"Host": f"rebound.example:{port}", "Sec-Fetch-Site": "same-origin"}
        for path in ("/houweb/status", "/houweb/status.json"):
            refused = await client.get(port, path, headers=rebound)
            assert refused.status == 403, refused.text
            assert b"/block" not in refused.body and b"calls" not in refused.body
        live = await raw_request(
            port,
            ws_handshake("/houweb/status/live").replace(
                b"Host: 127.0.0.1", f"Host: rebound.example:{port}".encode()
            ),
        )
        assert live.startswith(b"HTTP/1.1 403") and b"/block" not in live
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", "app.localhost"):
            calls = (await status(client, port, headers={"Host": host}))["calls"]
            assert [c["path"] for c in calls] == ["/block"]
    finally:
        release.set()
    await reply


@pytest_twisted.ensureDeferred
async def test_with_a_token_the_status_page_needs_it(serve, client):
    entered, release = register_blocking()
    port = (await serve(status_page=True, token="s3cret")).port_numbers()[0]
    refused = await client.get(port, "/houweb/status.json")
    assert refused.status == 401 and b"calls" not in refused.body
    auth = {"Authorization": "Bearer s3cret"}
    assert (await status(client, port, headers=auth))["calls"] == []


@pytest_twisted.ensureDeferred
async def test_the_live_websocket_sends_snapshots(serve):
    port = (await serve(status_page=True)).port_numbers()[0]
    ws = await ws_connect(port, "/houweb/status/live")
    first = json.loads(await ws.next_message())
    assert first["websockets"] == 1 and first["calls"] == []
    second = json.loads(await ws.next_message())
    assert second["time"] >= first["time"]
    ws.sendClose()
    await ws.wait_closed()


def test_the_programs_take_status_page():
    assert parse(["--status-page"]).run_arguments()["status_page"] is True
    assert "status_page" not in parse([]).run_arguments()


# In a browser.


@pytest.fixture
def browser():
    chromium = chromium_or_skip()
    with Browser(chromium) as opened:
        yield opened


def in_browser(function, *args):
    return threads.deferToThread(function, *args)


def until_calls_table(contains: bool) -> str:
    """JavaScript: wait until the Running-now table does (or does not) show /block."""
    test = "has" if contains else "drawn"
    return f"""
new Promise((resolve) => {{
  const body = document.querySelector("#calls tbody");
  const has = () => body.textContent.includes("GET /block");
  const drawn = () => document.body.dataset.updates && !has();
  if ({test}()) return resolve(body.textContent);
  new MutationObserver((_, observer) => {{
    if ({test}()) {{ observer.disconnect(); resolve(body.textContent); }}
  }}).observe(body, {{ childList: true, subtree: true, characterData: true }});
}})
"""


@pytest_twisted.ensureDeferred
async def test_the_page_shows_a_running_call_appear_then_disappear(serve, client, browser):
    entered, release = register_blocking()
    port = (await serve(status_page=True)).port_numbers()[0]
    await in_browser(browser.goto, f"http://127.0.0.1:{port}/houweb/status")
    assert await in_browser(browser.evaluate, until_calls_table(False)) == "nothing"
    reply = defer.ensureDeferred(client.get(port, "/block"))
    try:
        await until(entered.is_set)
        shown = await in_browser(browser.evaluate, until_calls_table(True))
        assert "tests.test_statuspage" in shown and "127.0.0.1" in shown
    finally:
        release.set()
    assert (await reply).status == 200
    assert await in_browser(browser.evaluate, until_calls_table(False)) == "nothing"
    state = await in_browser(browser.evaluate, "document.getElementById('state').textContent")
    assert state == "live"


@pytest_twisted.ensureDeferred
async def test_only_get_and_head_see_the_status(serve, client):
    port = (await serve(status_page=True, metrics=True, token="s3cret")).port_numbers()[0]
    auth = {"Authorization": "Bearer s3cret"}
    for method in ("OPTIONS", "POST", "DELETE"):
        for path in ("/houweb/status.json", "/metrics", "/healthz"):
            for headers in ({}, auth):
                reply = await client.request(method, port, path, headers=headers)
                assert reply.status != 200, (method, path, headers)
                assert b"calls" not in reply.body and b"houweb_" not in reply.body
