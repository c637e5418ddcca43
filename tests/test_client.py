"""houweb.client against a real server: the sync client in a thread, the async one on treq."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error

import pytest
import pytest_twisted
from twisted.internet import threads

import houweb
from houweb.client import APIError, AsyncService, File, Service

from .support import ROOT


def register_functions():
    @houweb.apiFunction(namespace="geo", arg_types={"x": float, "y": float, "z": float})
    def vector_length(request, x, y, z):
        return (x * x + y * y + z * z) ** 0.5

    @houweb.apiFunction()
    def refuse(request):
        raise houweb.APIError("z must be positive")

    @houweb.apiFunction()
    def crash(request):
        raise ValueError("boom")

    @houweb.apiFunction()
    def raw(request):
        return b"\x00\x01"

    @houweb.apiFunction("images")
    def store(request, name, data, note=None):
        return {
            "name": name,
            "file": data.name(),
            "size": data.size(),
            "first": data.read(5).decode(),
            "note": note,
            "type": type(data).__name__,
        }


async def start(serve, **arguments) -> str:
    register_functions()
    port = (await serve(**arguments)).port_numbers()[0]
    return f"http://127.0.0.1:{port}/api"


def read_result(result):
    """A binary result is a file object: read it whole and close it."""
    with result:
        return result.read()


def in_thread(function, *args, **kwargs):
    """The sync client blocks: run it off the reactor, as any script would."""
    return threads.deferToThread(function, *args, **kwargs)


@pytest_twisted.ensureDeferred
async def test_sync_call_returns_the_decoded_result(serve):
    url = await start(serve)
    svc = Service(url, timeout=10)
    assert await in_thread(lambda: svc.geo.vector_length(1, 2, 3)) == 3.7416573867739413


@pytest_twisted.ensureDeferred
async def test_sync_call_sends_the_65_byte_body_of_the_spec(serve):
    seen = {}

    @houweb.urlHandler("/capture")
    def capture(request):
        seen.update(body=request.body(), type=request.contentType())
        return houweb.Response("null", content_type="application/json")

    port = (await serve()).port_numbers()[0]
    svc = Service(f"http://127.0.0.1:{port}/capture")
    assert await in_thread(lambda: svc.geo.vector_length(1, 2, 3)) is None
    assert seen["body"] == b"json=%5B%22geo.vector_length%22%2C+%5B1%2C+2%2C+3%5D%2C+%7B%7D%5D"
    assert seen["type"] == "application/x-www-form-urlencoded"


@pytest_twisted.ensureDeferred
async def test_sync_errors_carry_status_message_and_traceback(serve):
    url = await start(serve, debug=True)
    svc = Service(url)
    with pytest.raises(APIError) as refused:
        await in_thread(svc.refuse)
    assert refused.value.status_code == 422 and refused.value.message == "z must be positive"
    assert str(refused.value) == "422: z must be positive" and refused.value.traceback is None
    with pytest.raises(APIError) as missing:
        await in_thread(lambda: svc.geo.vector_length(1, 2))
    assert missing.value.message == "geo.vector_length: missing a required argument: 'z'"
    with pytest.raises(APIError) as crashed:
        await in_thread(svc.crash)
    assert crashed.value.status_code == 500 and crashed.value.message == "ValueError: boom"
    assert crashed.value.traceback.startswith("Traceback")
    with pytest.raises(APIError) as unknown:
        await in_thread(svc.nope)
    assert unknown.value.status_code == 404


@pytest_twisted.ensureDeferred
async def test_a_non_json_error_body_becomes_the_message(serve):
    @houweb.urlHandler("/teapot")
    def teapot(request):
        return houweb.Response("short and stout", 418, "text/plain")

    port = (await serve()).port_numbers()[0]
    with pytest.raises(APIError) as error:
        await in_thread(Service(f"http://127.0.0.1:{port}/teapot").anything)
    assert error.value.status_code == 418 and error.value.message == "short and stout"


@pytest_twisted.ensureDeferred
async def test_sync_octet_stream_comes_back_as_a_response_file(serve):
    url = await start(serve)
    assert await in_thread(lambda: read_result(Service(url).raw())) == b"\x00\x01"


@pytest_twisted.ensureDeferred
async def test_sync_keyword_file_arrives_as_an_uploaded_file(serve, tmp_path):
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello world" * 1000)
    url = await start(serve, max_in_memory_file_upload_size=100)
    svc = Service(url)
    result = await in_thread(lambda: svc.images.store(name="greeting", data=File(path), note="n"))
    assert result == {
        "name": "greeting",
        "file": "hello.txt",
        "size": 11000,
        "first": "hello",
        "note": "n",
        "type": "UploadedFile",
    }


def test_a_positional_file_is_refused_before_sending(tmp_path):
    svc = Service("http://127.0.0.1:9/api")  # never contacted
    with pytest.raises(TypeError, match="by keyword"):
        svc.images.store("greeting", File(tmp_path / "x"))


def test_private_names_are_not_calls():
    svc = Service("http://127.0.0.1:9/api")
    with pytest.raises(AttributeError):
        svc._secret  # noqa: B018
    with pytest.raises(AttributeError):
        svc.geo._secret  # noqa: B018
    assert repr(svc.geo.vector_length) == "<API function geo.vector_length>"


def test_network_failures_propagate():
    with pytest.raises(urllib.error.URLError):
        Service("http://127.0.0.1:9/api", timeout=5).anything()


@pytest_twisted.ensureDeferred
async def test_the_token_is_sent_as_a_bearer_header(serve):
    register_functions()
    port = (await serve(token="s3cret")).port_numbers()[0]
    url = f"http://127.0.0.1:{port}/api"
    with pytest.raises(APIError) as refused:
        await in_thread(Service(url).raw)
    assert refused.value.status_code == 401
    assert await in_thread(lambda: read_result(Service(url, token="s3cret").raw())) == b"\x00\x01"
    assert read_result(await AsyncService(url, token="s3cret").raw()) == b"\x00\x01"


@pytest_twisted.ensureDeferred
async def test_async_service_gives_the_same_results_and_errors(serve, tmp_path):
    url = await start(serve)
    svc = AsyncService(url, timeout=10)
    assert await svc.geo.vector_length(1, 2, 3) == 3.7416573867739413
    assert read_result(await svc.raw()) == b"\x00\x01"
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello")
    stored = await svc.images.store(name="greeting", data=File(path))
    assert stored["file"] == "hello.txt" and stored["size"] == 5
    with pytest.raises(APIError) as refused:
        await svc.refuse()
    assert refused.value.status_code == 422 and refused.value.message == "z must be positive"


def test_the_sync_client_works_from_a_plain_script(tmp_path):
    """No reactor, no fixtures: a child server and a child client, as users run them."""
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER_SCRIPT],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        port = int(server.stdout.readline().split()[1])
        client = subprocess.run(
            [sys.executable, "-c", _CLIENT_SCRIPT, str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert client.returncode == 0, client.stderr
        assert json.loads(client.stdout) == [3, "422: no"]
    finally:
        server.kill()
        server.wait()


_SERVER_SCRIPT = """
import houweb
@houweb.apiFunction()
def add(request, a, b):
    return a + b
@houweb.apiFunction()
def no(request):
    raise houweb.APIError("no")
houweb.run(port=0, in_background=True)
print("PORT", houweb.serverPorts()[0], flush=True)
import threading
threading.Event().wait()
"""

_CLIENT_SCRIPT = """
import json, sys
from houweb.client import Service, APIError
svc = Service(f"http://127.0.0.1:{sys.argv[1]}/api", timeout=10)
try:
    svc.no()
except APIError as exc:
    print(json.dumps([svc.add(1, 2), str(exc)]))
"""
