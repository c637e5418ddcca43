"""File bodies sent with os.sendfile on plain TCP, and twisted.web's producers elsewhere."""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, protocol, reactor, ssl
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.web import static
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS

import houweb
from houweb._sendfile import NOTSENT_LOWAT, SendfileProducer, sendfile_producer

from .support import connect_raw, raw_request, sleep
from .test_render import until_gone
from .test_tls import self_signed

pytestmark = pytest.mark.skipif(not hasattr(os, "sendfile"), reason="no os.sendfile")

SIZE = 8 * 1024 * 1024 + 123


@pytest.fixture
def big_file(tmp_path: Any) -> Any:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(SIZE))
    return path


@pytest.fixture
def sendfile_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The ``(offset, count)`` of every ``os.sendfile`` call during the test."""
    calls: list[tuple[int, int]] = []
    real = os.sendfile

    def spy(out: int, source: int, offset: int, count: int) -> int:
        calls.append((offset, count))
        return real(out, source, offset, count)

    monkeypatch.setattr(os, "sendfile", spy)
    return calls


async def serve_file(serve: Any, path: Any, **options: Any) -> int:
    houweb.urlHandler("/f")(lambda request: houweb.fileResponse(str(path), **options))
    return (await serve()).port_numbers()[0]


def split(raw: bytes) -> tuple[bytes, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return head, body


@pytest_twisted.ensureDeferred
async def test_a_large_file_is_sent_byte_exact_with_sendfile(
    serve, client, big_file, sendfile_calls
):
    port = await serve_file(serve, big_file)
    reply = await client.get(port, "/f")
    assert reply.status == 200 and reply.body == big_file.read_bytes()
    assert sendfile_calls and sendfile_calls[0][0] == 0


@pytest_twisted.ensureDeferred
async def test_a_static_file_is_sent_byte_exact_with_sendfile(
    serve, client, big_file, sendfile_calls
):
    houweb.registerStaticFilesDirectory(big_file.parent, "/static")
    port = (await serve()).port_numbers()[0]
    reply = await client.get(port, "/static/big.bin")
    assert reply.status == 200 and reply.body == big_file.read_bytes()
    assert sendfile_calls


@pytest_twisted.ensureDeferred
async def test_a_single_range_is_sent_with_sendfile_from_its_offset(
    serve, client, big_file, sendfile_calls
):
    port = await serve_file(serve, big_file)
    reply = await client.get(port, "/f", headers={"Range": "bytes=1000000-2000000"})
    assert reply.status == 206 and reply.body == big_file.read_bytes()[1000000:2000001]
    assert reply.header("Content-Range") == f"bytes 1000000-2000000/{SIZE}"
    assert sendfile_calls[0] == (1000000, 1000001)


@pytest_twisted.ensureDeferred
async def test_several_ranges_keep_twisted_webs_producer(serve, client, big_file, sendfile_calls):
    port = await serve_file(serve, big_file)
    reply = await client.get(port, "/f", headers={"Range": "bytes=0-1,10-11"})
    assert reply.status == 206 and b"Content-range: bytes 10-11/" in reply.body
    assert not sendfile_calls


@pytest_twisted.ensureDeferred
async def test_a_slow_reader_gets_every_byte(serve, big_file):
    port = await serve_file(serve, big_file)
    raw = await connect_raw(port)
    raw.transport.write(b"GET /f HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    for _ in range(3):
        raw.transport.pauseProducing()
        await sleep(0.1)
        raw.transport.resumeProducing()
        await sleep(0.02)
    head, body = split(await raw.done)
    assert head.startswith(b"HTTP/1.1 200 OK") and body == big_file.read_bytes()


@pytest_twisted.ensureDeferred
async def test_pipelined_requests_get_their_files_in_order(serve, tmp_path, big_file):
    small = tmp_path / "small.bin"
    small.write_bytes(b"small file\n")
    houweb.urlHandler("/big")(lambda request: houweb.fileResponse(str(big_file)))
    houweb.urlHandler("/small")(lambda request: houweb.fileResponse(str(small)))
    port = (await serve()).port_numbers()[0]
    raw = await raw_request(
        port,
        b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n"
        b"GET /small HTTP/1.1\r\nHost: localhost\r\n\r\n"
        b"GET /big HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    data = big_file.read_bytes()
    head, rest = split(raw)
    assert rest[:SIZE] == data
    head, rest = split(rest[SIZE:])
    assert b"Content-Length: 11" in head and rest[:11] == b"small file\n"
    head, rest = split(rest[11:])
    assert head.startswith(b"HTTP/1.1 200 OK") and rest == data


@pytest_twisted.ensureDeferred
async def test_an_http_1_0_request_gets_the_file_and_a_close(serve, big_file):
    port = await serve_file(serve, big_file)
    head, body = split(await raw_request(port, b"GET /f HTTP/1.0\r\n\r\n"))
    assert head.startswith(b"HTTP/1.0 200 OK") and body == big_file.read_bytes()


@pytest_twisted.ensureDeferred
async def test_a_client_that_disconnects_midway_leaves_the_server_serving(
    serve, client, tmp_path, sendfile_calls
):
    huge = tmp_path / "huge.bin"
    with open(huge, "wb") as out:
        out.truncate(256 * 1024 * 1024)
    port = await serve_file(serve, huge, delete_file=True)
    raw = await connect_raw(port)
    raw.transport.write(b"GET /f HTTP/1.1\r\nHost: localhost\r\n\r\n")
    for _ in range(100):
        if len(raw.data) > 1_000_000:
            break
        await sleep(0.02)
    raw.transport.pauseProducing()
    await sleep(0.1)
    raw.transport.abortConnection()
    assert await until_gone(huge)
    assert sendfile_calls
    houweb.urlHandler("/hello")(lambda request: "still here")
    assert (await client.get(port, "/hello")).body == b"still here"


@pytest_twisted.ensureDeferred
async def test_a_file_is_sent_byte_exact_over_tls_without_sendfile(
    serve, tmp_path, big_file, sendfile_calls
):
    houweb.urlHandler("/f", ports=[-1])(lambda request: houweb.fileResponse(str(big_file)))
    key, cert = self_signed(tmp_path)
    server = await serve(listen=[f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"])
    trust = ssl.Certificate.loadPEM(open(cert, "rb").read())
    agent = Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=trust))
    response = await treq.get(f"https://localhost:{server.port_numbers()[1]}/f", agent=agent)
    assert await response.content() == big_file.read_bytes()
    assert not sendfile_calls


@pytest_twisted.ensureDeferred
async def test_without_os_sendfile_twisted_webs_producer_sends_the_file(
    serve, client, big_file, monkeypatch
):
    monkeypatch.delattr(os, "sendfile")
    port = await serve_file(serve, big_file)
    reply = await client.get(port, "/f")
    assert reply.status == 200 and reply.body == big_file.read_bytes()


class Chunks(protocol.Protocol):
    """Collects what arrives as a list of chunks until the connection closes."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.done: defer.Deferred[list[bytes]] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Any) -> None:
        self.done.callback(self.chunks)


class _Request:
    method = b"GET"
    code = 200
    channel = None


def test_sendfile_is_not_used_without_a_tcp_connection():
    producer = static.NoRangeStaticProducer(_Request(), None)
    assert sendfile_producer(_Request(), producer) is producer


def test_sendfile_producer_stops_once():
    class File:
        closed = 0

        def close(self) -> None:
            self.closed += 1

    class Channel:
        transport = None

    request = _Request()
    request.channel = Channel()
    file = File()
    producer = SendfileProducer(request, file, 0, 10)
    producer.stopProducing()
    producer.stopProducing()
    assert file.closed == 1 and producer.request is None


@pytest.mark.parametrize("after", [0, 100_000])
@pytest_twisted.ensureDeferred
async def test_a_file_sendfile_refuses_is_read_and_written_instead(
    serve, client, big_file, monkeypatch, after
):
    real = os.sendfile
    sent = [0]

    def refusing(out: int, source: int, offset: int, count: int) -> int:
        if sent[0] >= after:
            raise OSError(errno.EINVAL, "Invalid argument")
        done = real(out, source, offset, min(count, after - sent[0]))
        sent[0] += done
        return done

    monkeypatch.setattr(os, "sendfile", refusing)
    port = await serve_file(serve, big_file)
    reply = await client.get(port, "/f", headers={"Range": "bytes=10-"})
    assert reply.status == 206 and reply.body == big_file.read_bytes()[10:]


@pytest_twisted.ensureDeferred
async def test_shutdown_waits_for_a_file_being_sent_to_a_slow_reader(
    serve, tmp_path, sendfile_calls
):
    huge = tmp_path / "huge.bin"  # more than the socket buffers hold
    with open(huge, "wb") as out:
        out.truncate(64 * 1024 * 1024)
    houweb.urlHandler("/f")(lambda request: houweb.fileResponse(str(huge)))
    server = await serve(shutdown_grace=30)
    raw = Chunks()
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", server.port_numbers()[0])
    await connectProtocol(endpoint, raw)
    # Not reading at all: the server can only fill the socket buffers (a few
    # MiB), so the 64 MiB answer is still being sent when shutdown begins.
    raw.transport.pauseProducing()
    raw.transport.write(b"GET /f HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await sleep(0.2)
    stopped = server.shutdown()
    await sleep(0.2)
    assert not stopped.called
    raw.transport.resumeProducing()
    head, body = split(b"".join(await raw.done))
    await stopped
    assert head.startswith(b"HTTP/1.1 200 OK") and body == bytes(64 * 1024 * 1024)
    assert sendfile_calls


@pytest.fixture
def lowat_at_sendfile(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The socket's ``TCP_NOTSENT_LOWAT`` at every ``os.sendfile`` call during the test."""
    seen: list[int] = []
    real = os.sendfile

    def spy(out: int, source: int, offset: int, count: int) -> int:
        with socket.socket(fileno=os.dup(out)) as sock:
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT))
        return real(out, source, offset, count)

    monkeypatch.setattr(os, "sendfile", spy)
    return seen


@pytest.mark.skipif(not hasattr(socket, "TCP_NOTSENT_LOWAT"), reason="no TCP_NOTSENT_LOWAT")
@pytest_twisted.ensureDeferred
async def test_a_large_file_is_sent_with_a_low_unsent_mark_that_is_undone_after_it(
    serve, tmp_path, big_file, lowat_at_sendfile
):
    small = tmp_path / "small.bin"
    small.write_bytes(b"s" * 1000)
    houweb.registerStaticFilesDirectory(tmp_path, "/static")
    port = (await serve()).port_numbers()[0]
    raw = await connect_raw(port)
    # One connection: the large file, then a small one on the same socket.
    raw.transport.write(
        b"GET /static/big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n"
        b"GET /static/small.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    received = await raw.done
    assert received.count(b"HTTP/1.1 200 OK") == 2
    assert big_file.read_bytes() in received and received.endswith(b"s" * 1000)
    # Every sendfile of the large file saw the mark; the small file's the socket's own (0).
    assert set(lowat_at_sendfile[:-1]) == {NOTSENT_LOWAT}
    assert lowat_at_sendfile[-1] == 0


@pytest.mark.skipif(not hasattr(socket, "TCP_NOTSENT_LOWAT"), reason="no TCP_NOTSENT_LOWAT")
@pytest_twisted.ensureDeferred
async def test_the_unsent_mark_is_undone_when_sendfile_is_refused_midway(
    serve, tmp_path, big_file, monkeypatch
):
    seen: list[tuple[int, int]] = []  # (size of the file sent, the mark) at every call
    real = os.sendfile

    def refusing_the_big_file_midway(out: int, source: int, offset: int, count: int) -> int:
        size = os.fstat(source).st_size
        with socket.socket(fileno=os.dup(out)) as sock:
            seen.append((size, sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT)))
        if size == SIZE and offset >= 100_000:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(out, source, offset, min(count, 100_000 - offset) if size == SIZE else count)

    monkeypatch.setattr(os, "sendfile", refusing_the_big_file_midway)
    small = tmp_path / "small.bin"
    small.write_bytes(b"s" * 1000)
    houweb.registerStaticFilesDirectory(tmp_path, "/static")
    port = (await serve()).port_numbers()[0]
    received = await raw_request(
        port,
        b"GET /static/big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n"
        b"GET /static/small.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    head, rest = split(received)
    assert head.startswith(b"HTTP/1.1 200 OK") and rest[:SIZE] == big_file.read_bytes()
    assert rest[SIZE:].endswith(b"\r\n\r\n" + b"s" * 1000)
    # The large file's calls saw the mark (the last one was refused); the
    # small file after it, sent on the same socket, the socket's own value.
    assert {mark for size, mark in seen if size == SIZE} == {NOTSENT_LOWAT}
    assert seen[-1] == (1000, 0)


@pytest.mark.skipif(not hasattr(socket, "TCP_NOTSENT_LOWAT"), reason="no TCP_NOTSENT_LOWAT")
@pytest_twisted.ensureDeferred
async def test_without_the_unsent_mark_option_a_large_file_is_sent_as_before(
    serve, client, big_file, lowat_at_sendfile, monkeypatch
):
    # A platform without TCP_NOTSENT_LOWAT: the socket is left as it is.
    monkeypatch.setattr("houweb._sendfile._TCP_NOTSENT_LOWAT", None)
    port = await serve_file(serve, big_file)
    reply = await client.get(port, "/f")
    assert reply.status == 200 and reply.body == big_file.read_bytes()
    assert lowat_at_sendfile and set(lowat_at_sendfile) == {0}
