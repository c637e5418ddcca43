"""The optional shared-secret token (houweb/_auth.py)."""

from __future__ import annotations

import pytest_twisted

import houweb


@pytest_twisted.ensureDeferred
async def test_without_a_token_configured_nothing_is_required(serve, client):
    houweb.urlHandler("/x")(lambda request: "open")
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/x")).text == "open"


@pytest_twisted.ensureDeferred
async def test_requests_without_the_token_get_401_and_never_reach_the_handler(serve, client):
    called = []
    houweb.urlHandler("/x")(lambda request: called.append(1) or "secret")
    port = (await serve(token="s3cret")).port_numbers()[0]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        reply = await client.get(port, "/x", headers=headers)
        assert reply.status == 401
        assert reply.header("WWW-Authenticate") == 'Bearer realm="houweb"'
    assert (await client.get(port, "/nope")).status == 401  # no path probing either
    assert called == []


@pytest_twisted.ensureDeferred
async def test_the_right_bearer_token_is_let_through(serve, client):
    houweb.urlHandler("/x")(lambda request: "secret")
    port = (await serve(token="s3cret")).port_numbers()[0]
    reply = await client.get(port, "/x", headers={"Authorization": "Bearer s3cret"})
    assert reply.text == "secret"


@pytest_twisted.ensureDeferred
async def test_api_calls_without_the_token_get_a_json_401(serve, client):
    port = (await serve(token="s3cret")).port_numbers()[0]
    reply = await client.post(port, "/api", data={"json": '["f", [], {}]'})
    assert reply.status == 401
    assert reply.header("Content-Type") == "application/json"
    assert b"Authorization: Bearer" in reply.body
