"""CORS for whitelisted origins, over real HTTP (spec §12.2)."""

from __future__ import annotations

import pytest
import pytest_twisted

import houweb

ORIGIN = "http://localhost:3000"
PREFLIGHT = {"Origin": ORIGIN, "Access-Control-Request-Method": "PUT"}


async def start(serve, calls=None, origins=(ORIGIN,), **arguments):
    @houweb.urlHandler("/thing")
    def thing(request):
        if calls is not None:
            calls.append(request.method())
        return houweb.Response("thing")

    @houweb.urlHandler("/boom")
    def boom(request):
        raise RuntimeError("boom")

    @houweb.urlHandler("/varied")
    def varied(request):
        response = houweb.Response("varied")
        response.setHeader("Vary", "Accept-Encoding")
        return response

    settings = {"CORS_ALLOWED_ORIGINS": list(origins)}
    return (await serve(settings=settings, **arguments)).port_numbers()[0]


@pytest.mark.parametrize(("path", "status"), [("/thing", 200), ("/nope", 404), ("/boom", 500)])
@pytest_twisted.ensureDeferred
async def test_a_whitelisted_origin_is_echoed_on_every_answer(serve, client, path, status):
    port = await start(serve)
    reply = await client.get(port, path, headers={"Origin": ORIGIN})
    assert reply.status == status
    assert reply.header("Access-Control-Allow-Origin") == ORIGIN
    assert reply.header("Vary") == "Origin"
    assert reply.header("Access-Control-Allow-Credentials") is None


@pytest_twisted.ensureDeferred
async def test_origin_is_appended_to_an_existing_vary(serve, client):
    port = await start(serve)
    reply = await client.get(port, "/varied", headers={"Origin": ORIGIN})
    assert reply.header("Vary") == "Accept-Encoding, Origin"


@pytest_twisted.ensureDeferred
async def test_a_413_and_a_static_file_get_the_headers_too(serve, client, tmp_path):
    (tmp_path / "a.css").write_text("body {}")
    houweb.registerStaticFilesDirectory(str(tmp_path))
    port = await start(serve, max_request_size=10)
    static = await client.get(port, "/static/a.css", headers={"Origin": ORIGIN})
    assert static.status == 200 and static.header("Access-Control-Allow-Origin") == ORIGIN
    big = await client.post(port, "/thing", data=b"x" * 100, headers={"Origin": ORIGIN})
    assert big.status == 413 and big.header("Access-Control-Allow-Origin") == ORIGIN


@pytest_twisted.ensureDeferred
async def test_a_whitelisted_preflight_is_answered_without_the_handler(serve, client):
    calls = []
    port = await start(serve, calls)
    reply = await client.request("OPTIONS", port, "/thing", headers=PREFLIGHT)
    assert reply.status == 200 and reply.body == b"" and calls == []
    assert reply.header("Access-Control-Allow-Origin") == ORIGIN
    assert reply.header("Vary") == "Origin"
    assert reply.header("Access-Control-Allow-Methods") == "DELETE, GET, OPTIONS, PATCH, POST, PUT"
    assert reply.header("Access-Control-Allow-Headers") == (
        "accept, authorization, content-type, origin, user-agent, x-csrftoken, x-requested-with"
    )
    assert reply.header("Access-Control-Max-Age") == "86400"


@pytest_twisted.ensureDeferred
async def test_a_preflight_needs_no_token(serve, client):
    port = await start(serve, token="secret")
    reply = await client.request("OPTIONS", port, "/thing", headers=PREFLIGHT)
    assert reply.status == 200
    refused = await client.get(port, "/thing", headers={"Origin": ORIGIN})
    assert refused.status == 401 and refused.header("Access-Control-Allow-Origin") == ORIGIN


@pytest_twisted.ensureDeferred
async def test_other_origins_get_no_cors_headers_and_a_normal_answer(serve, client):
    calls = []
    port = await start(serve, calls)
    reply = await client.get(port, "/thing", headers={"Origin": "http://evil.test"})
    assert reply.status == 200 and reply.body == b"thing"
    assert reply.header("Access-Control-Allow-Origin") is None and reply.header("Vary") is None
    # A foreign origin's preflight never reaches the handler (issue 13's
    # Origin check covers OPTIONS): 403, and the browser blocks as before.
    preflight = await client.request(
        "OPTIONS", port, "/thing", headers={**PREFLIGHT, "Origin": "http://evil.test"}
    )
    assert preflight.status == 403
    assert preflight.header("Access-Control-Allow-Origin") is None
    assert calls == ["GET"]


@pytest_twisted.ensureDeferred
async def test_an_options_without_request_method_reaches_the_handler(serve, client):
    calls = []
    port = await start(serve, calls)
    reply = await client.request("OPTIONS", port, "/thing", headers={"Origin": ORIGIN})
    assert reply.body == b"thing" and calls == ["OPTIONS"]
    assert reply.header("Access-Control-Allow-Origin") == ORIGIN


@pytest_twisted.ensureDeferred
async def test_a_star_echoes_any_origin(serve, client):
    port = await start(serve, origins=["*"])
    reply = await client.get(port, "/thing", headers={"Origin": "https://anything.test:9"})
    assert reply.header("Access-Control-Allow-Origin") == "https://anything.test:9"


@pytest_twisted.ensureDeferred
async def test_origins_compare_without_case_or_trailing_slash_but_with_ports(serve, client):
    port = await start(serve, origins=["HTTP://A.test/"])
    same = await client.get(port, "/thing", headers={"Origin": "http://a.test"})
    assert same.header("Access-Control-Allow-Origin") == "http://a.test"
    other_port = await client.get(port, "/thing", headers={"Origin": "http://a.test:80"})
    assert other_port.header("Access-Control-Allow-Origin") is None


@pytest_twisted.ensureDeferred
async def test_without_a_whitelist_there_are_no_cors_headers(serve, client):
    houweb.urlHandler("/thing")(lambda request: "thing")
    port = (await serve()).port_numbers()[0]
    reply = await client.request("OPTIONS", port, "/thing", headers=PREFLIGHT)
    assert reply.status == 403 and reply.header("Access-Control-Allow-Origin") is None
    reply = await client.request("OPTIONS", port, "/thing")  # not from a browser
    assert reply.body == b"thing" and reply.header("Access-Control-Allow-Origin") is None


# setCORSWhitelist (Houdini 21, from observed use)


@pytest_twisted.ensureDeferred
async def test_setCORSWhitelist_feeds_the_same_whitelist_as_the_settings_file(serve, client):
    calls: list[str] = []
    houweb.setCORSWhitelist(["http://app.example:8080"], "main")

    @houweb.urlHandler("/thing")
    def thing(request):
        calls.append(request.method())
        return houweb.Response("thing")

    port = (await serve(settings={"CORS_ALLOWED_ORIGINS": [ORIGIN]})).port_numbers()[0]
    for origin in ("http://app.example:8080", ORIGIN):
        reply = await client.post(port, "/thing", data=b"x", headers={"Origin": origin})
        assert reply.status == 200
        assert reply.header("Access-Control-Allow-Origin") == origin
    # The Origin check of _guards trusts it too; another origin is refused
    # before the handler runs.
    foreign = await client.post(
        port, "/thing", data=b"x", headers={"Origin": "http://evil.example"}
    )
    assert foreign.status == 403
    assert calls == ["POST", "POST"]


@pytest_twisted.ensureDeferred
async def test_setCORSWhitelist_with_an_empty_list_clears_it(serve, client):
    houweb.setCORSWhitelist(["http://app.example"])
    houweb.setCORSWhitelist([], "")

    @houweb.urlHandler("/thing")
    def thing(request):
        return houweb.Response("thing")

    port = (await serve()).port_numbers()[0]
    reply = await client.get(port, "/thing", headers={"Origin": "http://app.example"})
    assert reply.status == 200 and reply.header("Access-Control-Allow-Origin") is None


@pytest.mark.parametrize(
    ("origins", "port_name", "error", "message"),
    [
        (["http://a.example/path"], "render", ValueError, "is not an origin"),
        (["http://a.example/path"], "", ValueError, "is not an origin"),
        ("http://a.example", "", TypeError, "list or tuple"),
        ([1], "", ValueError, "is not an origin"),
        (["http://a.example"], 8008, TypeError, "port_name must be a str"),
    ],
)
def test_setCORSWhitelist_refuses_bad_origins(registry, origins, port_name, error, message):
    with pytest.raises(error, match=message):
        houweb.setCORSWhitelist(origins, port_name)
    assert registry.cors_whitelist == ()
    assert registry.ports.cors == {}
