"""
The checks of a request's headers (houweb/_guards.py): attacks played over
real sockets with the headers browsers send. Each proves the attack failed by
the side effect the handler would have left, not only by the status.
"""

from __future__ import annotations

import json

import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

import houweb
from houweb._config import ServerConfig
from houweb._guards import LOOPBACK_HOSTS, HostAllowList, Origin, OriginPolicy
from houweb._server import allowed_hosts

from .support import WSClient, _Collect, connect_raw, raw_request, ws_handshake

FORM = "application/x-www-form-urlencoded"


def register_victims(ran: list[str], tmp_path: object = None) -> None:
    """A handler, a prefix handler, an API function and a WebSocket that note each call."""

    @houweb.urlHandler("/act")
    def act(request: houweb.Request) -> str:
        ran.append(f"act {request.method()}")
        return "done"

    @houweb.apiFunction("scene")
    def delete_all(request: houweb.Request) -> str:
        ran.append("scene.delete_all")
        return "deleted"

    @houweb.webSocket("/ws")
    class Socket(houweb.WebSocket):
        async def connect(self, request: houweb.Request) -> None:
            ran.append("ws connect")
            await self.accept()

    if tmp_path is not None:
        houweb.registerStaticFilesDirectory(str(tmp_path), "/static")


def http(method: str, path: str, host: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close", *headers]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def api_form(name: str = "scene.delete_all") -> bytes:
    return b"json=" + json.dumps([name, [], {}]).encode()


# DNS rebinding: the Host allow-list


@pytest_twisted.ensureDeferred
async def test_a_foreign_host_gets_400_and_reaches_no_handler_file_api_or_socket(serve, tmp_path):
    ran: list[str] = []
    (tmp_path / "secret.txt").write_text("secret")
    register_victims(ran, tmp_path)
    port = (await serve()).port_numbers()[0]
    host = f"rebind.attacker.example:{port}"
    replies = [
        await raw_request(port, http("GET", "/act", host)),
        await raw_request(port, http("GET", "/static/secret.txt", host)),
        await raw_request(
            port, http("POST", "/api", host, f"Content-Type: {FORM}", body=api_form())
        ),
        await raw_request(port, ws_handshake("/ws").replace(b"127.0.0.1", host.encode())),
    ]
    for reply in replies:
        assert status(reply) == 400, reply
        assert b"ALLOWED_HOSTS" in reply
        assert b"secret" not in reply.split(b"\r\n\r\n", 1)[1]
    assert ran == []


@pytest_twisted.ensureDeferred
async def test_loopback_names_are_allowed_by_default_on_a_loopback_server(serve):
    ran: list[str] = []
    register_victims(ran)
    port = (await serve()).port_numbers()[0]
    for host in ("localhost", f"localhost:{port}", "app.localhost", f"127.0.0.1:{port}", "[::1]"):
        assert status(await raw_request(port, http("GET", "/act", host))) == 200, host
    assert ran == ["act GET"] * 5


@pytest_twisted.ensureDeferred
async def test_a_request_without_host_is_served_as_before(serve):
    ran: list[str] = []
    register_victims(ran)
    port = (await serve()).port_numbers()[0]
    reply = await raw_request(port, b"GET /act HTTP/1.0\r\n\r\n")
    assert status(reply) == 200 and ran == ["act GET"]


@pytest_twisted.ensureDeferred
async def test_two_host_headers_are_refused(serve):
    ran: list[str] = []
    register_victims(ran)
    port = (await serve()).port_numbers()[0]
    reply = await raw_request(port, http("GET", "/act", "localhost", "Host: evil.example"))
    assert status(reply) == 400 and ran == []


@pytest_twisted.ensureDeferred
async def test_allowed_hosts_from_the_settings_file_use_django_patterns(serve, tmp_path):
    ran: list[str] = []
    register_victims(ran)
    settings = tmp_path / "settings.py"
    settings.write_text("ALLOWED_HOSTS = ['.example.com', 'exact.test']\n")
    port = (await serve(settings=str(settings))).port_numbers()[0]
    for host, expected in [
        ("example.com", 200),
        ("a.b.example.com:99", 200),
        ("EXACT.test", 200),
        ("exact.test.", 200),
        ("sub.exact.test", 400),
        ("badexample.com", 400),
        ("localhost", 400),  # the settings replace the default
        ("ex ample.com", 400),
    ]:
        assert status(await raw_request(port, http("GET", "/act", host))) == expected, host
    assert ran == ["act GET"] * 4


@pytest_twisted.ensureDeferred
async def test_allowed_hosts_given_to_run_win_over_the_settings_file(serve):
    ran: list[str] = []
    register_victims(ran)
    server = await serve(settings={"ALLOWED_HOSTS": ["one.test"]}, allowed_hosts=["two.test"])
    port = server.port_numbers()[0]
    assert status(await raw_request(port, http("GET", "/act", "one.test"))) == 400
    assert status(await raw_request(port, http("GET", "/act", "two.test"))) == 200
    assert ran == ["act GET"]


@pytest_twisted.ensureDeferred
async def test_x_forwarded_host_is_checked_only_when_use_x_forwarded_host_is_on(serve):
    ran: list[str] = []
    register_victims(ran)
    off = (await serve()).port_numbers()[0]
    on = (
        await serve(settings={"USE_X_FORWARDED_HOST": True, "ALLOWED_HOSTS": ["public.test"]})
    ).port_numbers()[0]
    forwarded = "X-Forwarded-Host: evil.example"
    assert status(await raw_request(off, http("GET", "/act", "localhost", forwarded))) == 200
    assert status(await raw_request(on, http("GET", "/act", "public.test", forwarded))) == 400
    good = "X-Forwarded-Host: public.test"
    assert status(await raw_request(on, http("GET", "/act", "internal", good))) == 200
    assert ran == ["act GET", "act GET"]


def test_the_default_allow_list_is_loopback_names_only_when_every_address_is_loopback():
    def hosts(**arguments: object) -> tuple[str, ...]:
        return allowed_hosts(ServerConfig.from_arguments(**arguments), None)

    assert hosts() == LOOPBACK_HOSTS
    # The loopback addresses listened on are allowed names too (the review:
    # a server on 127.0.0.2 answered its own http://127.0.0.2:8008/ with 400).
    assert hosts(interface="::1", listen=["tcp:9000:interface=127.0.0.2"]) == (
        *LOOPBACK_HOSTS,
        "127.0.0.2",
    )
    assert hosts(interface="0.0.0.0") == ("*",)
    assert hosts(interface="192.168.1.5") == ("*",)
    assert hosts(listen=["ssl:8443:privateKey=k.pem"]) == ("*",)  # every interface
    assert hosts(listen=["tcp6:9000:interface=\\:\\:1"]) == LOOPBACK_HOSTS
    assert hosts(interface="0.0.0.0", allowed_hosts=["my.host"]) == ("my.host",)
    assert hosts(allowed_hosts=[]) == LOOPBACK_HOSTS  # empty: the default, as in Django
    config = ServerConfig.from_arguments()
    assert allowed_hosts(config, ()) == LOOPBACK_HOSTS
    assert allowed_hosts(config, ("from.settings",)) == ("from.settings",)


def test_host_patterns_follow_django():
    hosts = HostAllowList([".example.com", "exact.test"])
    assert hosts.allows(b"example.com") and hosts.allows(b"x.example.com:8008")
    assert not hosts.allows(b"notexample.com") and not hosts.allows(b"")
    assert HostAllowList(["*"]).allows(b"anything")
    assert not HostAllowList([]).allows(b"localhost")


# Cross-site request forgery: the Origin check


@pytest_twisted.ensureDeferred
async def test_a_cross_site_form_post_to_api_gets_a_json_403_and_runs_nothing(serve):
    ran: list[str] = []
    register_victims(ran)
    port = (await serve()).port_numbers()[0]
    reply = await raw_request(
        port,
        http(
            "POST",
            "/api",
            f"127.0.0.1:{port}",
            f"Content-Type: {FORM}",
            "Origin: http://evil.example",
            "Sec-Fetch-Site: cross-site",
            "Sec-Fetch-Mode: navigate",
            body=api_form(),
        ),
    )
    assert status(reply) == 403
    head, body = reply.split(b"\r\n\r\n", 1)
    assert b"Content-Type: application/json" in head
    assert "Origin" in json.loads(body)["error"]
    assert ran == []


@pytest_twisted.ensureDeferred
async def test_state_changing_methods_from_foreign_origins_get_403(serve):
    ran: list[str] = []
    register_victims(ran)
    port = (await serve()).port_numbers()[0]
    host = f"127.0.0.1:{port}"
    foreign = [
        "Origin: http://evil.example",
        "Origin: null",  # sandboxed iframes, file: pages
        f"Origin: http://127.0.0.1:{port + 1 if port < 65535 else port - 1}",  # another port
        f"Origin: https://127.0.0.1:{port}",  # another scheme
        "Origin: not an origin",
    ]
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for origin in foreign:
            reply = await raw_request(port, http(method, "/act", host, origin))
            assert status(reply) == 403, (method, origin)
    # No Origin, but the browser says the request is cross-site.
    reply = await raw_request(port, http("POST", "/act", host, "Sec-Fetch-Site: cross-site"))
    assert status(reply) == 403
    assert ran == []


@pytest_twisted.ensureDeferred
async def test_same_origin_trusted_and_originless_requests_change_state_as_before(serve, client):
    ran: list[str] = []
    register_victims(ran)
    settings = {
        "CORS_ORIGIN_WHITELIST": ["http://cors.test:3000"],
        "CSRF_TRUSTED_ORIGINS": ["https://csrf.test", "https://*.trusted.test"],
    }
    port = (await serve(settings=settings)).port_numbers()[0]
    host = f"localhost:{port}"
    for origin in (
        f"http://localhost:{port}",
        f"HTTP://LOCALHOST:{port}",
        "http://cors.test:3000",
        "https://csrf.test",
        "https://csrf.test:443",
        "https://deep.sub.trusted.test",
    ):
        reply = await raw_request(port, http("POST", "/act", host, f"Origin: {origin}"))
        assert status(reply) == 200, origin
    for site in ("same-origin", "same-site", "none"):
        reply = await raw_request(port, http("POST", "/act", host, f"Sec-Fetch-Site: {site}"))
        assert status(reply) == 200, site
    # Non-browser clients send no Origin: treq (like curl and houweb.client).
    assert (await client.post(port, "/act", data=b"")).status == 200
    assert len(ran) == 10
    reply = await raw_request(port, http("POST", "/act", host, "Origin: https://trusted.test"))
    assert status(reply) == 403 and len(ran) == 10  # *.trusted.test is subdomains only


@pytest_twisted.ensureDeferred
async def test_safe_methods_from_foreign_origins_are_served(serve):
    ran: list[str] = []
    register_victims(ran)
    port = (await serve()).port_numbers()[0]
    for method in ("GET", "HEAD"):
        reply = await raw_request(
            port, http(method, "/act", "localhost", "Origin: http://evil.example")
        )
        assert status(reply) == 200, method
    assert ran == ["act GET", "act HEAD"]


# Cross-site WebSocket hijacking


@pytest_twisted.ensureDeferred
async def test_a_websocket_handshake_from_a_foreign_origin_gets_403_and_no_connect(serve):
    ran: list[str] = []
    register_victims(ran)
    port = (await serve()).port_numbers()[0]
    handshake = ws_handshake("/ws").replace(
        b"Host: 127.0.0.1", f"Host: 127.0.0.1:{port}\r\nOrigin: http://evil.example".encode()
    )
    reply = await raw_request(port, handshake)
    assert status(reply) == 403 and b"Origin" in reply
    assert ran == []
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}/ws", origin=f"http://127.0.0.1:{port}")
    factory.protocol = WSClient
    own = await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
    await own.opened.addTimeout(10, reactor)
    assert ran == ["ws connect"]
    own.sendClose(1000)
    await own.wait_closed()


# The token, checked before the body


@pytest_twisted.ensureDeferred
async def test_without_the_token_the_401_comes_before_100_continue_and_any_body(serve):
    ran: list[str] = []
    register_victims(ran)
    port = (await serve(token="s3cret")).port_numbers()[0]
    conn = await connect_raw(port)
    conn.transport.write(
        b"POST /act HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000000\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    # No body is ever sent: the answer must come from the headers alone.
    reply = await conn.done.addTimeout(10, reactor)
    assert reply.startswith(b"HTTP/1.1 401 ")
    assert b"100 Continue" not in reply
    assert b'WWW-Authenticate: Bearer realm="houweb"' in reply
    assert ran == []


@pytest_twisted.ensureDeferred
async def test_the_bearer_scheme_word_is_case_insensitive(serve):
    ran: list[str] = []
    register_victims(ran)
    port = (await serve(token="s3cret")).port_numbers()[0]
    for scheme in ("Bearer", "bearer", "BEARER"):
        reply = await raw_request(
            port, http("GET", "/act", "localhost", f"Authorization: {scheme} s3cret")
        )
        assert status(reply) == 200, scheme
    for value in ("Basic s3cret", "Bearer s3cre", "Bearer s3cret2", "s3cret", "Bearer"):
        reply = await raw_request(port, http("GET", "/act", "localhost", f"Authorization: {value}"))
        assert status(reply) == 401, value
    assert ran == ["act GET"] * 3


@pytest_twisted.ensureDeferred
async def test_a_cors_preflight_is_answered_without_the_token(serve):
    ran: list[str] = []
    register_victims(ran)
    server = await serve(token="s3cret", settings={"CORS_ORIGIN_WHITELIST": ["http://app.test"]})
    port = server.port_numbers()[0]
    reply = await raw_request(
        port,
        http(
            "OPTIONS",
            "/act",
            "localhost",
            "Origin: http://app.test",
            "Access-Control-Request-Method: POST",
        ),
    )
    assert status(reply) == 200 and b"Access-Control-Allow-Origin: http://app.test" in reply
    assert ran == []


def test_origins_compare_scheme_host_and_port():
    assert Origin.parse("http://a.test") == Origin("http", "a.test", 80)
    assert Origin.parse("https://A.test:443/") == Origin("https", "a.test", 443)
    assert Origin.parse("null") is None and Origin.parse("ftp://a.test") is None
    policy = OriginPolicy(["*"])
    assert not policy.foreign(b"http://evil.example", None, None)


@pytest_twisted.ensureDeferred
async def test_the_allow_list_can_differ_per_port_for_set_settings_for_port(serve):
    ran: list[str] = []
    houweb.urlHandler("/act", ports=[-1])(lambda request: ran.append("act") or "done")
    server = await serve(ports=[0])
    main, extra = server.port_numbers()
    server.context.guard.set_allowed_hosts(["extra.test"], port=extra)
    assert status(await raw_request(extra, http("GET", "/act", "extra.test"))) == 200
    assert status(await raw_request(extra, http("GET", "/act", "localhost"))) == 400
    assert status(await raw_request(main, http("GET", "/act", "localhost"))) == 200
    assert status(await raw_request(main, http("GET", "/act", "extra.test"))) == 400
    assert ran == ["act", "act"]


# Found by the security review


@pytest_twisted.ensureDeferred
async def test_a_request_target_that_is_not_a_path_gets_400_and_the_server_goes_on(serve):
    # An absolute-form target (what a client sends a proxy) used to make the
    # routing loop forever on the reactor: one request stopped the server.
    # Now it is reduced to its path, with its authority checked as the Host
    # (tests/test_request_targets.py); any other target is 400.
    ran: list[str] = []
    register_victims(ran)
    port = (await serve()).port_numbers()[0]
    for target in ("act", "*", "evil:80"):
        reply = await raw_request(port, http("GET", target, "localhost"), timeout=5)
        assert status(reply) == 400, (target, reply)
        assert b"request target" in reply
    reply = await raw_request(port, http("GET", "http://evil.example/act", "localhost"), timeout=5)
    assert status(reply) == 400 and b"ALLOWED_HOSTS" in reply
    reply = await raw_request(port, http("OPTIONS", "*", "localhost"), timeout=5)
    assert status(reply) == 400, reply
    assert ran == []
    assert status(await raw_request(port, http("GET", "http://localhost/act", "localhost"))) == 200
    assert status(await raw_request(port, http("GET", "/act", "localhost"))) == 200
    assert ran == ["act GET", "act GET"]


@pytest_twisted.ensureDeferred
async def test_an_options_request_that_is_no_preflight_needs_the_token(serve):
    # The guard let an OPTIONS with a whitelisted Origin and an empty
    # Access-Control-Request-Method through without the token, and the CORS
    # filter (which wants a non-empty one) passed it on to the handler.
    ran: list[str] = []
    register_victims(ran)
    settings = {"CORS_ORIGIN_WHITELIST": ["http://app.test"]}
    port = (await serve(token="s3cret", settings=settings)).port_numbers()[0]
    for request_method in ("", " ", "\t"):
        reply = await raw_request(
            port,
            http(
                "OPTIONS",
                "/act",
                "localhost",
                "Origin: http://app.test",
                f"Access-Control-Request-Method:{request_method}",
            ),
        )
        assert status(reply) == 401, (request_method, reply)
    assert ran == []


@pytest_twisted.ensureDeferred
async def test_a_host_klein_cannot_bind_to_gets_400_not_500(serve, logged):
    # ".localhost" passes the allow-list (Django's pattern), but Klein
    # IDNA-encodes the Host when it binds its URL map: it raised, a 500 and
    # a critical traceback for anyone to trigger.
    ran: list[str] = []
    register_victims(ran)
    port = (await serve()).port_numbers()[0]
    for host in (".localhost", "a..localhost", "x" * 64 + ".localhost"):
        reply = await raw_request(port, http("GET", "/act", host))
        assert status(reply) == 400, (host, reply)
        assert b"Host" in reply
    assert ran == []
    assert not [
        e for e in logged if e.get("log_level") is not None and e["log_level"].name == "critical"
    ]


@pytest_twisted.ensureDeferred
async def test_a_preflight_from_a_foreign_origin_reaches_no_handler(serve):
    # Any page makes the browser send OPTIONS (a preflight) to any URL, by
    # fetch() with a method like DELETE or a custom header. OPTIONS was
    # exempt from the Origin check, so a handler that acts on anything but
    # GET ("if request.method() == 'GET': show... else: act") acted on it.
    ran: list[str] = []

    @houweb.urlHandler("/delete")
    def delete(request: houweb.Request) -> str:
        if request.method() == "GET":
            return "<form method=post>...</form>"
        ran.append(f"deleted on {request.method()}")
        return "deleted"

    settings = {"CORS_ORIGIN_WHITELIST": ["http://app.test"]}
    port = (await serve(settings=settings)).port_numbers()[0]
    host = f"localhost:{port}"
    preflight = ("Access-Control-Request-Method: DELETE", "Access-Control-Request-Headers: x-a")
    for origin in ("Origin: http://evil.example", "Origin: null"):
        reply = await raw_request(port, http("OPTIONS", "/delete", host, origin, *preflight))
        assert status(reply) == 403, (origin, reply)
        assert b"Access-Control-Allow-Origin" not in reply
    reply = await raw_request(port, http("OPTIONS", "/delete", host, "Sec-Fetch-Site: cross-site"))
    assert status(reply) == 403
    assert ran == []
    # A whitelisted origin's preflight is still answered by houweb itself;
    # same-origin and non-browser OPTIONS reach the handler as before.
    reply = await raw_request(
        port, http("OPTIONS", "/delete", host, "Origin: http://app.test", *preflight)
    )
    assert status(reply) == 200 and b"Access-Control-Allow-Methods" in reply
    assert ran == []
    reply = await raw_request(port, http("OPTIONS", "/delete", host, f"Origin: http://{host}"))
    assert status(reply) == 200
    assert status(await raw_request(port, http("OPTIONS", "/delete", host))) == 200
    assert ran == ["deleted on OPTIONS"] * 2


@pytest_twisted.ensureDeferred
async def test_a_server_on_another_loopback_address_answers_its_own_address(serve):
    ran: list[str] = []
    register_victims(ran)
    port = (await serve(interface="127.0.0.2")).port_numbers()[0]
    conn = _Collect()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.2", port), conn)
    conn.transport.write(http("GET", "/act", f"127.0.0.2:{port}"))
    reply = await conn.done.addTimeout(10, reactor)
    assert status(reply) == 200, reply
    assert ran == ["act GET"]
