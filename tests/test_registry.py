"""Routing and port binding: which handler answers which request (spec §5, §6)."""

from __future__ import annotations

import pytest
import pytest_twisted

import houweb
from houweb._registry import Registry, normalize_ports

from .conftest import messages


def echo(name: str):
    def handler(request: houweb.Request) -> houweb.Response:
        return houweb.Response(f"{name} {request.path()}")

    return handler


@pytest_twisted.ensureDeferred
async def test_trailing_slash_is_irrelevant_both_ways(serve, client):
    houweb.urlHandler("/hello")(echo("h"))
    houweb.urlHandler("/bye/")(echo("b"))
    server = await serve()
    port = server.port_numbers()[0]
    assert (await client.get(port, "/hello")).text == "h /hello"
    assert (await client.get(port, "/hello/")).text == "h /hello/"
    assert (await client.get(port, "/bye")).text == "b /bye"


@pytest_twisted.ensureDeferred
async def test_exact_handler_does_not_match_subpaths(serve, client):
    houweb.urlHandler("/hello")(echo("h"))
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/hello/world")).status == 404
    assert (await client.get(port, "/hello//")).status == 404


@pytest_twisted.ensureDeferred
async def test_prefix_handler_matches_subpaths_but_not_longer_names(serve, client):
    houweb.urlHandler("/node/info", is_prefix=True)(echo("n"))
    port = (await serve()).port_numbers()[0]
    for path in ("/node/info", "/node/info/", "/node/info/obj/geo1"):
        assert (await client.get(port, path)).text == f"n {path}"
    assert (await client.get(port, "/node/information")).status == 404


@pytest_twisted.ensureDeferred
async def test_longest_prefix_wins(serve, client):
    houweb.urlHandler("/a", is_prefix=True)(echo("a"))
    houweb.urlHandler("/a/b", is_prefix=True)(echo("ab"))
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/a/b/c")).text == "ab /a/b/c"
    assert (await client.get(port, "/a/c")).text == "a /a/c"


@pytest_twisted.ensureDeferred
async def test_exact_beats_prefix_on_the_same_path(serve, client):
    houweb.urlHandler("/p")(echo("exact"))
    houweb.urlHandler("/p", is_prefix=True)(echo("prefix"))
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/p")).text == "exact /p"
    assert (await client.get(port, "/p/x")).text == "prefix /p/x"


@pytest_twisted.ensureDeferred
async def test_root_prefix_handler_matches_everything(serve, client):
    houweb.urlHandler("/", is_prefix=True)(echo("root"))
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/any/thing")).text == "root /any/thing"


@pytest_twisted.ensureDeferred
async def test_registering_a_path_again_replaces_it_with_a_warning(serve, client, logged):
    houweb.urlHandler("/same")(echo("first"))
    houweb.urlHandler("/same")(echo("second"))
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/same")).text == "second /same"
    assert "replaced" in messages(logged)


@pytest_twisted.ensureDeferred
async def test_decorator_returns_the_function_and_names_never_clash(serve, client):
    def make(text: str):
        def handler(request):  # same __name__ each time
            return text

        return handler

    one, two = make("one"), make("two")
    assert houweb.urlHandler("/one")(one) is one
    assert houweb.urlHandler("/two")(two) is two
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/one")).text == "one"
    assert (await client.get(port, "/two")).text == "two"


@pytest.mark.parametrize("path", ["hello", "/a?b", "/a#b", "/api", "/api/"])
def test_bad_or_reserved_paths_are_rejected(registry, path):
    with pytest.raises(ValueError):
        houweb.urlHandler(path)


@pytest_twisted.ensureDeferred
async def test_handler_registered_while_running_answers_at_once(serve, client):
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/late")).status == 404
    houweb.urlHandler("/late")(echo("late"))
    assert (await client.get(port, "/late")).text == "late /late"


@pytest_twisted.ensureDeferred
async def test_percent_encoded_utf8_path_reaches_decoded_registration(serve, client):
    houweb.urlHandler("/café")(echo("c"))
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/caf%C3%A9")).text == "c /café"


@pytest_twisted.ensureDeferred
async def test_invalid_percent_encoding_or_utf8_is_400_and_handler_not_called(serve, client):
    called = []
    houweb.urlHandler("/", is_prefix=True)(lambda r: called.append(r) or "x")
    port = (await serve()).port_numbers()[0]
    for path in ("/bad%ZZ", "/%FF", "/a%0"):
        reply = await client.get(port, path)
        assert reply.status == 400
        assert b"invalid percent-encoding or UTF-8 in the request path" in reply.body
    assert called == []


@pytest_twisted.ensureDeferred
async def test_no_match_is_404_json_when_accepted(serve, client):
    port = (await serve()).port_numbers()[0]
    reply = await client.get(port, "/nope", headers={"Accept": "application/json"})
    assert reply.status == 404
    assert reply.body == b'{"error": "Not found: /nope"}'
    assert reply.header("Content-Type") == "application/json"


@pytest_twisted.ensureDeferred
async def test_every_method_reaches_the_handler(serve, client):
    houweb.urlHandler("/m")(lambda request: request.method())
    port = (await serve()).port_numbers()[0]
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS", "POST"):
        assert (await client.request(method, port, "/m")).text == method


@pytest_twisted.ensureDeferred
async def test_head_runs_the_handler_and_sends_no_body(serve, client):
    seen = []

    @houweb.urlHandler("/h")
    def handler(request):
        seen.append(request.method())
        return "twelve bytes"

    port = (await serve()).port_numbers()[0]
    reply = await client.request("HEAD", port, "/h")
    assert reply.status == 200 and reply.body == b""
    assert reply.header("Content-Length") == "12"
    assert seen == ["HEAD"]


@pytest_twisted.ensureDeferred
async def test_default_binding_is_the_main_port_and_minus_one_is_every_port(serve, client):
    houweb.urlHandler("/main")(echo("m"))
    houweb.urlHandler("/all", ports=[-1])(echo("a"))
    server = await serve(ports=[0])
    main, extra = server.port_numbers()
    assert (await client.get(main, "/main")).status == 200
    assert (await client.get(extra, "/main")).status == 404
    assert (await client.get(main, "/all")).status == 200
    assert (await client.get(extra, "/all")).status == 200


@pytest_twisted.ensureDeferred
async def test_listen_endpoints_serve_minus_one_handlers(serve, client):
    houweb.urlHandler("/all", ports=[-1])(echo("a"))
    server = await serve(listen=["tcp:0:interface=127.0.0.1"])
    main, listened = server.port_numbers()
    assert (await client.get(listened, "/all")).status == 200


@pytest_twisted.ensureDeferred
async def test_handler_bound_to_a_port_number_answers_only_there(serve, client, registry):
    server = await serve(ports=[0])
    main, extra = server.port_numbers()
    houweb.urlHandler("/only", ports=[extra])(echo("o"))
    houweb.urlHandler("/main-too", ports=["main"])(echo("m"))
    assert (await client.get(extra, "/only")).status == 200
    assert (await client.get(main, "/only")).status == 404
    assert (await client.get(main, "/main-too")).status == 200


@pytest.mark.parametrize("ports", [[b"other"], [70000], [-2], [True], "8008", [1.5]])
def test_bad_ports_are_rejected(registry, ports):
    with pytest.raises((ValueError, TypeError)):
        houweb.urlHandler("/x", ports=ports)


def test_ports_normalise_to_bindings():
    assert normalize_ports([]) == {0}
    assert normalize_ports(["main"]) == {0}
    assert normalize_ports([-1, 9000]) == {-1, 9000}


@pytest_twisted.ensureDeferred
async def test_binding_to_a_port_that_does_not_listen_is_warned_about(serve, logged):
    houweb.urlHandler("/x", ports=[1])(echo("x"))
    await serve()
    assert "bound to port 1, which does not listen" in messages(logged)


@pytest_twisted.ensureDeferred
async def test_specific_binding_beats_all_ports_binding(serve, client):
    houweb.urlHandler("/s", ports=[-1])(echo("all"))
    server = await serve()
    port = server.port_numbers()[0]
    houweb.urlHandler("/s", ports=[port])(echo("specific"))
    assert (await client.get(port, "/s")).text == "specific /s"


def test_match_prefers_longest_then_exact_static_prefix():
    registry = Registry()
    registry.add_path("prefix", "/s", [], "prefix")
    registry.add_path("static", "/s", [], "static")
    assert registry.match("/s/x", 80, 80).target == "static"
    registry.add_path("prefix", "/s/x", [], "deeper")
    assert registry.match("/s/x/y", 80, 80).target == "deeper"
    assert registry.match("/other", 80, 80) is None


def test_a_later_registration_replaces_an_earlier_one_on_every_port_they_share(registry, logged):
    registry.add_path("exact", "/a", [0], "old")
    registry.add_path("exact", "/a", [0, 9000], "new")
    assert registry.match("/a", 8008, 8008).target == "new"  # the main port
    assert registry.match("/a", 9000, 8008).target == "new"
    assert "exact registration for /a replaces the earlier one on the main port" in messages(logged)
    registry.add_function("f", [0, 9000], "first")
    registry.add_function("f", [9000], "second")
    assert registry.function("f", 9000, 8008) == "second"
    assert registry.function("f", 8008, 8008) == "first"  # not shared: kept


def test_a_main_port_registration_replaces_one_bound_to_the_main_ports_number(registry):
    registry.add_path("exact", "/b", [8008], "by number")
    registry.add_path("exact", "/b", [0], "main")
    assert registry.match("/b", 8008, 8008).target == "main"
    assert registry.main_port_overlaps(8008) == [
        "exact registration for /b for ports [0] replaces the one for ports [8008] on main port 8008"
    ]
    assert registry.main_port_overlaps(8009) == []
    assert registry.match("/b", 8008, 8009).target == "by number"  # 8008 not the main port here


def test_a_specific_binding_still_beats_every_port_whatever_the_order(registry):
    registry.add_path("exact", "/c", [9000], "specific")
    registry.add_path("exact", "/c", [-1], "all")
    assert registry.match("/c", 9000, 8008).target == "specific"
    assert registry.match("/c", 8008, 8008).target == "all"


@pytest_twisted.ensureDeferred
async def test_overlap_on_the_main_ports_number_answers_from_the_later_and_is_warned_at_start(
    serve, client, logged
):
    from .children import free_port

    port = free_port()
    houweb.urlHandler("/d", ports=[port])(lambda request: "by number")
    houweb.urlHandler("/d", ports=[0])(lambda request: "main")
    await serve(port=port)
    assert (await client.get(port, "/d")).text == "main"
    assert f"replaces the one for ports [{port}] on main port {port}" in messages(logged)
