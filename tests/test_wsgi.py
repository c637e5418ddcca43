"""registerWSGIApp: a WSGI application on a prefix, in houweb's pool (spec §15)."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from typing import Any

import pytest
import pytest_twisted

import houweb

from .support import connect_raw, raw_request
from .test_response_writes import _responses
from .test_uploads import until


def environ_app(environ, start_response):
    """Answers with the parts of the WSGI environ the tests look at."""
    body = json.dumps(
        {
            "script": environ["SCRIPT_NAME"],
            "path": environ["PATH_INFO"],
            "query": environ["QUERY_STRING"],
            "method": environ["REQUEST_METHOD"],
            "body": environ["wsgi.input"].read().decode(),
            "thread": threading.current_thread().name,
        }
    ).encode()
    start_response("201 Created", [("Content-Type", "application/json")])
    return [body]


@pytest_twisted.ensureDeferred
async def test_wsgi_app_gets_script_name_and_path_info_in_the_pool(serve, client):
    houweb.registerWSGIApp(environ_app, "/app")
    port = (await serve()).port_numbers()[0]
    reply = await client.post(port, "/app/x/caf%C3%A9?a=1", data=b"hi")
    seen = json.loads(reply.body)
    assert reply.status == 201
    pep3333 = "/x/café".encode().decode("latin-1")  # WSGI strings hold the raw bytes
    assert (seen["script"], seen["path"], seen["query"]) == ("/app", pep3333, "a=1")
    assert (seen["method"], seen["body"]) == ("POST", "hi")
    assert seen["thread"].startswith("PoolThread-houweb")
    root = json.loads((await client.get(port, "/app")).body)
    assert (root["script"], root["path"]) == ("/app", "")


@pytest_twisted.ensureDeferred
async def test_wsgi_app_shares_routing_with_handlers(serve, client):
    houweb.registerWSGIApp(environ_app, "/app")
    houweb.urlHandler("/app/special")(lambda request: "handler")
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/app/special")).text == "handler"
    assert (await client.get(port, "/application")).status == 404


def test_registerWSGIApp_checks_its_arguments(registry):
    with pytest.raises(TypeError):
        houweb.registerWSGIApp("not an app", "/app")
    with pytest.raises(ValueError):
        houweb.registerWSGIApp(environ_app, "app")


@pytest_twisted.ensureDeferred
async def test_wsgi_app_gets_the_raw_multipart_body(serve, client):
    houweb.registerWSGIApp(environ_app, "/app")
    port = (await serve()).port_numbers()[0]
    body = (
        b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n'
        b'--b\r\nContent-Disposition: form-data; name="f"; filename="f.txt"\r\n\r\nxyz\r\n'
        b"--b--\r\n"
    )
    headers = {"Content-Type": "multipart/form-data; boundary=b"}
    reply = await client.post(port, "/app/up", data=body, headers=headers)
    assert json.loads(reply.body)["body"] == body.decode()


@pytest_twisted.ensureDeferred
async def test_a_flask_upload_through_registerWSGIApp_works(serve, client):
    import flask  # in the test extra: never skipped

    app = flask.Flask("uploads")

    @app.route("/up", methods=["POST"])
    def upload():
        sent = flask.request.files["f"]
        return {
            "name": sent.filename,
            "sha256": hashlib.sha256(sent.read()).hexdigest(),
            "title": flask.request.form["title"],
        }

    houweb.registerWSGIApp(app, "/flask")
    # A large upload too: over twisted.web's 100 000 bytes, the body is a temp file.
    port = (await serve()).port_numbers()[0]
    for data in (b"small", os.urandom(300_000)):
        reply = await client.post(
            port, "/flask/up", data={"title": "cat"}, files={"f": ("cat.png", "image/png", data)}
        )
        assert reply.status == 200, reply.body
        assert json.loads(reply.body) == {
            "name": "cat.png",
            "sha256": hashlib.sha256(data).hexdigest(),
            "title": "cat",
        }


@pytest_twisted.ensureDeferred
async def test_a_wsgi_app_reads_any_urlencoded_body_itself(serve, client):
    """houweb neither decodes nor limits the form of a WSGI app: the app does."""

    def app(environ: Any, start_response: Any) -> list[bytes]:
        data = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [data]

    houweb.registerWSGIApp(app, "/w")
    port = (await serve(settings={"DATA_UPLOAD_MAX_NUMBER_FIELDS": 3})).port_numbers()[0]
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    for body in [b"name=caf\xe9", b"a=1&b=2&c=3&d=4"]:  # latin-1; more fields than the limit
        reply = await client.post(port, "/w/form", data=body, headers=headers)
        assert (reply.status, reply.body) == (200, body)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("size", [1000, 300_000])  # in memory; in a temp file
async def test_a_wsgi_app_reads_its_body_after_the_client_left(serve, size):
    data = os.urandom(size)
    started, gate, got = threading.Event(), threading.Event(), []

    def app(environ: Any, start_response: Any) -> list[bytes]:
        started.set()
        gate.wait(10)
        try:
            got.append(environ["wsgi.input"].read())
        except Exception as exc:  # noqa: BLE001 - reported by the assertion
            got.append(exc)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"late"]

    houweb.registerWSGIApp(app, "/w")
    server = await serve()
    port = server.port_numbers()[0]
    raw = await connect_raw(port)
    head = "POST /w/up HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n"
    raw.transport.write(f"{head}Content-Length: {size}\r\n\r\n".encode() + data)
    assert await until(started.is_set)
    raw.transport.abortConnection()
    assert await until(lambda: not server.site.houweb_connections)
    gate.set()
    assert await until(lambda: got)
    # Before: ValueError: read of closed file.
    assert not isinstance(got[0], Exception), got[0]
    assert got == [data]


@pytest_twisted.ensureDeferred
async def test_a_wsgi_answer_that_would_break_the_connection_is_refused_before_it_goes_out(serve):
    # A body longer than its declared Content-Length had the extra bytes read
    # by the client as the start of the next answer; a header name that is
    # not a token cut the connection with nothing sent; a NUL in a value made
    # an answer strict clients refuse. Each is now a 500 (or, once part of
    # the body is out, a closed connection); a right answer goes on as before.
    def app_for(headers: list[tuple[str, str]], pieces: list[bytes]) -> Any:
        def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            start_response("200 OK", headers)
            return pieces

        return app

    houweb.registerWSGIApp(app_for([("Content-Length", "2")], [b"hello"]), "/long")
    houweb.registerWSGIApp(app_for([("Content-Length", "9")], [b"hel", b"lo"]), "/short")
    houweb.registerWSGIApp(app_for([("Set-Cookie", "s=1"), ("bad name", "x")], [b"b"]), "/name")
    houweb.registerWSGIApp(app_for([("X-Note", "a\x00b")], [b"n"]), "/nul")
    houweb.registerWSGIApp(app_for([("Content-Length", "5")], [b"hel", b"lo"]), "/right")
    port = (await serve()).port_numbers()[0]
    last = b"GET /right HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    for path in (b"/long", b"/name", b"/nul"):
        data = await raw_request(
            port, b"GET " + path + b" HTTP/1.1\r\nHost: localhost\r\n\r\n" + last
        )
        answers = _responses(data, ["GET", "GET"])
        assert [(status, body) for status, _, body in answers] == [(500, b""), (200, b"hello")]
        assert b"s=1" not in data and b"\x00" not in data
    short = await raw_request(port, b"GET /short HTTP/1.1\r\nHost: localhost\r\n\r\n" + last)
    # cut short: closed after what was sent, the request behind it not answered
    assert short.endswith(b"\r\n\r\nhello") and short.count(b"HTTP/1.1 ") == 1, short


@pytest_twisted.ensureDeferred
async def test_forms_skip_the_early_route_lookup_until_a_wsgi_app_is_mounted(
    serve, client, registry, monkeypatch
):
    # Whether a form's target reads the raw body is asked of the routes when
    # the headers arrive; with no WSGI or ASGI app registered, nothing can,
    # and the router's own lookup is the only one. An app mounted while the
    # server runs gets its multipart body raw from its first request.
    from houweb._registry import Registry

    looked_up: list[str] = []
    match = Registry.match

    def counted(self: Registry, path: str, *args: Any) -> Any:
        looked_up.append(path)
        return match(self, path, *args)

    monkeypatch.setattr(Registry, "match", counted)
    houweb.urlHandler("/form")(lambda request: ",".join(sorted(request.POST())))
    port = (await serve()).port_numbers()[0]
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    reply = await client.post(port, "/form", data=b"a=1&b=2", headers=headers)
    assert (reply.status, reply.body) == (200, b"a,b")
    assert looked_up == ["/form"]  # the router's
    houweb.registerWSGIApp(environ_app, "/app")
    body = b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--b--\r\n'
    reply = await client.post(
        port, "/app/up", data=body, headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert json.loads(reply.body)["body"] == body.decode()


@pytest_twisted.ensureDeferred
async def test_a_wsgi_app_gets_its_form_raw_on_the_main_ports_other_addresses(serve, client):
    # The main port's other addresses (``listen``) answer what it answers: a
    # form sent there to a WSGI app is its raw body, as on the main port.
    # The early lookup (is the target one that reads the raw body?) missed
    # the aliases the router passes: the body was parsed into fields, and
    # the app read an empty wsgi.input.
    houweb.registerWSGIApp(environ_app, "/app")
    server = await serve(listen=["tcp:0:interface=127.0.0.1"])
    body = b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--b--\r\n'
    headers = {"Content-Type": "multipart/form-data; boundary=b"}
    for port in server.port_numbers():
        reply = await client.post(port, "/app/up", data=body, headers=headers)
        assert reply.status == 201, (port, reply.body)
        assert json.loads(reply.body)["body"] == body.decode(), port
