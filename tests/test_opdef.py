"""registerOpdefPath: 501 outside Houdini, or the provider's answers (spec §10.2)."""

from __future__ import annotations

import json
import threading

import pytest
import pytest_twisted

import houweb


@pytest_twisted.ensureDeferred
async def test_without_a_provider_opdef_paths_get_501_on_every_port(serve, client):
    houweb.registerOpdefPath()
    server = await serve(ports=[0])
    for port in server.port_numbers():
        reply = await client.get(port, "/opdef/obj/geo?Help")
        assert reply.status == 501
        assert b"node-type help (opdef) is only available inside Houdini" in reply.body
    as_json = await client.get(
        server.port_numbers()[0], "/opdef/obj/geo", headers={"Accept": "application/json"}
    )
    assert json.loads(as_json.body) == {
        "error": "node-type help (opdef) is only available inside Houdini"
    }


@pytest_twisted.ensureDeferred
async def test_a_provider_answers_with_the_path_below_the_prefix_in_the_pool(serve, client):
    seen = []

    def provider(request, path):
        seen.append((path, request.GET(), threading.current_thread().name))
        return houweb.Response(f"help for {path}", content_type="text/plain")

    houweb.registerOpdefPath("/help", provider=provider)
    port = (await serve()).port_numbers()[0]
    reply = await client.get(port, "/help/obj/geo?Help")
    assert reply.status == 200 and reply.body == b"help for /obj/geo"
    assert seen[0][:2] == ("/obj/geo", {"Help": ""})
    assert seen[0][2].startswith("PoolThread-houweb")
    assert (await client.get(port, "/opdef/obj/geo")).status == 404


@pytest_twisted.ensureDeferred
async def test_a_provider_that_raises_is_a_500_and_the_server_goes_on(serve, client):
    calls = []

    def provider(request, path):
        calls.append(path)
        if len(calls) == 1:
            raise RuntimeError("no help")
        return "fine"

    houweb.registerOpdefPath(provider=provider)
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/opdef/a")).status == 500
    assert (await client.get(port, "/opdef/b")).body == b"fine"


@pytest_twisted.ensureDeferred
async def test_a_url_handler_below_the_prefix_wins(serve, client):
    houweb.registerOpdefPath()
    houweb.urlHandler("/opdef/custom")(lambda request: "mine")
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/opdef/custom")).body == b"mine"


@pytest.mark.parametrize(
    ("arguments", "error"), [({"prefix": "opdef"}, ValueError), ({"provider": 3}, TypeError)]
)
def test_bad_registrations_raise_at_once(registry, arguments, error):
    with pytest.raises(error):
        houweb.registerOpdefPath(**arguments)
