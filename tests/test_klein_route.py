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
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map

import houweb
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


class _Treq:
    """What :func:`klein_routes_here` reads of a twisted.web request."""

    def __init__(self, host: bytes, method: bytes) -> None:
        self._host = host
        self.method = method

    def getRequestHostname(self) -> bytes:
        return self._host


_MAP = _klein_app(_Router(None)).url_map  # type: ignore[arg-type]
#: One site's remembered verdicts on Host names, shared by all the examples.
_HOSTS: dict[bytes, bool] = {}


@settings(max_examples=400, deadline=None)
@given(
    path=st.text(min_size=0, max_size=12).map(lambda rest: "/" + rest),
    host=st.text(min_size=0, max_size=70).map(lambda h: h.encode("utf-8")),
    port=st.sampled_from(["", ":80", ":8080"]),
)
def test_only_requests_kleins_map_routes_to_the_router_skip_it(path, host, port):
    treq = _Treq(host, b"GET")
    routed = klein_routes_here(treq, path)
    assert klein_routes_here(treq, path, _HOSTS) == routed  # remembered or not
    assert klein_routes_here(treq, path, _HOSTS) == routed
    if not routed:
        return
    server_name = host.decode("utf-8") + port
    try:
        endpoint, _ = _MAP.bind(server_name, "", path_info=path, default_method="GET").match()
    except HTTPException as exc:  # BadHost, NotFound...
        raise AssertionError(f"Klein would answer {exc!r} to {path!r} on {host!r}") from None
    assert endpoint in ("houweb", "houweb_branch")


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
