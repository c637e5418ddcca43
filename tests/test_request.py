"""houweb.Request: what a handler sees of a request (spec §8)."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest_twisted

import houweb

from .support import connect_raw, raw_request
from .test_dispatch import until


def seen_as_json(**getters):
    """Register /r answering with the named Request methods' results as JSON."""

    @houweb.urlHandler("/r", is_prefix=True)
    def handler(request):
        return houweb.Response(
            json.dumps({name: get(request) for name, get in getters.items()}),
            content_type="application/json",
        )


async def fetch(serve, client, path, **kwargs):
    port = (await serve()).port_numbers()[0]
    reply = await client.request(kwargs.pop("method", "GET"), port, path, **kwargs)
    return port, json.loads(reply.body)


@pytest_twisted.ensureDeferred
async def test_query_string_and_path(serve, client):
    seen_as_json(
        GET=lambda r: r.GET(),
        query=lambda r: r.queryString(),
        full=lambda r: r.pathWithQueryString(),
        path=lambda r: r.path(),
    )
    _, seen = await fetch(serve, client, "/r?a=1&b=two")
    assert seen == {
        "GET": {"a": "1", "b": "two"},
        "query": "a=1&b=two",
        "full": "/r?a=1&b=two",
        "path": "/r",
    }


@pytest_twisted.ensureDeferred
async def test_no_query_and_repeated_fields(serve, client):
    seen_as_json(q=lambda r: r.queryString(), GET=lambda r: r.GET(), lists=lambda r: r.GETLists())
    port, seen = await fetch(serve, client, "/r")
    assert seen == {"q": "", "GET": {}, "lists": {}}
    reply = await client.get(port, "/r?a=1&a=2&flag&s=a+b%20c")
    seen = json.loads(reply.body)
    assert seen["GET"] == {"a": "2", "flag": "", "s": "a b c"}
    assert seen["lists"]["a"] == ["1", "2"]


@pytest_twisted.ensureDeferred
async def test_trailing_slash_is_kept_in_path(serve, client):
    seen_as_json(path=lambda r: r.path())
    port, seen = await fetch(serve, client, "/r/")
    assert seen["path"] == "/r/"


@pytest_twisted.ensureDeferred
async def test_bad_utf8_in_query_is_400(serve, client):
    seen_as_json(GET=lambda r: r.GET())
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/r?a=%FF")).status == 400


@pytest_twisted.ensureDeferred
async def test_urlencoded_body_fields_and_raw_body(serve, client):
    seen_as_json(
        POST=lambda r: r.POST(),
        body=lambda r: r.body().decode(),
        length=lambda r: r.contentLength(),
        ctype=lambda r: r.contentType(),
    )
    _, seen = await fetch(
        serve,
        client,
        "/r",
        method="POST",
        data=b"x=1&y=2",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert seen == {
        "POST": {"x": "1", "y": "2"},
        "body": "x=1&y=2",
        "length": 7,
        "ctype": "application/x-www-form-urlencoded",
    }


@pytest_twisted.ensureDeferred
async def test_no_body(serve, client):
    seen_as_json(
        body=lambda r: r.body().decode(),
        length=lambda r: r.contentLength(),
        ctype=lambda r: r.contentType(),
        POST=lambda r: r.POST(),
    )
    _, seen = await fetch(serve, client, "/r")
    assert seen == {"body": "", "length": 0, "ctype": "", "POST": {}}


@pytest_twisted.ensureDeferred
async def test_large_body_is_readable(serve, client):
    seen_as_json(size=lambda r: len(r.body()))
    _, seen = await fetch(serve, client, "/r", method="PUT", data=b"z" * 300_000)
    assert seen["size"] == 300_000


@pytest_twisted.ensureDeferred
async def test_headers_keep_spelling_ignore_case_and_join_repeats(serve):
    @houweb.urlHandler("/h")
    def handler(request):
        headers = request.headers()
        assert isinstance(headers, dict)
        return json.dumps(
            {
                "mixed_key": "x-MiXeD" in list(headers),
                "lookup": headers["X-MIXED"],
                "get": headers.get("x-mixed"),
                "joined": headers["x-a"],
                "contains": "X-A" in headers,
            }
        )

    port = (await serve()).port_numbers()[0]
    payload = (
        b"GET /h HTTP/1.1\r\nHost: 127.0.0.1\r\nx-MiXeD: yes\r\nX-A: 1\r\nX-A: 2\r\n"
        b"Connection: close\r\n\r\n"
    )
    reply = await raw_request(port, payload)
    body = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert body == {
        "mixed_key": True,
        "lookup": "yes",
        "get": "yes",
        "joined": "1, 2",
        "contains": True,
    }


@pytest_twisted.ensureDeferred
async def test_cookies(serve, client):
    seen_as_json(cookies=lambda r: r.cookies())
    port, seen = await fetch(serve, client, "/r", headers={"Cookie": 'a=1; b="2"; junk; c=x=y'})
    assert seen["cookies"] == {"a": "1", "b": "2", "c": "x=y"}
    _, seen = await fetch(serve, client, "/r")
    assert seen["cookies"] == {}


@pytest_twisted.ensureDeferred
async def test_host_port_protocol_security_and_addresses(serve, client):
    seen_as_json(
        host=lambda r: r.host(),
        port=lambda r: r.port(),
        protocol=lambda r: r.protocol(),
        secure=lambda r: r.isSecure(),
        uri=lambda r: r.absoluteURI(),
        other=lambda r: r.absoluteURI("/x"),
        client=lambda r: list(r.clientAddress()),
    )
    server = await serve()
    port = server.port_numbers()[0]
    reply = await client.get(port, "/r?a=1")
    seen = json.loads(reply.body)
    assert seen["host"] == f"127.0.0.1:{port}"
    assert seen["port"] == port
    assert seen["protocol"] == "HTTP/1.1"
    assert seen["secure"] is False
    assert seen["uri"] == f"http://127.0.0.1:{port}/r?a=1"
    assert seen["other"] == f"http://127.0.0.1:{port}/x"
    assert seen["client"][0] == "127.0.0.1" and seen["client"][1] not in (0, port)


@pytest_twisted.ensureDeferred
async def test_serverAddress_is_the_local_address_and_port_each_request_arrived_on(serve, client):
    @houweb.urlHandler("/r", ports=[-1])
    def handler(request):
        addresses = {"server": request.serverAddress(), "client": request.clientAddress()}
        return houweb.Response(json.dumps(addresses), content_type="application/json")

    server = await serve(ports=[0])
    main, other = server.port_numbers()
    for port in (main, other):
        seen = json.loads((await client.get(port, "/r", headers={"Host": "localhost"})).body)
        assert seen["server"] == ["127.0.0.1", port]
        assert seen["client"][0] == "127.0.0.1" and seen["client"][1] != port


@pytest_twisted.ensureDeferred
async def test_http_10_protocol_and_missing_host(serve):
    seen_as_json(
        host=lambda r: r.host(), protocol=lambda r: r.protocol(), uri=lambda r: r.absoluteURI()
    )
    port = (await serve()).port_numbers()[0]
    reply = await raw_request(port, b"GET /r HTTP/1.0\r\n\r\n")
    seen = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert seen == {"host": "", "protocol": "HTTP/1.0", "uri": f"http://127.0.0.1:{port}/r"}


@pytest_twisted.ensureDeferred
async def test_request_methods_work_from_a_thread_the_handler_started(serve, client):
    @houweb.urlHandler("/t")
    def handler(request):
        results = {}

        def read():
            results.update(path=request.path(), GET=request.GET(), body=request.body().decode())

        worker = threading.Thread(target=read)
        worker.start()
        worker.join()
        return json.dumps(results)

    port = (await serve()).port_numbers()[0]
    reply = await client.post(port, "/t?q=1", data=b"hello")
    assert json.loads(reply.body) == {"path": "/t", "GET": {"q": "1"}, "body": "hello"}


def test_send_outside_async_handler_classes_raises():
    request = houweb.Request(
        method="GET",
        path="/",
        target="/",
        header_lines=[],
        local_address=("127.0.0.1", 1),
        client_address=("127.0.0.1", 2),
    )
    try:
        request.send(houweb.Response("x"))
    except RuntimeError as exc:
        assert "AsyncURLHandler" in str(exc)
    else:
        raise AssertionError("send() did not raise")


def test_each_call_returns_a_fresh_value():
    request = houweb.Request(
        method="GET",
        path="/",
        target="/?a=1",
        header_lines=[("A", "1")],
        local_address=("127.0.0.1", 1),
        client_address=("127.0.0.1", 2),
        get_lists={"a": ["1"]},
    )
    request.GET()["a"] = "changed"
    request.headers()["A"] = "changed"
    request.GETLists()["a"].append("x")
    assert request.GET() == {"a": "1"}
    assert request.headers() == {"A": "1"}
    assert request.GETLists() == {"a": ["1"]}


class _CountedName(str):
    """A header name that counts how often it is lowercased (the cost of a lookup)."""

    lowered = 0

    def lower(self):
        _CountedName.lowered += 1
        return str.lower(self)


def _many_headers(count: int) -> houweb.Request:
    lines = [(_CountedName(f"X-Header-{i}"), str(i)) for i in range(count)]
    return houweb.Request(
        method="GET",
        path="/",
        target="/",
        header_lines=lines,
        local_address=("127.0.0.1", 8008),
        client_address=("127.0.0.1", 5000),
    )


def test_header_lookups_cost_one_pass_over_the_headers_in_all():
    # 450 headers, 100 lookups: the old code lowercased every name several
    # times per lookup (about 10 million calls); an index built once needs 450.
    request = _many_headers(450)
    _CountedName.lowered = 0
    for i in range(100):
        assert request.header(f"x-header-{i}") == str(i)
        assert request.header("Authorization") == ""
    assert request.contentLength() == 0 and request.host() == ""
    assert _CountedName.lowered <= 450


def test_headers_join_repeats_keep_the_first_spelling_and_ignore_case():
    request = houweb.Request(
        method="GET",
        path="/",
        target="/",
        header_lines=[("X-A", "1"), ("Host", "h"), ("x-a", "2")],
        local_address=("127.0.0.1", 8008),
        client_address=("127.0.0.1", 5000),
    )
    headers = request.headers()
    assert headers == {"X-A": "1, 2", "Host": "h"}
    assert headers["x-A"] == "1, 2" and "HOST" in headers and headers.get("nope") is None
    assert request.header("x-a") == "1, 2" and request.header("nope", "d") == "d"
    headers["Added"] = "yes"  # a handler's own copy: lookups in any case still work
    assert headers["added"] == "yes" and request.header("Added") == ""
    assert request.headers() is not headers


def test_header_lookups_from_many_threads_agree():
    request = _many_headers(300)
    seen = []

    def look() -> None:
        seen.append([request.header(f"X-HEADER-{i}") for i in range(300)])

    threads = [threading.Thread(target=look) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert seen == [[str(i) for i in range(300)]] * 8


@pytest_twisted.ensureDeferred
async def test_each_request_knows_its_own_connections_client_address(serve, monkeypatch):
    # The client's address is asked of the transport once per connection
    # (twisted.web asked for every request, making a new address each time):
    # every request on a connection, and only on it, carries that address.
    from twisted.internet import tcp

    asked: list[object] = []
    get_peer = tcp.Server.getPeer

    def counted(transport: tcp.Server) -> Any:
        asked.append(transport)
        return get_peer(transport)

    monkeypatch.setattr(tcp.Server, "getPeer", counted)
    seen: list[tuple[str, int]] = []

    @houweb.urlHandler("/who")
    def who(request: houweb.Request) -> str:
        seen.append(request.clientAddress())
        return "ok"

    port = (await serve()).port_numbers()[0]
    expected = []
    for _ in range(2):
        raw = await connect_raw(port)
        local = raw.transport.getHost()
        for count in range(1, 4):
            raw.transport.write(b"GET /who HTTP/1.1\r\nHost: localhost\r\n\r\n")
            await until(lambda: raw.data.count(b"\r\n\r\nok") == count)  # noqa: B023
            expected.append((local.host, local.port))
        raw.transport.loseConnection()
        await raw.done
    assert seen == expected and expected[0] != expected[-1]
    assert len(asked) == 2
