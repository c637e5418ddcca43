"""MCP tools at /mcp (run(mcp=True)): real MCP clients against a real server."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

import houweb

from .support import ServerProcess, get, skip_unless_ci

HERE = Path(__file__).parent
ROOT = HERE.parent
TOKEN = "mcp-s3cret"


def register_functions(calls: list[str]) -> None:
    """API functions of every kind /api has: plain, async, failing, on another port."""

    @houweb.apiFunction("geo")
    def add(request, a: int, b: int = 1) -> int:
        """Add two numbers.

        :param a: the first.
        :param b: the second.
        """
        calls.append(f"add {request.header('Authorization')}")
        return a + b

    @houweb.apiFunction("geo")
    async def scale(request, values: list, factor: float) -> list:
        """Scale a vector (async def: runs on the reactor)."""
        calls.append("scale")
        return [v * factor for v in values]

    @houweb.apiFunction("geo", arg_types={"n": int})
    def refuse(request, n):
        """Always refuses."""
        raise houweb.APIError(f"no, not {n}")

    @houweb.apiFunction("geo", ports=[1])
    def elsewhere(request):
        """Bound to another port: not a tool on the main port."""
        calls.append("elsewhere")


async def run_client(command: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """
    Run a client program to its end, in a thread (the reactor serves it
    meanwhile; a thread's subprocess.run reaps the child itself, where
    Twisted's process support needs SIGCHLD handlers the test reactor lacks).
    """
    done = await deferToThread(
        subprocess.run,
        command,
        env=dict(os.environ, **(env or {})),
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


CALLS = [
    ["geo.add", {"a": 2, "b": 3}],
    ["geo.scale", {"values": [1, 2], "factor": 1.5}],
    ["geo.refuse", {"n": "7"}],
    ["geo.add", {"a": "x", "c": 1}],
    ["geo.elsewhere", {}],
]


def check(seen: dict[str, Any], calls: list[str]) -> None:
    tools = {tool["name"]: tool for tool in seen["tools"]}
    assert sorted(tools) == ["geo.add", "geo.refuse", "geo.scale"]  # not geo.elsewhere
    add = tools["geo.add"]
    assert add["description"].startswith("Add two numbers.")
    schema = add["input_schema"]
    assert schema["type"] == "object" and schema["required"] == ["a"]
    assert schema["properties"]["a"]["type"] == "integer"
    results = seen["results"]
    assert results[0] == {"is_error": False, "content": [{"type": "text", "text": "5"}]}
    assert results[1]["is_error"] is False and json.loads(results[1]["content"][0]["text"]) == [
        1.5,
        3.0,
    ]
    assert results[2] == {"is_error": True, "content": [{"type": "text", "text": "no, not 7"}]}
    assert results[3]["is_error"] is True and "geo.add" in results[3]["content"][0]["text"]
    assert results[4]["is_error"] is True and "unknown tool" in results[4]["content"][0]["text"]
    # Both calls that ran went through /api's dispatch, with the token the client sent.
    assert calls == [f"add Bearer {TOKEN}", "scale"]


@pytest_twisted.ensureDeferred
async def test_the_mcp_sdks_own_client_lists_and_calls_the_api_functions(serve):
    calls: list[str] = []
    register_functions(calls)
    port = (await serve(mcp=True, token=TOKEN)).port_numbers()[0]
    url = f"http://127.0.0.1:{port}/mcp"
    client = str(HERE / "apps" / "mcp_client.py")
    seen = await run_client([sys.executable, client, url, TOKEN, json.dumps(CALLS)])
    check(seen, calls)


def node_sdk() -> Path:
    """
    :returns: a folder with the npm ``@modelcontextprotocol/sdk`` installed
        (npm's cache makes later runs fast); skips visibly, or fails under
        CI=true, when node or npm is missing or the install fails.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        skip_unless_ci("node and npm are needed for the npm MCP client")
    folder = Path(os.environ.get("HOUWEB_NODE_MCP", "/tmp/houweb-node-mcp"))
    if not (folder / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(folder),
                "@modelcontextprotocol/sdk@1",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            skip_unless_ci(f"npm could not install @modelcontextprotocol/sdk: {done.stderr[-500:]}")
    return folder


@pytest_twisted.ensureDeferred
async def test_the_npm_mcp_sdk_client_lists_and_calls_the_api_functions(serve):
    folder = node_sdk()
    calls: list[str] = []
    register_functions(calls)
    port = (await serve(mcp=True, token=TOKEN)).port_numbers()[0]
    url = f"http://127.0.0.1:{port}/mcp"
    script = str(HERE / "apps" / "mcp_client.mjs")
    seen = await run_client(
        [shutil.which("node") or "node", script, url, TOKEN, json.dumps(CALLS)],
        env={"NODE_PATH": str(folder / "node_modules")},
    )
    check(seen, calls)


@pytest_twisted.ensureDeferred
async def test_mcp_is_behind_the_token_and_off_by_default(serve, client):
    calls: list[str] = []
    register_functions(calls)
    off = (await serve()).port_numbers()[0]
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    accept = {"Accept": "application/json, text/event-stream"}
    assert (await client.post(off, "/mcp", json=initialize, headers=accept)).status == 404
    on = (await serve(mcp=True, token=TOKEN)).port_numbers()[0]
    assert (await client.post(on, "/mcp", json=initialize, headers=accept)).status == 401
    foreign = {**accept, "Authorization": f"Bearer {TOKEN}", "Origin": "http://evil.example"}
    assert (await client.post(on, "/mcp", json=initialize, headers=foreign)).status == 403
    assert calls == []


def test_mcp_must_be_a_bool():
    from houweb._config import ServerConfig

    with pytest.raises(TypeError, match="mcp must be True or False"):
        ServerConfig.from_arguments(mcp="yes")


def test_an_asgi_app_and_mcp_serve_under_run_in_the_foreground():
    # run(in_background=False) starts the server before the reactor's loop
    # runs: the lifespans and the MCP session manager used to fail to start
    # there ("houweb runs async handlers on the reactor thread..."), so a
    # plain script with registerASGIApp or mcp=True could not run at all.
    child = ServerProcess(str(HERE / "apps" / "asgi_foreground_app.py"))
    try:
        port = child.port()  # printed from the app's lifespan startup
        assert get(f"http://127.0.0.1:{port}/app/x") == (200, b"asgi ok")
        initialize = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "1"},
            },
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/mcp",
            data=json.dumps(initialize).encode(),
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json, text/event-stream",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 200 and reply.headers["mcp-session-id"]
            assert b'"serverInfo"' in reply.read()
        assert get(f"http://127.0.0.1:{port}/stop")[0] == 200
        assert "RETURNED" in child.output()
    finally:
        child.kill()


@pytest_twisted.ensureDeferred
async def test_a_server_without_mcp_after_one_with_it_has_no_mcp(serve, client):
    # /mcp was added to the shared registry: a later server without mcp=True
    # routed /mcp to the MCP app, which found no tools there (500, logged).
    calls: list[str] = []
    register_functions(calls)
    await serve(mcp=True, token=TOKEN)
    off = (await serve(token=TOKEN)).port_numbers()[0]
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {TOKEN}"}
    assert (await client.post(off, "/mcp", json=listing, headers=headers)).status == 404


@pytest_twisted.ensureDeferred
async def test_a_wildcard_cors_whitelist_without_a_token_is_warned_about(serve, logged):
    # setCORSWhitelist(["*"]) (common in Houdini code) also trusts every
    # origin to change state: without a token any page may call every tool.
    register_functions([])
    houweb.setCORSWhitelist(["*"])
    await serve(mcp=True)
    warnings = [
        e["log_format"].format(**e) for e in logged if "CORS whitelist" in e.get("log_format", "")
    ]
    assert len(warnings) == 1 and "MCP tools" in warnings[0] and "set a token" in warnings[0]
    await serve(mcp=True, token=TOKEN)
    assert len([e for e in logged if "CORS whitelist" in e.get("log_format", "")]) == 1


@pytest_twisted.ensureDeferred
async def test_a_tool_result_is_joined_and_encoded_off_the_reactor_thread(serve):
    # /api's answer becomes the tool's result (joined, decoded, base64) in a
    # pool thread: a large result does not hold the reactor meanwhile.
    reactor_thread = threading.current_thread()
    read_on: list[threading.Thread] = []

    class Watched(houweb.Response):
        """An answer that records the thread its body is read on."""

        def body(self) -> bytes:
            read_on.append(threading.current_thread())
            return super().body()

    @houweb.apiFunction("big")
    def text(request):
        return Watched(json.dumps(["x" * 100] * 1000), content_type="application/json")

    @houweb.apiFunction("big")
    def blob(request):
        return Watched(b"\x00\xff" * 5000, content_type="image/png")

    @houweb.apiFunction("big")
    def pieces(request):
        return list(range(100_000))  # a pieced JSON answer

    port = (await serve(mcp=True, token=TOKEN)).port_numbers()[0]
    calls = [["big.text", {}], ["big.blob", {}], ["big.pieces", {}]]
    client = str(HERE / "apps" / "mcp_client.py")
    seen = await run_client(
        [sys.executable, client, f"http://127.0.0.1:{port}/mcp", TOKEN, json.dumps(calls)]
    )
    text_result, blob_result, pieces_result = seen["results"]
    assert json.loads(text_result["content"][0]["text"]) == ["x" * 100] * 1000
    resource = blob_result["content"][0]["resource"]
    assert base64.b64decode(resource["blob"]) == b"\x00\xff" * 5000
    assert resource["mime_type"] == "image/png"
    assert json.loads(pieces_result["content"][0]["text"]) == list(range(100_000))
    assert len(read_on) == 2
    assert reactor_thread not in read_on
