"""registerASGIApp: ASGI 3 apps on a path prefix, on the reactor's loop, over real sockets."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
import pytest_twisted

import houweb

from .support import connect_raw, raw_request, sleep, ws_connect
from .test_dispatch import until
from .test_response_writes import _responses


def scope_app(seen: list[Any]) -> Any:
    """An ASGI app answering with the parts of the scope the tests look at."""

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            raise RuntimeError("no lifespan here")  # the spec's way to say so
        chunks = []
        while True:
            message = await receive()
            chunks.append(len(message["body"]))
            if not message["more_body"]:
                break
        seen.append(threading.current_thread() is threading.main_thread())
        body = json.dumps(
            {
                "path": scope["path"],
                "root_path": scope["root_path"],
                "raw_path": scope["raw_path"].decode(),
                "query": scope["query_string"].decode(),
                "method": scope["method"],
                "scheme": scope["scheme"],
                "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
                "client": scope["client"],
                "server": scope["server"],
                "chunks": chunks,
                "asgi": scope["asgi"],
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


@pytest_twisted.ensureDeferred
async def test_the_scope_of_a_mount_has_root_path_and_the_whole_path(serve, client):
    seen: list[Any] = []
    houweb.registerASGIApp(scope_app(seen), "/app")
    port = (await serve()).port_numbers()[0]
    reply = await client.post(port, "/app/x/caf%C3%A9?a=1", data=b"hi", headers={"X-One": "1"})
    assert reply.status == 201
    scope = json.loads(reply.body)
    assert scope["path"] == "/app/x/café" and scope["root_path"] == "/app"
    assert scope["raw_path"] == "/app/x/caf%C3%A9" and scope["query"] == "a=1"
    assert (scope["method"], scope["scheme"]) == ("POST", "http")
    assert scope["headers"]["x-one"] == "1"
    assert scope["server"] == ["127.0.0.1", port] and scope["client"][0] == "127.0.0.1"
    assert scope["asgi"]["version"] == "3.0"
    assert seen == [True]  # on the reactor's thread (its asyncio loop), not the pool


@pytest_twisted.ensureDeferred
async def test_a_large_request_body_reaches_the_app_in_chunks(serve, client):
    houweb.registerASGIApp(scope_app([]), "/app")
    port = (await serve()).port_numbers()[0]
    reply = await client.post(port, "/app/upload", data=b"x" * 300_000)
    chunks = json.loads(reply.body)["chunks"]
    assert sum(chunks) == 300_000 and len(chunks) >= 4 and max(chunks) <= 64 * 1024


@pytest_twisted.ensureDeferred
async def test_a_mount_at_the_root_leaves_more_specific_handlers_and_api_alone(serve, client):
    houweb.registerASGIApp(scope_app([]))  # path=None: "/"
    houweb.urlHandler("/hello")(lambda request: "houweb handler")

    @houweb.apiFunction("geo")
    def double(request, x):
        return 2 * x

    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/hello")).text == "houweb handler"
    assert json.loads((await client.get(port, "/anything")).body)["root_path"] == ""
    api = await client.post(port, "/api", json=["geo.double", [21], {}])
    assert json.loads(api.body) == 42


def test_registerASGIApp_checks_its_arguments(registry):
    with pytest.raises(TypeError, match="ASGI application"):
        houweb.registerASGIApp("not an app", "/x")
    with pytest.raises(ValueError, match="reserved"):
        houweb.registerASGIApp(scope_app([]), "/api")


# streaming, backpressure, disconnect


@pytest_twisted.ensureDeferred
async def test_a_streamed_response_waits_for_a_client_that_does_not_read(serve):
    sent: list[int] = []
    chunk, count = b"z" * (1024 * 1024), 40

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for index in range(count):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent.append(index)
        await send({"type": "http.response.body", "body": b""})

    houweb.registerASGIApp(app, "/stream")
    port = (await serve()).port_numbers()[0]
    connection = await connect_raw(port)
    connection.transport.pauseProducing()  # read nothing
    connection.transport.write(b"GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await until(lambda: len(sent) > 0)
    await sleep(0.5)  # time enough to send all 40 MB if nothing held the app back
    held_back = len(sent)
    assert held_back < count
    connection.transport.resumeProducing()
    await until(lambda: len(sent) == count)
    await until(lambda: connection.data.endswith(b"0\r\n\r\n"))
    assert connection.data.count(b"z") == count * len(chunk)


@pytest_twisted.ensureDeferred
async def test_the_request_body_reaches_the_app_while_it_is_still_arriving(serve):
    parts: list[bytes] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            parts.append(message["body"])
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"got %d" % len(b"".join(parts))})

    houweb.registerASGIApp(app, "/up")
    port = (await serve()).port_numbers()[0]
    connection = await connect_raw(port)
    connection.transport.write(
        b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nfirst"
    )
    # The app has the first half before the client sent the second.
    await until(lambda: b"first" in b"".join(parts))
    assert connection.data == b""
    connection.transport.write(b"-rest")
    await until(lambda: connection.data.endswith(b"0\r\n\r\n"))
    assert b"got 10" in connection.data
    assert b"".join(parts) == b"first-rest"


@pytest_twisted.ensureDeferred
async def test_an_app_behind_on_the_body_stops_houweb_reading_from_the_client(serve):
    go_on = asyncio.Event()
    total = 16 * 1024 * 1024
    taken: list[int] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        taken.append(len((await receive())["body"]))
        await go_on.wait()
        more = True
        while more:
            message = await receive()
            taken.append(len(message["body"]))
            more = message["more_body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"%d" % sum(taken)})

    houweb.registerASGIApp(app, "/up")
    server = await serve()
    port = server.port_numbers()[0]
    connection = await connect_raw(port)
    head = b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % total
    connection.transport.write(head + b"b" * total)
    await until(lambda: taken)

    def received() -> int:
        (channel,) = server.site.houweb_connections
        return int(channel.requests[-1].houweb_received)

    await until(lambda: received() > 1024 * 1024)
    await sleep(0.5)  # time enough to read all 16 MB if nothing held the client back
    assert received() < total // 2
    go_on.set()
    await until(lambda: connection.data.endswith(b"0\r\n\r\n"))
    assert b"%d" % total in connection.data


@pytest_twisted.ensureDeferred
async def test_a_client_that_leaves_mid_stream_gives_the_app_http_disconnect(serve):
    events: list[str] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        assert (await receive())["type"] == "http.request"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        events.append((await receive())["type"])
        await send({"type": "http.response.body", "body": b"after", "more_body": True})
        events.append("send after disconnect dropped")

    houweb.registerASGIApp(app, "/stream")
    port = (await serve()).port_numbers()[0]
    connection = await connect_raw(port)
    connection.transport.write(b"GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await until(lambda: b"first" in connection.data)
    # A FIN, as a browser closing the connection sends: an ASGI app takes it
    # for the client leaving (a plain handler's half-closed client is answered).
    connection.transport.loseConnection()
    await until(lambda: len(events) == 2)
    assert events == ["http.disconnect", "send after disconnect dropped"]


@pytest_twisted.ensureDeferred
async def test_an_app_that_fails_before_answering_gets_500_and_the_server_goes_on(serve, client):
    async def app(scope, receive, send):
        if scope["type"] == "http":
            raise RuntimeError("boom")

    houweb.registerASGIApp(app, "/bad")
    houweb.urlHandler("/ok")(lambda request: "ok")
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/bad")).status == 500
    assert (await client.get(port, "/ok")).text == "ok"


# lifespan


@pytest_twisted.ensureDeferred
async def test_lifespan_startup_before_the_first_request_and_shutdown_with_the_server(
    serve, client
):
    events: list[str] = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                events.append(message["type"])
                if message["type"] == "lifespan.startup":
                    await asyncio.sleep(0.05)  # a slow start: requests must wait
                    scope["state"]["db"] = "connected"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        events.append("request")
        await send({"type": "http.response.body", "body": scope["state"]["db"].encode()})

    houweb.registerASGIApp(app, "/life")
    server = await serve()
    port = server.port_numbers()[0]
    assert (await client.get(port, "/life")).text == "connected"
    await server.shutdown()
    assert events == ["lifespan.startup", "request", "lifespan.shutdown"]


@pytest_twisted.ensureDeferred
async def test_an_app_registered_on_a_running_server_starts_its_lifespan_at_its_first_request(
    serve, client
):
    """
    The server learns from its registry that its targets need lifespans,
    also when the first ASGI app is registered after it started (the
    lifespans were once a module-level table filled when ``_asgi`` was
    first imported: a server made before that had none).
    """
    events: list[str] = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                events.append(message["type"])
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        events.append("request")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})

    server = await serve()
    houweb.registerASGIApp(app, "/late")
    port = server.port_numbers()[0]
    assert (await client.get(port, "/late")).text == "late"
    await server.shutdown()
    assert events == ["lifespan.startup", "request", "lifespan.shutdown"]


@pytest_twisted.ensureDeferred
async def test_an_app_registered_on_a_running_server_is_routed_only_once_its_lifespans_exist(
    serve, registry
):
    """
    registerASGIApp from another thread while the server runs: a request
    routed to the app as soon as its path is registered must find the
    server's lifespans (or it runs before the app's startup, which then
    starts at the next request). The path was registered first, the
    lifespans added after it.
    """
    server = await serve()
    seen: list[Any] = []
    registry.on_register(lambda bindings, what: seen.append(server.context.extensions.get("asgi")))
    houweb.registerASGIApp(scope_app([]), "/late")
    assert len(seen) == 1 and seen[0] is not None


@pytest_twisted.ensureDeferred
async def test_a_failed_lifespan_startup_answers_503(serve, client):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.failed", "message": "no database"})
            return
        raise AssertionError("never called")

    houweb.registerASGIApp(app, "/life")
    port = (await serve()).port_numbers()[0]
    reply = await client.get(port, "/life")
    assert reply.status == 503 and "no database" in reply.text


@pytest.mark.parametrize("body", [b"", b"hi"])  # routed at once, or streamed in
@pytest_twisted.ensureDeferred
async def test_a_request_whose_client_left_during_a_slow_startup_never_runs(serve, body):
    started = asyncio.Event()
    calls: list[str] = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            await started.wait()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        calls.append(scope["type"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})

    houweb.registerASGIApp(app, "/slow")
    server = await serve()
    port = server.port_numbers()[0]
    connection = await connect_raw(port)
    method = b"POST" if body else b"GET"
    connection.transport.write(
        method
        + b" /slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
    )
    # The request arrived whole (and waits for the startup).
    await until(
        lambda: any(
            treq.method == method
            for channel in server.site.houweb_connections
            for treq in channel.requests
        )
    )
    connection.transport.abortConnection()
    await until(lambda: not server.site.houweb_connections)
    started.set()  # the first request would run now; the second one follows it
    reply = await raw_request(
        port, b"GET /slow HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    assert b"late" in reply
    assert calls == ["http"]  # the second request only


@pytest.mark.parametrize(
    "start",
    [
        {"status": "200", "headers": []},
        {"status": 200, "headers": [("content-type", "text/plain")]},  # str, not bytes
        # a name that is not a token: the connection was cut, nothing sent
        {"status": 200, "headers": [(b"set-cookie", b"s=1"), (b"bad name", b"x")]},
        # a control character: an answer no strict client (nor browser) parses
        {"status": 200, "headers": [(b"x-note", b"a\x00b")]},
        {"status": 200, "headers": [(b"x-note", b"a\rb")]},
    ],
)
@pytest_twisted.ensureDeferred
async def test_a_bad_response_start_gets_a_500_not_a_cut_connection(serve, start):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", **start})
        await send({"type": "http.response.body", "body": b"never"})

    houweb.registerASGIApp(app, "/bad")
    port = (await serve()).port_numbers()[0]
    reply = await raw_request(
        port, b"GET /bad HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    assert reply.startswith(b"HTTP/1.1 500 ") and b"never" not in reply
    assert b"s=1" not in reply and b"x-note" not in reply.lower()


@pytest_twisted.ensureDeferred
async def test_an_app_that_answers_before_reading_a_large_body_is_not_stuck(serve, client):
    # The answer is written once the request is routed, when the whole body
    # arrived; the app not reading held the client back past 1 MiB: neither
    # moved until request_timeout (408). An early 401 and an echo both hung.
    async def refuse(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": b"no"})

    async def echo(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        more = True
        while more:
            message = await receive()
            more = message["more_body"]
            await send({"type": "http.response.body", "body": message["body"], "more_body": more})

    houweb.registerASGIApp(refuse, "/refuse")
    houweb.registerASGIApp(echo, "/echo")
    port = (await serve(request_timeout=30)).port_numbers()[0]
    body = bytes(range(256)) * (5 * 4096)  # 5 MiB
    refused = await client.post(port, "/refuse", data=body)
    assert (refused.status, refused.body) == (401, b"no")
    echoed = await client.post(port, "/echo", data=body)
    assert echoed.status == 200 and echoed.body == body


@pytest_twisted.ensureDeferred
async def test_receive_after_a_websocket_disconnect_returns_it_again(serve):
    # The second receive() waited for ever on an empty queue: the app's task
    # never ended (one leaked per connection of such an app).
    seen: list[str] = []

    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        seen.append((await receive())["type"])
        seen.append((await receive())["type"])

    houweb.registerASGIApp(app, "/ws")
    port = (await serve()).port_numbers()[0]
    ws = await ws_connect(port, "/ws")
    ws.sendClose(1000)
    await until(lambda: len(seen) == 2)
    assert seen == ["websocket.disconnect", "websocket.disconnect"]


# the header-time guard


@pytest_twisted.ensureDeferred
async def test_a_mount_is_behind_the_token_host_and_origin_checks(serve, client):
    calls: list[str] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        calls.append(scope["method"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"in"})

    houweb.registerASGIApp(app, "/app")
    port = (await serve(token="s3cret")).port_numbers()[0]
    good = {"Authorization": "Bearer s3cret"}
    assert (await client.get(port, "/app/x")).status == 401
    assert (
        await client.get(port, "/app/x", headers={**good, "Host": "evil.example"})
    ).status == 400
    foreign = {**good, "Origin": "http://evil.example"}
    assert (await client.post(port, "/app/x", data=b"x", headers=foreign)).status == 403
    assert calls == []  # none of them reached the app
    assert (await client.get(port, "/app/x", headers=good)).text == "in"
    assert calls == ["GET"]


def recording_app(calls: list[Any]) -> Any:
    """An ASGI app that notes each request it sees and answers with its body."""

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        calls.append((scope["method"], scope["path"]))
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message["body"]
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"in:" + body})

    return app


@pytest_twisted.ensureDeferred
async def test_a_tokenless_preflight_with_a_body_never_reaches_the_app(serve):
    # The guard lets a whitelisted origin's preflight in without the token
    # because the CORS filter answers it before routing; a body must not
    # start the app before that filter ran.
    calls: list[Any] = []
    houweb.registerASGIApp(recording_app(calls), "/app")
    houweb.setCORSWhitelist(["http://good.example"])
    port = (await serve(token="s3cret")).port_numbers()[0]
    reply = await raw_request(
        port,
        b"OPTIONS /app/x HTTP/1.1\r\nHost: localhost\r\nOrigin: http://good.example\r\n"
        b"Access-Control-Request-Method: POST\r\nContent-Length: 5\r\n"
        b"Connection: close\r\n\r\nhello",
    )
    assert reply.startswith(b"HTTP/1.1 200") and b"Access-Control-Allow-Methods" in reply
    assert calls == []


@pytest_twisted.ensureDeferred
async def test_a_body_reaches_the_app_only_for_requests_the_router_gives_it(serve, client):
    calls: list[Any] = []
    houweb.registerASGIApp(recording_app(calls))  # "/": everything
    port = (await serve(metrics=True)).port_numbers()[0]

    def sent(head: bytes) -> Any:
        return raw_request(port, head + b"\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")

    metrics = await sent(b"GET /metrics HTTP/1.1\r\nHost: localhost")
    assert metrics.startswith(b"HTTP/1.1 200") and b"houweb_requests_total" in metrics
    bad_query = await sent(b"POST /x?a=%ff HTTP/1.1\r\nHost: localhost")
    assert bad_query.startswith(b"HTTP/1.1 400")
    bad_host = await sent(b"POST /x HTTP/1.1\r\nHost: a..localhost")
    assert bad_host.startswith(b"HTTP/1.1 400")
    assert calls == []  # the router answered all three: the app saw none
    # A GET with a body, not streamed, still gets its body once routed.
    assert b"in:hello" in await sent(b"GET /x HTTP/1.1\r\nHost: localhost")
    assert calls == [("GET", "/x")]


# real frameworks, mounted beside houweb handlers


def starlette_app(events: list[str]) -> Any:
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.routing import Route, WebSocketRoute

    async def home(request):
        return PlainTextResponse(f"starlette {request.url.path} {request.scope['root_path']}")

    async def upload(request):
        sizes = [len(chunk) async for chunk in request.stream() if chunk]
        return JSONResponse({"total": sum(sizes), "chunks": len(sizes)})

    async def numbers(request):
        async def generate():
            for n in range(5):
                yield f"{n}\n"

        return StreamingResponse(generate(), media_type="text/plain")

    async def echo(websocket):
        await websocket.accept()
        async for text in websocket.iter_text():
            await websocket.send_text(f"echo {text}")
        events.append("ws closed")

    @asynccontextmanager
    async def lifespan(app):
        events.append("startup")
        yield
        events.append("shutdown")

    return Starlette(
        routes=[
            Route("/", home),
            Route("/upload", upload, methods=["POST"]),
            Route("/numbers", numbers),
            WebSocketRoute("/ws", echo),
        ],
        lifespan=lifespan,
    )


@pytest_twisted.ensureDeferred
async def test_a_starlette_app_beside_houweb_handlers(serve, client):
    events: list[str] = []
    houweb.registerASGIApp(starlette_app(events), "/star")
    houweb.urlHandler("/star/special")(lambda request: "houweb wins here")
    houweb.urlHandler("/hello")(lambda request: "houweb")
    server = await serve()
    port = server.port_numbers()[0]
    assert (await client.get(port, "/star/")).text == "starlette /star/ /star"
    assert (await client.get(port, "/star/special")).text == "houweb wins here"
    assert (await client.get(port, "/hello")).text == "houweb"
    assert (await client.get(port, "/star/numbers")).text == "0\n1\n2\n3\n4\n"
    upload = json.loads((await client.post(port, "/star/upload", data=b"u" * 200_000)).body)
    assert upload["total"] == 200_000 and upload["chunks"] >= 2
    ws = await ws_connect(port, "/star/ws")
    ws.sendMessage(b"hi", isBinary=False)
    assert await ws.next_message() == "echo hi"
    ws.sendClose(1000)
    assert await ws.wait_closed() == 1000
    await until(lambda: "ws closed" in events)
    await server.shutdown()
    assert events == ["startup", "ws closed", "shutdown"]


@pytest_twisted.ensureDeferred
async def test_a_fastapi_app_beside_houweb_handlers(serve, client):
    from tests.apps.fastapi_app import make_app

    app = make_app()
    houweb.registerASGIApp(app, "/fast")
    houweb.urlHandler("/hello")(lambda request: "houweb")
    port = (await serve()).port_numbers()[0]
    assert json.loads((await client.get(port, "/fast/items/3?q=x")).body) == {
        "item_id": 3,
        "q": "x",
    }
    made = await client.post(port, "/fast/items", json={"name": "a", "price": 1.5})
    assert json.loads(made.body) == {"name": "a", "double": 3.0}
    bad = await client.post(port, "/fast/items", json={"name": "a"})
    assert bad.status == 422
    openapi = json.loads((await client.get(port, "/fast/openapi.json")).body)
    assert "/items/{item_id}" in openapi["paths"]
    assert (await client.get(port, "/hello")).text == "houweb"


@pytest_twisted.ensureDeferred
async def test_a_django_asgi_app_beside_houweb_handlers(serve, client):
    from tests.apps import django_app

    houweb.registerASGIApp(django_app.application(), "/dj")
    houweb.urlHandler("/hello")(lambda request: "houweb")
    port = (await serve()).port_numbers()[0]
    reply = await client.get(port, "/dj/hello/?name=houdini")
    assert reply.status == 200
    assert json.loads(reply.body) == {
        "hello": "houdini",
        "path": "/dj/hello/",
        "path_info": "/hello/",
        "script_name": "/dj",
    }
    posted = await client.post(port, "/dj/echo/", data=b"d" * 150_000)
    assert json.loads(posted.body) == {"size": 150_000}
    assert (await client.get(port, "/dj/missing/")).status == 404
    assert (await client.get(port, "/hello")).text == "houweb"


@pytest_twisted.ensureDeferred
async def test_a_body_that_does_not_match_its_content_length_never_desyncs_the_connection(serve):
    # An app declaring Content-Length: 2 and sending "hello" had the extra
    # "llo" read by the client as the start of the next answer on the
    # connection; one sending less left the client waiting. The connection
    # is now cut before such bytes go out; a bad declared length is a 500.
    def app_for(length: bytes, pieces: list[bytes]) -> Any:
        async def app(scope, receive, send):
            if scope["type"] != "http":
                return
            headers = [(b"content-length", length), (b"content-type", b"text/plain")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            for index, piece in enumerate(pieces):
                more = index < len(pieces) - 1
                await send({"type": "http.response.body", "body": piece, "more_body": more})

        return app

    houweb.registerASGIApp(app_for(b"2", [b"hello"]), "/long")
    houweb.registerASGIApp(app_for(b"10", [b"hel", b"lo"]), "/short")
    houweb.registerASGIApp(app_for(b"5", [b"hel", b"lo"]), "/right")
    houweb.registerASGIApp(app_for(b"x5", [b"hello"]), "/bad")
    port = (await serve()).port_numbers()[0]
    second = b"GET /right HTTP/1.1\r\nHost: localhost\r\n\r\n"
    for path in (b"/long", b"/short"):
        reply = await raw_request(
            port, b"GET " + path + b" HTTP/1.1\r\nHost: localhost\r\n\r\n" + second
        )
        assert b"llo" not in reply and b"HTTP/1.1 200" not in reply[1:], reply
    right = await raw_request(
        port, second + second.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    )
    assert [answer[2] for answer in _responses(right, ["GET", "GET"])] == [b"hello", b"hello"]
    bad = await raw_request(
        port, b"GET /bad HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    assert bad.startswith(b"HTTP/1.1 500 ") and b"hello" not in bad
