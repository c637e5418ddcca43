"""
The one Klein route: requests Klein would route to houweb's router skip its
per-request werkzeug ``Map.bind`` and ``match`` (houweb's registry picks the
target anyway); any other request is still Klein's to answer, as before.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.web import http
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map

import houweb
from houweb._channel import HouwebRequest
from houweb._site import _klein_app, _Router, klein_routes_here

from .conftest import messages
from .support import raw_request
from .test_dispatch import _BrokenTarget


class _Bound:
    """Counts ``Map.bind`` calls (Klein binds its URL map once per request it renders)."""

    def __init__(self, monkeypatch) -> None:
        self.calls = 0
        original = Map.bind

        def bind(map_, *args, **kwargs):
            self.calls += 1
            return original(map_, *args, **kwargs)

        monkeypatch.setattr(Map, "bind", bind)


def _get(path: str, host: str = "localhost") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()


@pytest_twisted.ensureDeferred
async def test_a_request_is_routed_without_binding_kleins_url_map(serve, monkeypatch):
    houweb.urlHandler("/hello")(lambda request: houweb.Response("hi", content_type="text/plain"))
    port = (await serve()).port_numbers()[0]
    bound = _Bound(monkeypatch)
    reply = await raw_request(port, _get("/hello?x=1"))
    assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"\r\n\r\nhi"), reply
    missing = await raw_request(port, _get("/nowhere"))
    assert missing.startswith(b"HTTP/1.1 404 Not Found"), missing
    assert bound.calls == 0


@pytest_twisted.ensureDeferred
async def test_a_path_kleins_matcher_refuses_is_still_klein_s_to_answer(serve, monkeypatch):
    # werkzeug's rules do not match a newline inside a path: Klein answers its
    # own 404, as it always did, and no handler runs.
    ran: list[str] = []

    @houweb.urlHandler("/a", is_prefix=True)
    def a(request: houweb.Request) -> str:
        ran.append(request.path())
        return "a"

    port = (await serve()).port_numbers()[0]
    bound = _Bound(monkeypatch)
    reply = await raw_request(port, _get("/a/%0A/b"))
    assert reply.startswith(b"HTTP/1.1 404 "), reply
    assert bound.calls == 1
    assert ran == []
    assert (await raw_request(port, _get("/a/b"))).startswith(b"HTTP/1.1 200 OK")
    assert ran == ["/a/b"]


@pytest_twisted.ensureDeferred
async def test_a_route_that_raises_gets_a_500_and_the_server_keeps_serving(serve, logged):
    houweb.urlHandler("/hello")(lambda request: "hi")
    server = await serve()
    port = server.port_numbers()[0]
    failing = [True]

    def broken_filter(request: houweb.Request) -> None:
        if failing and request.path() == "/hello":
            failing.clear()
            raise RuntimeError("a broken request filter")
        return None

    server.site.houweb.request_filters.append(broken_filter)
    reply = await raw_request(port, _get("/hello"))
    assert reply.startswith(b"HTTP/1.1 500 "), reply
    assert failing == []  # the filter ran and raised
    assert (await raw_request(port, _get("/hello"))).endswith(b"\r\n\r\nhi")
    assert "a broken request filter" in "".join(
        str(e.get("log_failure", "")) for e in logged if e.get("log_failure") is not None
    )


@pytest.mark.parametrize("later", [False, True], ids=["raises", "fails_later"])
@pytest_twisted.ensureDeferred
async def test_a_target_that_cannot_answer_on_kleins_way_is_500_logged_and_the_server_goes_on(
    serve, registry, logged, monkeypatch, later
):
    # A path with a newline is Klein's to route (werkzeug matches "/\n" to
    # the router's branch): the target's failure goes through the router's
    # Deferred for Klein (_deliver_later), not its own way.
    from houweb._registry import PREFIX

    registry.add_path(PREFIX, "/", [], _BrokenTarget(later))
    houweb.urlHandler("/fine")(lambda request: "fine")
    port = (await serve()).port_numbers()[0]
    bound = _Bound(monkeypatch)
    reply = await raw_request(port, _get("/%0A"))
    assert bound.calls == 1  # Klein routed it
    assert reply.startswith(b"HTTP/1.1 500 "), reply
    assert b"Internal server error" in reply
    failures = [e for e in logged if e.get("log_failure") is not None]
    assert len(failures) == 1 and failures[0]["log_failure"].check(RuntimeError)
    assert "could not answer" in messages(failures)
    failures[0]["log_failure"].cleanFailure()
    assert (await raw_request(port, _get("/fine"))).endswith(b"\r\n\r\nfine")


def _treq(sent: bytes | None, method: bytes = b"GET") -> HouwebRequest:
    """
    A twisted.web request as the channel leaves it, with ``sent`` as its
    Host header (stored as the channel stores a head's headers) or none.
    """
    channel = http.HTTPChannel()
    channel.makeConnection(StringTransport())  # its local address: 10.0.0.1
    treq = HouwebRequest(channel)
    treq.method = method
    if sent is not None:
        treq.requestHeaders._rawHeaders[b"Host"] = [sent]
    return treq


_MAP = _klein_app(_Router(None)).url_map  # type: ignore[arg-type]
#: One site's remembered verdicts on Host headers, shared by all the examples.
_HOSTS: dict[bytes, bool] = {}


@settings(max_examples=400, deadline=None)
@given(
    path=st.text(min_size=0, max_size=12).map(lambda rest: "/" + rest),
    host=st.one_of(
        st.text(min_size=0, max_size=70),
        st.sampled_from(["[::1]", "[fe80::1%25eth0]", "LOCALHOST", "a..b", "x\ny", "[::1"]),
    ).map(lambda h: h.encode("utf-8")),
    sent_port=st.sampled_from([b"", b":80", b":8080", b":"]),
    has_host=st.booleans(),
    port=st.sampled_from(["", ":80", ":8080"]),
)
def test_only_requests_kleins_map_routes_to_the_router_skip_it(
    path, host, sent_port, has_host, port
):
    treq = _treq(host + sent_port if has_host else None)
    routed = klein_routes_here(treq, path)
    assert klein_routes_here(treq, path, _HOSTS) == routed  # remembered or not
    assert klein_routes_here(treq, path, _HOSTS) == routed
    if not routed:
        return
    # Klein binds its map to twisted.web's name for the host, with the local
    # port (``port`` stands for it).
    server_name = treq.getRequestHostname().decode("utf-8") + port
    try:
        endpoint, _ = _MAP.bind(server_name, "", path_info=path, default_method="GET").match()
    except HTTPException as exc:  # BadHost, NotFound...
        raise AssertionError(f"Klein would answer {exc!r} to {path!r} on {host!r}") from None
    assert endpoint in ("houweb", "houweb_branch")


def test_the_verdict_on_a_host_is_remembered_by_the_host_header_as_sent():
    hosts: dict[bytes, bool] = {}
    assert klein_routes_here(_treq(b"[::1]:8080"), "/", hosts) is True
    assert klein_routes_here(_treq(b"a..b:80"), "/", hosts) is False
    assert hosts == {b"[::1]:8080": True, b"a..b:80": False}
    # No Host (HTTP/1.0): judged on the local address each time, never
    # remembered (another listening address may have another name); nor is
    # a value twisted.web's expression may not match (a line break).
    assert klein_routes_here(_treq(None), "/", hosts) is True
    assert klein_routes_here(_treq(b"x\ny"), "/", hosts) is True
    assert len(hosts) == 2
    # A method that is not UTF-8 is Klein's to answer, whatever its Host.
    assert klein_routes_here(_treq(b"[::1]:8080", b"G\xffT"), "/", hosts) is False


@pytest_twisted.ensureDeferred
async def test_a_host_klein_cannot_bind_to_gets_400_every_time_it_is_sent(serve):
    # The router remembers which Host names Klein binds to: a refused one
    # stays refused, and the names beside it are still served.
    ran: list[str] = []

    @houweb.urlHandler("/act")
    def act(request: houweb.Request) -> str:
        ran.append(request.host())
        return "done"

    port = (await serve()).port_numbers()[0]
    for _ in range(3):
        reply = await raw_request(port, _get("/act", "a..localhost"))
        assert reply.startswith(b"HTTP/1.1 400 "), reply
        assert (await raw_request(port, _get("/act"))).endswith(b"\r\n\r\ndone")
    assert len(ran) == 3


@pytest_twisted.ensureDeferred
async def test_odd_host_headers_are_routed_without_klein_and_remembered_apart(serve, monkeypatch):
    # An IPv6 literal with a port, a name in capitals, the header's name in
    # capitals, a port, and no Host at all (HTTP/1.0): each is served by the
    # router, without binding Klein's map, first time and every time after.
    seen: list[str] = []

    @houweb.urlHandler("/where")
    def where(request: houweb.Request) -> str:
        seen.append(request.host())
        return "here"

    server = await serve()
    port = server.port_numbers()[0]
    bound = _Bound(monkeypatch)
    judged: list[bytes] = []
    binds = houweb._site._werkzeug_binds

    def counted(host: bytes) -> bool:
        judged.append(host)
        return binds(host)

    monkeypatch.setattr(houweb._site, "_werkzeug_binds", counted)
    heads = [
        f"GET /where HTTP/1.1\r\nHost: [::1]:{port}\r\nConnection: close\r\n\r\n",
        f"GET /where HTTP/1.1\r\nHost: LOCALHOST:{port}\r\nConnection: close\r\n\r\n",
        "GET /where HTTP/1.1\r\nHOST: localhost\r\nConnection: close\r\n\r\n",
        "GET /where HTTP/1.0\r\n\r\n",
    ]
    for _ in range(2):
        for head in heads:
            reply = await raw_request(port, head.encode())
            assert reply.startswith(b"HTTP/1.") and reply.endswith(b"\r\n\r\nhere"), reply
    assert bound.calls == 0
    assert seen == [f"[::1]:{port}", f"LOCALHOST:{port}", "localhost", ""] * 2
    # Each Host value judged once, as the channel stores it (the second
    # round's from memory); no Host, each time, on the local address.
    assert judged == [b"::1", b"LOCALHOST", b"localhost", b"127.0.0.1", b"127.0.0.1"]
