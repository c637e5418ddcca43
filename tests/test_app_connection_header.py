"""
A mounted ASGI or WSGI app's own ``Connection`` header: the server says
``Connection`` itself, once, as for handlers: the app's ``close`` closes the
connection after its answer, any other value is dropped.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, quote

import h11
import pytest
import pytest_twisted

import houweb

from .support import raw_request


def mount(kind: str, calls: list[str]) -> None:
    """Mount at ``/app`` an app that answers with ``Connection: <c>`` when ``?c=`` asks."""

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        value = parse_qs(environ["QUERY_STRING"]).get("c", [""])[0]
        calls.append(value)
        headers = [("Content-Type", "text/plain"), ("Content-Length", "2")]
        if value:
            headers.append(("Connection", value))
        start_response("200 OK", headers)
        return [b"ok"]

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        value = parse_qs(scope["query_string"].decode()).get("c", [""])[0]
        calls.append(value)
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
        if value:
            headers.append((b"connection", value.encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    if kind == "wsgi":
        houweb.registerWSGIApp(wsgi_app, "/app")
    else:
        houweb.registerASGIApp(asgi_app, "/app")


def connection_lines(data: bytes) -> list[list[bytes]]:
    """:returns: the Connection header lines of each answer in ``data``, as sent."""
    found = []
    for head in data.split(b"HTTP/1.1 ")[1:]:
        lines = head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
        found.append([line for line in lines if line.lower().startswith(b"connection:")])
    return found


def well_formed(data: bytes, requests: int) -> int:
    """:returns: how many whole answers a strict client (h11) reads in ``data``."""
    client = h11.Connection(h11.CLIENT)
    client.receive_data(data)
    client.receive_data(b"")
    read = 0
    for _ in range(requests):
        client.send(h11.Request(method="GET", target="/app", headers=[("Host", "localhost")]))
        client.send(h11.EndOfMessage())
        for _ in range(10):
            event = client.next_event()
            if isinstance(event, h11.EndOfMessage) or event in (h11.NEED_DATA, h11.PAUSED):
                break
        if not isinstance(event, h11.EndOfMessage):
            break
        read += 1
        if client.their_state is h11.MUST_CLOSE:
            break
        client.start_next_cycle()
    return read


def two_requests(value: str) -> bytes:
    """The app asked for ``Connection: <value>``; then one more request, which closes."""
    return (
        b"GET /app?c=%s HTTP/1.1\r\nHost: localhost\r\n\r\n" % quote(value).encode()
        + b"GET /app HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
@pytest.mark.parametrize("value", ["close", "Keep-Alive, close"])
@pytest_twisted.ensureDeferred
async def test_an_apps_connection_close_closes_after_its_answer_said_once(serve, kind, value):
    calls: list[str] = []
    mount(kind, calls)
    port = (await serve()).port_numbers()[0]
    data = await raw_request(port, two_requests(value))
    assert connection_lines(data) == [[b"Connection: close"]]
    assert well_formed(data, 2) == 1
    assert calls == [value]  # the request after it was never read


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
@pytest.mark.parametrize("value", ["keep-alive", "Upgrade", "x-custom"])
@pytest_twisted.ensureDeferred
async def test_an_apps_other_connection_values_are_dropped(serve, kind, value):
    calls: list[str] = []
    mount(kind, calls)
    port = (await serve()).port_numbers()[0]
    data = await raw_request(port, two_requests(value))
    # The connection stayed open for the next request, which asked to close.
    assert connection_lines(data) == [[], [b"Connection: close"]]
    assert well_formed(data, 2) == 2
    assert calls == [value, ""]


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
@pytest_twisted.ensureDeferred
async def test_an_apps_connection_close_on_a_closing_request_is_said_once(serve, kind):
    calls: list[str] = []
    mount(kind, calls)
    port = (await serve()).port_numbers()[0]
    data = await raw_request(
        port, b"GET /app?c=close HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    assert connection_lines(data) == [[b"Connection: close"]]
    assert well_formed(data, 1) == 1
