"""
Property-based attack on the request parser and router: random and mutated
requests over a raw socket always get a well-formed answer (4xx for client
errors, never a 5xx) and the server keeps serving.

Bounded for CI by ``HOUWEB_FUZZ_EXAMPLES`` (default 60 examples per test);
a longer run: ``HOUWEB_FUZZ_EXAMPLES=5000 python -m pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import os
import re
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .support import APPS, ServerProcess

EXAMPLES = int(os.environ.get("HOUWEB_FUZZ_EXAMPLES", "60"))
STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3}) [^\r\n]*\r\n")

fuzz_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def exchange(port: int, payload: bytes, wait: float = 1.5) -> bytes:
    """
    Send ``payload`` and read until the server closes or ``wait`` seconds pass
    without data (an incomplete request is rightly waited on). No half-close:
    HTTP servers, Twisted's included, take it for the client leaving.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def check_answer(port: int, payload: bytes) -> None:
    answer = exchange(port, payload)
    if answer:  # a connection closed without an answer is allowed for garbage
        match = STATUS_LINE.match(answer)
        assert match, answer[:200]
        assert int(match.group(1)) < 500, (payload[:300], answer[:300])
    follow_up = exchange(
        port, b"GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", 10
    )
    assert follow_up.startswith(b"HTTP/1.1 200 OK"), follow_up[:200]


@pytest.fixture(scope="module")
def fuzz_port():
    """
    The fuzz tests talk with blocking sockets, which would stall the test
    process's own reactor, so the server runs in a child process.
    """
    child = ServerProcess(os.path.join(APPS, "fuzz_app.py"))
    try:
        yield child.port()
    finally:
        child.kill()


pieces = st.sampled_from(
    list("abc./%~-_+") + ["%2e", "%2f", "%00", "%C0%AE", "%FF", "..", "é", "\\", "%e2%82", "%%"]
)
segment = st.lists(pieces, max_size=8).map("".join)
paths = st.lists(segment, max_size=6).map(lambda parts: "/" + "/".join(parts))
methods = st.sampled_from(
    ["GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH", "BREW", "get", ""]
)
header_names = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20
)
header_values = st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b)


@fuzz_settings
@given(
    method=methods,
    path=paths,
    query=st.text(max_size=30),
    version=st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/1.1x", ""]),
)
def test_random_request_lines(fuzz_port, method, path, query, version):
    line = f"{method} {path}{'?' + query if query else ''} {version}".encode(
        "utf-8", "surrogatepass"
    )
    check_answer(fuzz_port, line + b"\r\nHost: localhost\r\nConnection: close\r\n\r\n")


#: Request targets that are not paths (issue 15.1): none may hang the server.
absolute_targets = st.builds(
    "{}://{}{}".format,
    st.sampled_from(["http", "https", "HTTP", "ftp", "ws", ""]),
    st.sampled_from(["127.0.0.1", "x", "h:80", "u@h", "", "[::1]:8", "%41"]),
    st.one_of(st.just(""), paths, st.just("?a=1"), paths.map(lambda p: p + "?q")),
)
targets_without_slash = st.one_of(
    segment.filter(lambda s: not s.startswith("/")),
    st.sampled_from(["*", "foo", "echo", "echo/a", "http:", "127.0.0.1:80", "a/../echo"]),
    absolute_targets,
)


@fuzz_settings
@given(
    method=methods, target=targets_without_slash, version=st.sampled_from(["HTTP/1.1", "HTTP/1.0"])
)
def test_request_targets_that_are_not_paths(fuzz_port, method, target, version):
    line = f"{method} {target} {version}".encode("utf-8", "surrogatepass")
    check_answer(fuzz_port, line + b"\r\nHost: localhost\r\nConnection: close\r\n\r\n")


positions = st.integers(0, 70000).map(str)
byte_ranges = st.one_of(
    st.builds("{}-{}".format, positions, positions),
    st.builds("{}-".format, positions),
    st.builds("-{}".format, positions),
    st.text(max_size=6).filter(lambda t: "\r" not in t and "\n" not in t),
)
range_values = st.one_of(
    st.lists(byte_ranges, max_size=40).map(lambda rs: ("bytes=" + ",".join(rs)).encode()),
    st.integers(1, 2000).map(lambda n: b"bytes=" + b",".join([b"0-"] * n)),
    st.builds(  # a position past int()'s 4300-digit limit
        "bytes={}".format,
        st.sampled_from(["0-{}", "-{}", "{}-", "{}-{}", "0-0,{}-"]).map(
            lambda form: form.replace("{}", "9" * 4400)
        ),
    ).map(str.encode),
    header_values,  # not UTF-8, not ranges
)
if_range_values = st.one_of(
    st.none(),
    st.sampled_from([b'"x"', b'W/"x"', b"Thu, 01 Jan 1970 00:00:00 GMT", b"\xff\xfe"]),
    header_values,
)


@fuzz_settings
@given(
    target=st.sampled_from(["/static/data.bin", "/file"]),
    range_value=range_values,
    if_range=if_range_values,
)
def test_random_ranges_on_files(fuzz_port, target, range_value, if_range):
    headers = b"Range: " + range_value + b"\r\n"
    if if_range is not None:
        headers += b"If-Range: " + if_range + b"\r\n"
    answer = exchange(
        fuzz_port,
        b"GET "
        + target.encode()
        + b" HTTP/1.1\r\nHost: localhost\r\n"
        + headers
        + b"Connection: close\r\n\r\n",
    )
    match = STATUS_LINE.match(answer)
    # 400 only for a header Twisted refuses outright: a NUL in it, or a CR or
    # LF that ends the line early and leaves a malformed one.
    assert match and match.group(1) in (b"200", b"206", b"416", b"400"), answer[:300]
    if match.group(1) == b"400":
        sent = range_value + (if_range or b"")
        assert any(c in sent for c in (b"\x00", b"\r", b"\n")), answer[:300]
    assert len(answer) < 2 * 65536 + 8192  # never more than about the file (64 KiB)


@fuzz_settings
@given(
    count=st.integers(0, 480),
    names=st.lists(st.sampled_from(["X-A", "x-a", "X-a", "Accept", "ACCEPT", "Range"]), min_size=1),
)
def test_many_headers_in_any_case(fuzz_port, count, names):
    lines = b"".join(b"%s: %d\r\n" % (names[i % len(names)].encode(), i) for i in range(count))
    check_answer(
        fuzz_port,
        b"GET /echo HTTP/1.1\r\nHost: localhost\r\n" + lines + b"Connection: close\r\n\r\n",
    )


@fuzz_settings
@given(headers=st.lists(st.tuples(header_names, header_values), max_size=8))
def test_random_headers(fuzz_port, headers):
    lines = b"".join(n.encode() + b": " + v + b"\r\n" for n, v in headers)
    check_answer(
        fuzz_port,
        b"GET /echo HTTP/1.1\r\nHost: localhost\r\n" + lines + b"Connection: close\r\n\r\n",
    )


@fuzz_settings
@given(
    body=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)),
    length_delta=st.integers(-5, 0),
)
def test_random_api_bodies(fuzz_port, body, length_delta):
    length = max(0, len(body) + length_delta)
    for content_type in (
        b"application/x-www-form-urlencoded",
        b"application/json",
        b"multipart/form-data; boundary=b",
    ):
        check_answer(
            fuzz_port,
            b"POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
            + content_type
            + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % length
            + body[:length],
        )


@fuzz_settings
@given(data=st.binary(max_size=300))
def test_random_bytes(fuzz_port, data):
    check_answer(fuzz_port, data + b"\r\n\r\n")  # ended, so it is answered, not waited on


@fuzz_settings
@given(
    base=st.sampled_from(
        [
            b"GET /echo?a=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\nConnection: close\r\n\r\nx=1&y=2",
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            b'POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 68\r\nConnection: close\r\n\r\n--b\r\nContent-Disposition: form-data; name="json"\r\n\r\n["f", [], {}]\r\n--b--\r\n',
        ]
    ),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_mutated_valid_requests(fuzz_port, base, flips):
    mutated = bytearray(base)
    for position, value in flips:
        if position < len(mutated):
            mutated[position] = value
    check_answer(fuzz_port, bytes(mutated))
