"""
Request targets (RFC 9112 section 3.2): origin form is routed, absolute form
is reduced to its path with its authority as the Host, anything else is 400;
none of them can hang the server (issue 15.1).

The server runs in a child process and the client uses blocking sockets
with a timeout: a target that made the server spin forever makes these tests
fail on that timeout instead of hanging the test process.
"""

from __future__ import annotations

import json
import os
import socket

import pytest

from houweb._channel import origin_form
from houweb._registry import _ancestors

from .support import APPS, ServerProcess

#: Seconds an answer may take: far more than a loaded machine needs.
TIMEOUT = 10


@pytest.fixture(scope="module")
def port():
    child = ServerProcess(os.path.join(APPS, "fuzz_app.py"))
    try:
        yield child.port()
    finally:
        child.kill()


def exchange(port: int, payload: bytes) -> bytes:
    """Send ``payload``; read until the server closes (``Connection: close``) or TIMEOUT."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            except socket.timeout:
                raise AssertionError(f"no answer within {TIMEOUT}s to {payload[:80]!r}") from None
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def get(
    port: int, target: bytes, headers: bytes = b"Host: localhost\r\n"
) -> tuple[int, bytes, bytes]:
    raw = exchange(
        port, b"GET " + target + b" HTTP/1.1\r\n" + headers + b"Connection: close\r\n\r\n"
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.") else 0
    return status, head, body


def still_serving(port: int) -> None:
    status, _, body = get(port, b"/echo/alive")
    assert status == 200 and json.loads(body)["path"] == "/echo/alive"


@pytest.mark.parametrize(
    "target",
    [b"foo", b"echo", b"*", b"127.0.0.1:80", b"http:", b"ftp://h/echo", b"http://u@h/echo"],
)
def test_a_target_that_is_not_a_path_is_400_and_the_server_keeps_serving(port, target):
    status, head, body = get(port, target)
    assert status == 400, head
    assert b"must be a path starting with '/'" in body
    still_serving(port)


def test_asterisk_form_options_is_400(port):
    raw = exchange(port, b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400 ")
    still_serving(port)


def test_an_absolute_form_target_is_routed_by_its_path_with_its_authority_as_host(port):
    status, _, body = get(
        port, b"http://localhost:8080/echo/a%20b?x=1", b"Host: other\r\nhost: third\r\n"
    )
    assert status == 200
    seen = json.loads(body)
    assert seen["path"] == "/echo/a b" and seen["GET"] == {"x": ["1"]}
    hosts = [value for name, value in seen["headers"].items() if name.lower() == "host"]
    assert hosts == ["localhost:8080"]
    still_serving(port)


def test_an_absolute_form_target_without_a_path_is_the_root(port):
    status, _, _ = get(port, b"HTTP://127.0.0.1")
    assert status == 404  # "/" has no handler in the app: routed, answered, not hung
    status, _, body = get(port, b"https://localhost?x=2")
    assert status == 404 and b"Not found: /" in body
    still_serving(port)


def test_an_absolute_form_target_without_a_host_header_gets_one(port):
    status, _, body = get(port, b"http://localhost/echo", headers=b"")
    assert status == 200
    assert json.loads(body)["headers"]["Host"] == "localhost"


def test_an_absolute_form_authority_is_checked_like_a_host_header(port):
    """A foreign authority cannot hide behind an allowed Host header (rebinding)."""
    status, _, body = get(port, b"http://evil.example/echo", b"Host: localhost\r\n")
    assert status == 400 and b"ALLOWED_HOSTS" in body
    still_serving(port)


@pytest.mark.parametrize(
    "target, expected",
    [
        (b"/a?b", (b"/a?b", None)),
        (b"http://h:1/a/b?c", (b"/a/b?c", b"h:1")),
        (b"http://h", (b"/", b"h")),
        (b"http://h?q", (b"/?q", b"h")),
    ],
)
def test_origin_form_reduces_absolute_targets(target, expected):
    assert origin_form(target) == expected


@pytest.mark.parametrize("path", ["foo", "http://127.0.0.1/hello", "", "a/b", "//", "/a//b"])
def test_the_ancestor_walk_ends_whatever_it_is_given(path):
    walked = []
    for ancestor in _ancestors(path):
        walked.append(ancestor)
        assert len(walked) <= len(path) + 2, walked
    assert walked[0] == path
