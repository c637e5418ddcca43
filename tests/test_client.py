"""houweb.client against a real server: the sync client in a thread, the async one on treq."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error

import pytest
import pytest_twisted
from twisted.internet import endpoints, protocol, reactor, task, threads

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


# Issue 14, item 13: what the client accepts, how long it waits, where it posts.


@pytest_twisted.ensureDeferred
async def test_return_binary_sends_a_file_response_as_octet_stream(serve, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes("héllo\n".encode() * 100)

    @houweb.apiFunction(return_binary=True)
    def download(request):
        return houweb.fileResponse(str(path))

    url = await start(serve)
    svc = Service(url, timeout=10)
    got = await in_thread(lambda: read_result(svc.download()))
    assert got == path.read_bytes()
    assert read_result(await AsyncService(url, timeout=10).download()) == path.read_bytes()


@pytest_twisted.ensureDeferred
async def test_a_200_answer_that_is_not_json_is_an_api_error(serve):
    @houweb.urlHandler("/proxy")
    def proxy(request):
        return houweb.Response("<html>please log in</html>", 200, "text/html")

    port = (await serve()).port_numbers()[0]
    url = f"http://127.0.0.1:{port}/proxy"
    with pytest.raises(APIError) as error:
        await in_thread(Service(url).anything)
    assert error.value.status_code == 200
    assert "expected a JSON answer, got text/html" in error.value.message
    with pytest.raises(APIError) as async_error:
        await AsyncService(url).anything()
    assert async_error.value.status_code == 200


@pytest_twisted.ensureDeferred
async def test_a_redirect_is_an_api_error_and_the_token_never_follows_it(serve):
    stolen = []

    @houweb.urlHandler("/steal")
    def steal(request):
        stolen.append(request.header("Authorization"))
        return houweb.Response("null", content_type="application/json")

    other = (await serve()).port_numbers()[0]

    @houweb.urlHandler("/moved")
    def moved(request):
        response = houweb.Response("", 302)
        response.setHeader("Location", f"http://127.0.0.1:{other}/steal")
        return response

    port = (await serve()).port_numbers()[0]
    url = f"http://127.0.0.1:{port}/moved"
    with pytest.raises(APIError) as error:
        await in_thread(Service(url, token="s3cret").anything)
    assert error.value.status_code == 302
    assert f"redirected to http://127.0.0.1:{other}/steal; not followed" in error.value.message
    with pytest.raises(APIError) as async_error:
        await AsyncService(url, token="s3cret").anything()
    assert async_error.value.status_code == 302
    assert stolen == []


class _Trickle(protocol.Protocol):
    """Answers headers at once, then its body one byte every 0.2 s."""

    def connectionMade(self) -> None:
        self.loop = None

    def dataReceived(self, data: bytes) -> None:
        if self.loop is None:
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n"
            )
            self.loop = task.LoopingCall(self.transport.write, b" ")
            self.loop.start(0.2)

    def connectionLost(self, reason: object) -> None:
        if self.loop is not None and self.loop.running:
            self.loop.stop()


@pytest_twisted.ensureDeferred
async def test_timeout_is_a_deadline_for_the_whole_call():
    port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        protocol.Factory.forProtocol(_Trickle)
    )
    url = f"http://127.0.0.1:{port.getHost().port}/api"
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await in_thread(Service(url, timeout=1).anything)
        took = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await AsyncService(url, timeout=1).anything()
        async_took = time.monotonic() - started
    finally:
        await port.stopListening()
    # A byte every 0.2 s for 40 bytes: 8 s if the timeout were per read.
    assert took < 4 and async_took < 4


@pytest_twisted.ensureDeferred
async def test_429_is_retried_with_backoff_then_given_up(serve):
    calls = []

    @houweb.urlHandler("/busy")
    def busy(request):
        calls.append(1)
        if len(calls) % 3:
            response = houweb.Response('{"error": "slow down"}', 429, "application/json")
            response.setHeader("Retry-After", "0")
            return response
        return houweb.Response('"done"', content_type="application/json")

    port = (await serve()).port_numbers()[0]
    url = f"http://127.0.0.1:{port}/busy"
    assert await in_thread(Service(url, timeout=10).anything) == "done"
    assert len(calls) == 3
    assert await AsyncService(url, timeout=10).anything() == "done"
    assert len(calls) == 6
    with pytest.raises(APIError) as error:
        await in_thread(Service(url, retries=1).anything)
    assert error.value.status_code == 429 and error.value.message == "slow down"
    assert len(calls) == 8


_BINARY_SERVER = """
import houweb, sys, threading
@houweb.apiFunction(return_binary=True)
def download(request):
    return houweb.fileResponse(sys.argv[1])
houweb.run(port=0, in_background=True)
print("PORT", houweb.serverPorts()[0], flush=True)
threading.Event().wait()
"""

_STREAMING_CLIENT = """
import hashlib, json, sys
from houweb.client import Service

def peak():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

svc = Service(f"http://127.0.0.1:{sys.argv[1]}/api", timeout=60)
before = peak()
digest = hashlib.sha256()
with svc.download() as result:
    kind = type(result).__name__
    for piece in iter(lambda: result.read(1 << 16), b""):
        digest.update(piece)
print(json.dumps([kind, digest.hexdigest(), peak() - before]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_binary_result_is_streamed_not_buffered(tmp_path):
    block = os.urandom(1024 * 1024)
    big = tmp_path / "big.bin"
    with open(big, "wb") as out:
        for _ in range(100):
            out.write(block)
    server = subprocess.Popen(
        [sys.executable, "-c", _BINARY_SERVER, str(big)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        port = int(server.stdout.readline().split()[1])
        client = subprocess.run(
            [sys.executable, "-c", _STREAMING_CLIENT, str(port)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
    finally:
        server.kill()
        server.wait()
    assert client.returncode == 0, client.stderr
    kind, digest, growth = json.loads(client.stdout)
    print(f"\n100 MiB binary result: client peak RSS +{growth / 2**20:.1f} MiB")
    assert kind == "ResponseFile"
    assert digest == hashlib.sha256(block * 100).hexdigest()
    assert growth < 32 * 1024 * 1024


class _CutShort(protocol.Protocol):
    """Announces a 1000-byte binary result, sends 10 bytes of it, and hangs up."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: 1000\r\n\r\n" + b"x" * 10
        )
        self.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_a_binary_result_cut_short_is_an_error_not_a_short_file():
    port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        protocol.Factory.forProtocol(_CutShort)
    )
    url = f"http://127.0.0.1:{port.getHost().port}/api"

    def read_all() -> bytes:
        return read_result(Service(url, timeout=5).anything())

    try:
        # Before: 10 bytes returned as if they were the whole result.
        with pytest.raises(http.client.IncompleteRead):
            await in_thread(read_all)
        with pytest.raises(Exception) as async_error:
            await AsyncService(url, timeout=5).anything()
        assert not isinstance(async_error.value, AssertionError)
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_an_upload_over_the_servers_limit_is_an_api_error_413(serve, tmp_path):
    called = []

    @houweb.apiFunction()
    def keep(request, data):
        called.append(data.size())

    port = (await serve(max_request_size=100_000)).port_numbers()[0]
    url = f"http://127.0.0.1:{port}/api"
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * 20_000_000)
    # Before: BrokenPipeError, the server's answer unread.
    with pytest.raises(APIError) as error:
        await in_thread(Service(url, timeout=30).keep, data=File(big))
    assert error.value.status_code == 413
    assert "maximum request size of 100000 bytes" in str(error.value.message)
    assert called == []


def test_a_retry_connects_within_what_is_left_of_the_timeout():
    """A retried call whose server stops accepting connections ends at its deadline."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    done = threading.Event()
    fillers: list[socket.socket] = []

    def answer_429_then_stop_accepting() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        )
        conn.close()
        for _ in range(4):  # fill the backlog: later connects hang
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        done.wait(30)

    thread = threading.Thread(target=answer_429_then_stop_accepting, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            Service(f"http://127.0.0.1:{port}/api", timeout=2).anything()
        took = time.monotonic() - started
    finally:
        done.set()
        thread.join(10)
        for filler in fillers:
            filler.close()
        server.close()
    # Before: 3 s (1 s of backoff, then a connect given the whole 2 s), and URLError.
    assert took < 2.7
