"""
Range and If-Range on file answers, static files and fileResponse alike
(issue 15.4: ranges that amplify; issue 14.10: If-Range).
"""

from __future__ import annotations

import email.utils
import math
import os
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

import houweb
from houweb._ranges import MAX_RANGES, amplifies, honoured_range, if_range_matches, parse_ranges

from .conftest import messages
from .support import raw_request

SIZE = 1024 * 1024
DATA = bytes(range(256)) * (SIZE // 256)
#: Where the same file is served: a static directory, and a handler's fileResponse.
ROUTES = ["/static/data.bin", "/file"]


@pytest.fixture
def files(registry: Any, tmp_path: Any) -> Any:
    """``data.bin`` served at both ROUTES."""
    (tmp_path / "data.bin").write_bytes(DATA)
    houweb.registerStaticFilesDirectory(str(tmp_path), "/static")
    houweb.urlHandler("/file")(lambda request: houweb.fileResponse(str(tmp_path / "data.bin")))
    return tmp_path


async def start(serve: Any) -> int:
    return (await serve()).port_numbers()[0]  # type: ignore[no-any-return]


class _Head(protocol.Protocol):
    """Keeps what arrives until the end of the headers, then hangs up."""

    def __init__(self) -> None:
        self.data = b""
        self.head: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if b"\r\n\r\n" in self.data and not self.head.called:
            self.head.callback(self.data.split(b"\r\n\r\n", 1)[0])
            self.transport.abortConnection()

    def connectionLost(self, reason: Any) -> None:
        if not self.head.called:
            self.head.callback(self.data)


async def head_of(port: int, path: str, headers: bytes) -> dict[str, str]:
    """
    The status and headers of a GET (the body is not read: an answer that
    amplifies would be gigabytes), as ``{"status": ..., "content-length": ...}``.
    """
    proto = _Head()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), proto)
    proto.transport.write(
        b"GET %s HTTP/1.1\r\nHost: localhost\r\n%s\r\n" % (path.encode(), headers)
    )
    head = await proto.head.addTimeout(10, reactor)
    lines = head.decode("latin-1").split("\r\n")
    fields = {"status": lines[0].split(" ")[1]}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return fields


@pytest.mark.parametrize("route", ROUTES)
@pytest_twisted.ensureDeferred
async def test_many_overlapping_ranges_get_the_whole_file_with_200(serve, files, route):
    port = await start(serve)
    spec = ",".join(["0-"] * 2000).encode()
    head = await head_of(port, route, b"Range: bytes=" + spec + b"\r\n")
    assert head["status"] == "200" and head["content-length"] == str(SIZE)


@pytest.mark.parametrize(
    "spec",
    [b"0-10,5-20", b"100-200,0-150", b"-600000,0-600000", b"0-0,0-0"],
    ids=["overlap", "overlap-unordered", "suffix-overlap", "same-twice"],
)
@pytest.mark.parametrize("route", ROUTES)
@pytest_twisted.ensureDeferred
async def test_overlapping_ranges_get_the_whole_file_with_200(serve, files, route, spec):
    port = await start(serve)
    head = await head_of(port, route, b"Range: bytes=" + spec + b"\r\n")
    assert head["status"] == "200" and head["content-length"] == str(SIZE)


@pytest.mark.parametrize("route", ROUTES)
@pytest_twisted.ensureDeferred
async def test_more_than_max_ranges_get_200_and_max_ranges_get_206(serve, files, route):
    port = await start(serve)
    many = ",".join(f"{i * 10}-{i * 10 + 1}" for i in range(MAX_RANGES + 1)).encode()
    head = await head_of(port, route, b"Range: bytes=" + many + b"\r\n")
    assert head["status"] == "200" and head["content-length"] == str(SIZE)
    allowed = ",".join(f"{i * 10}-{i * 10 + 1}" for i in range(MAX_RANGES)).encode()
    head = await head_of(port, route, b"Range: bytes=" + allowed + b"\r\n")
    assert head["status"] == "206" and head["content-type"].startswith("multipart/byteranges")


@pytest.mark.parametrize("route", ROUTES)
@pytest_twisted.ensureDeferred
async def test_a_non_ascii_range_is_ignored_without_an_error(serve, files, client, route, logged):
    port = await start(serve)
    head = await head_of(port, route, b"Range: bytes=\xff\xfe-1\r\n")
    assert head["status"] == "200" and head["content-length"] == str(SIZE)
    assert "Traceback" not in messages(logged) and "Unhandled" not in messages(logged)
    assert (await client.get(port, route)).body == DATA


@pytest.mark.parametrize(
    "spec, status, body",
    [
        (b"0-" + b"9" * 5000, "206", DATA),  # past Python's 4300-digit int() limit
        (b"-" + b"9" * 5000, "206", DATA),
        (b"9" * 5000 + b"-", "416", b""),
        (b"0" * 5000 + b"1-2", "206", DATA[1:3]),
    ],
    ids=["last", "suffix", "first", "leading-zeros"],
)
@pytest.mark.parametrize("route", ROUTES)
@pytest_twisted.ensureDeferred
async def test_a_range_with_numbers_of_thousands_of_digits_is_answered_without_an_error(
    serve, files, client, route, logged, spec, status, body
):
    port = await start(serve)
    reply = await client.get(port, route, headers={"Range": "bytes=" + spec.decode()})
    assert str(reply.status) == status and reply.body == body
    assert "Traceback" not in messages(logged) and "Unhandled" not in messages(logged)


@pytest.mark.parametrize("route", ROUTES)
@pytest_twisted.ensureDeferred
async def test_a_suffix_longer_than_the_file_is_the_whole_file_as_206(serve, files, client, route):
    port = await start(serve)
    reply = await client.get(port, route, headers={"Range": "bytes=-99999999"})
    assert reply.status == 206 and reply.body == DATA
    assert reply.header("Content-Range") == f"bytes 0-{SIZE - 1}/{SIZE}"


@pytest.mark.parametrize("route", ROUTES)
@pytest_twisted.ensureDeferred
async def test_a_single_range_is_still_206(serve, files, client, route):
    port = await start(serve)
    reply = await client.get(port, route, headers={"Range": "bytes=10-19"})
    assert reply.status == 206 and reply.body == DATA[10:20]
    assert reply.header("Content-Range") == f"bytes 10-19/{SIZE}"


# If-Range (RFC 9110 section 13.1.5)


@pytest.mark.parametrize("route", ROUTES)
@pytest_twisted.ensureDeferred
async def test_if_range_with_the_current_etag_gets_the_range(serve, files, client, route):
    port = await start(serve)
    tag = (await client.get(port, route)).header("ETag")
    reply = await client.get(port, route, headers={"Range": "bytes=0-9", "If-Range": tag})
    assert reply.status == 206 and reply.body == DATA[:10]


@pytest.mark.parametrize("route", ROUTES)
@pytest_twisted.ensureDeferred
async def test_if_range_after_the_file_changed_gets_the_new_file_whole(serve, files, client, route):
    port = await start(serve)
    tag = (await client.get(port, route)).header("ETag")
    changed = b"new" + DATA[3:]
    (files / "data.bin").write_bytes(changed)
    os.utime(files / "data.bin", (1e9, 1e9))  # a different mtime, whatever the clock
    reply = await client.get(port, route, headers={"Range": "bytes=0-9", "If-Range": tag})
    assert reply.status == 200 and reply.body == changed
    assert reply.header("Content-Range") is None


@pytest.mark.parametrize("route", ROUTES)
@pytest_twisted.ensureDeferred
async def test_if_range_with_a_weak_etag_gets_the_whole_file(serve, files, client, route):
    port = await start(serve)
    tag = (await client.get(port, route)).header("ETag")
    reply = await client.get(port, route, headers={"Range": "bytes=0-9", "If-Range": "W/" + tag})
    assert reply.status == 200 and reply.body == DATA


@pytest.mark.parametrize("route", ROUTES)
@pytest_twisted.ensureDeferred
async def test_if_range_with_the_last_modified_date_gets_the_range(serve, files, client, route):
    port = await start(serve)
    modified = (await client.get(port, route)).header("Last-Modified")
    reply = await client.get(port, route, headers={"Range": "bytes=0-9", "If-Range": modified})
    assert reply.status == 206 and reply.body == DATA[:10]
    older = email.utils.formatdate(
        email.utils.parsedate_to_datetime(modified).timestamp() - 10, usegmt=True
    )
    reply = await client.get(port, route, headers={"Range": "bytes=0-9", "If-Range": older})
    assert reply.status == 200 and reply.body == DATA


# the rules, value by value


@pytest.mark.parametrize(
    "header, expected",
    [
        (b"bytes=0-9", [(0, 9)]),
        (b"bytes = 0-9 , 20-", [(0, 9), (20, 99)]),
        (b"bytes=-10", [(90, 99)]),
        (b"bytes=-1000", [(0, 99)]),
        (b"bytes=50-1000", [(50, 99)]),
        (b"bytes=100-", []),
        (b"bytes=-0", []),
        (b"bytes=9-0", None),
        (b"bytes=", None),
        (b"items=0-9", None),
        (b"bytes=a-b", None),
        (b"bytes=\xff-", None),
        (b"bytes=\xd9\xa1-", None),
        (b"bytes=-", None),
        (b"bytes=0-" + b"9" * 5000, [(0, 99)]),
        (b"bytes=-" + b"9" * 5000, [(0, 99)]),
        (b"bytes=" + b"0" * 5000 + b"5-6", [(5, 6)]),
    ],
)
def test_parse_ranges(header, expected):
    assert parse_ranges(header, 100) == expected


def test_amplifies():
    assert not amplifies([(0, 9), (10, 19)], 100)
    assert amplifies([(0, 9), (9, 19)], 100)
    assert amplifies([(0, 0)] * 2, 100)
    assert amplifies([(i, i) for i in range(0, 2 * (MAX_RANGES + 1), 2)], 100)


def test_if_range_matches_strong_tags_and_exact_dates_only():
    tag, modified = b'"abc"', 1_700_000_000.25
    date = email.utils.formatdate(math.ceil(modified), usegmt=True).encode()
    assert if_range_matches(tag, tag, modified)
    assert not if_range_matches(b'W/"abc"', tag, modified)
    assert not if_range_matches(b'"abd"', tag, modified)
    assert if_range_matches(date, tag, modified)
    assert not if_range_matches(b"yesterday", tag, modified)
    assert not if_range_matches(b"\xff", tag, modified)
    assert honoured_range(b"bytes=0-1", b'"old"', 100, tag, modified) is None
    assert honoured_range(b"bytes=0-1", tag, 100, tag, modified) == b"bytes=0-1"
    assert honoured_range(b"bytes=200-", None, 100, tag, modified) == b"bytes=100-"


def test_a_file_that_shrinks_while_a_range_is_sent_ends_the_connection(tmp_path):
    """
    twisted.web's range producers ask the file for the bytes still due, and
    again whenever it gives none: a file truncated while it was sent had the
    server spin a core for ever (reproduced against a running server: 100%
    CPU after the client left). The file they read drops the connection and
    raises, which ends the producer's loop.
    """
    from houweb._render import _ShrinkGuard

    path = tmp_path / "shrinks.bin"
    path.write_bytes(b"s" * 100)
    aborted = []
    request = type("R", (), {})()
    request.channel = type("C", (), {})()
    request.channel.transport = type("T", (), {"abortConnection": lambda self: aborted.append(1)})()
    with open(path, "rb", buffering=0) as file:
        guard = _ShrinkGuard(file, request)
        guard.seek(50)
        assert guard.read(10) == b"s" * 10
        os.truncate(path, 20)
        with pytest.raises(OSError, match="shrank"):
            guard.read(10)
        assert aborted == [1] and file.closed


@pytest.mark.parametrize("route", ROUTES)
@pytest_twisted.ensureDeferred
async def test_ranges_whose_part_header_crosses_the_64_kib_read_are_sent_whole(
    serve, registry, tmp_path, route
):
    # twisted.web's multipart range producer fills 64 KiB at a time; when a
    # part's header took it past 64 KiB it asked the file for a negative
    # number of bytes: the read raised (nothing sent, found by test_fuzz) or,
    # at exactly -1, read the rest of the file into the answer.
    size = 65536
    (tmp_path / "data.bin").write_bytes(DATA[:size])
    houweb.registerStaticFilesDirectory(str(tmp_path), "/static")
    houweb.urlHandler("/file")(lambda request: houweb.fileResponse(str(tmp_path / "data.bin")))
    port = await start(serve)
    for end in range(65300, 65400):
        answer = await raw_request(
            port,
            b"GET %s HTTP/1.1\r\nHost: localhost\r\nRange: bytes=0-0,1-%d\r\n"
            b"Connection: close\r\n\r\n" % (route.encode(), end),
        )
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 206 "), (end, answer[:200])
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        assert len(body) == length, end
        assert DATA[1 : end + 1] in body, end
