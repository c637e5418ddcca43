"""
A request head read whole in one go (houweb/_head.py) gets exactly the
answer and the Request that Twisted's line-by-line reading gives it: each
head here is sent whole in one write with the whole-head reading on, whole
with it off, and trickled a byte at a time, and the three answers and what
the handler saw must be the same.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.python import deprecate

import houweb
from houweb._channel import HouwebChannel
from houweb._head import split_head

from .support import _Collect, raw_request

OK = b"Host: localhost\r\nConnection: close\r\n"

#: Heads the whole-head reading takes itself (and their bodies).
PLAIN = {
    "get": b"GET /echo HTTP/1.1\r\n" + OK + b"\r\n",
    "no headers, HTTP/1.0": b"GET /echo HTTP/1.0\r\n\r\n",
    "query and odd bytes in the target": b"GET /echo/a%20b;c=d?x=1&y=%FF&z=~!$'()*+, HTTP/1.1\r\n"
    + OK
    + b"\r\n",
    "spaces and tabs around values, empty value": b"GET /echo HTTP/1.1\r\n"
    + OK
    + b"X-A:\t  spaced  \t\r\nX-Empty:\r\nX-Inner: a  b\tc\r\n\r\n",
    "repeated headers, names in any case": b"GET /echo HTTP/1.1\r\n"
    + OK
    + b"accept: a\r\nACCEPT: b\r\nx-weird-NAME: 1\r\nDnt: 1\r\nEtag: e\r\n\r\n",
    "non-ascii values": b"GET /echo HTTP/1.1\r\n"
    + OK
    + "X-U: é€\r\nX-L: ".encode()
    + b"\xe9\xff\r\n\r\n",
    "token characters in names": b"GET /echo HTTP/1.1\r\n" + OK + b"X-!#$%&'*+.^_`|~: t\r\n\r\n",
    "post with body": b"POST /echo HTTP/1.1\r\n" + OK + b"Content-Length: 5\r\n\r\nhello",
    "content length with spaces and case": b"POST /echo HTTP/1.1\r\n"
    + OK
    + b"content-LENGTH:  \t5 \r\n\r\nhello",
    "content length zero": b"POST /echo HTTP/1.1\r\n" + OK + b"Content-Length: 0\r\n\r\n",
    "content length with leading zeros": b"POST /echo HTTP/1.1\r\n"
    + OK
    + b"Content-Length: 0003\r\n\r\nabc",
    "form body": b"POST /echo HTTP/1.1\r\n"
    + OK
    + b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\na=1&b=2",
    "expect continue": b"POST /echo HTTP/1.1\r\n"
    + OK
    + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
    "pipelined": b"GET /echo/1 HTTP/1.1\r\nHost: localhost\r\n\r\n"
    b"POST /echo/2 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc"
    b"GET /echo/3 HTTP/1.1\r\nHost: localhost\r\nX-A: 3\r\n\r\n"
    b"GET /echo/4 HTTP/1.1\r\n" + OK + b"\r\n",
    "cookies": b"GET /echo HTTP/1.1\r\n" + OK + b"Cookie: a=1; b=2\r\n\r\n",
    "host not allowed": b"GET /echo HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    "no host on HTTP/1.1": b"GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n",
    "body larger than the limit": b"POST /echo HTTP/1.1\r\n"
    + OK
    + b"Content-Length: 2000\r\n\r\n"
    + b"x" * 2000,
    "unknown method": b"BREW /echo HTTP/1.1\r\n" + OK + b"\r\n",
}

#: Heads it leaves to Twisted's line-by-line reading, to be answered as before.
LEFT = {
    "garbage request line": b"HELLO\r\n\r\n",
    "lower-case version": b"GET /echo http/1.1\r\n" + OK + b"\r\n",
    "HTTP/2.0": b"GET /echo HTTP/2.0\r\n" + OK + b"\r\n",
    "two spaces in the request line": b"GET  /echo HTTP/1.1\r\n" + OK + b"\r\n",
    "tab in the request line": b"GET\t/echo HTTP/1.1\r\n" + OK + b"\r\n",
    "empty line before the request line": b"\r\nGET /echo HTTP/1.1\r\n" + OK + b"\r\n",
    "absolute-form target": b"GET http://localhost/echo?q=1 HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n",
    "asterisk target": b"OPTIONS * HTTP/1.1\r\n" + OK + b"\r\n",
    "authority target": b"CONNECT localhost:80 HTTP/1.1\r\n" + OK + b"\r\n",
    "DEL byte in target": b"GET /echo\x7f HTTP/1.1\r\n" + OK + b"\r\n",
    "byte above 0x7f in target": b"GET /echo\xc3\xa9 HTTP/1.1\r\n" + OK + b"\r\n",
    "byte above 0xb0 in target": b"GET /echo\xff HTTP/1.1\r\n" + OK + b"\r\n",
    "obs-fold": b"GET /echo HTTP/1.1\r\n" + OK + b"X-A: a\r\n  folded\r\n\r\n",
    "obs-fold with tab": b"GET /echo HTTP/1.1\r\n" + OK + b"X-A: a\r\n\tfolded\r\n\r\n",
    "space before colon": b"GET /echo HTTP/1.1\r\n" + OK + b"X-A : a\r\n\r\n",
    "header without colon": b"GET /echo HTTP/1.1\r\n" + OK + b"X-A a\r\n\r\n",
    "empty header name": b"GET /echo HTTP/1.1\r\n" + OK + b": a\r\n\r\n",
    "non-token header name": b"GET /echo HTTP/1.1\r\n" + OK + b"X(A): a\r\n\r\n",
    "NUL in value": b"GET /echo HTTP/1.1\r\n" + OK + b"X-A: a\x00b\r\n\r\n",
    "bare LF in value": b"GET /echo HTTP/1.1\r\n" + OK + b"X-A: a\nb\r\n\r\n",
    "bare CR in value": b"GET /echo HTTP/1.1\r\n" + OK + b"X-A: a\rb\r\n\r\n",
    "two content lengths": b"POST /echo HTTP/1.1\r\n"
    + OK
    + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "the same content length twice": b"POST /echo HTTP/1.1\r\n"
    + OK
    + b"Content-Length: 2\r\ncontent-length: 2\r\n\r\nab",
    "signed content length": b"POST /echo HTTP/1.1\r\n" + OK + b"Content-Length: +2\r\n\r\nab",
    "negative content length": b"POST /echo HTTP/1.1\r\n" + OK + b"Content-Length: -2\r\n\r\nab",
    "content length list": b"POST /echo HTTP/1.1\r\n" + OK + b"Content-Length: 2, 2\r\n\r\nab",
    "empty content length": b"POST /echo HTTP/1.1\r\n" + OK + b"Content-Length:\r\n\r\n",
    "content length and chunked": b"POST /echo HTTP/1.1\r\n"
    + OK
    + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
    "chunked and content length": b"POST /echo HTTP/1.1\r\n"
    + OK
    + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n2\r\nab\r\n0\r\n\r\n",
    "chunked": b"POST /echo HTTP/1.1\r\n"
    + OK
    + b"Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
    "identity transfer encoding": b"POST /echo HTTP/1.1\r\n"
    + OK
    + b"Transfer-Encoding: identity\r\nContent-Length: 2\r\n\r\nab",
    "unknown transfer encoding": b"POST /echo HTTP/1.1\r\n"
    + OK
    + b"Transfer-Encoding: gzip\r\n\r\n",
    "header line too long": b"GET /echo HTTP/1.1\r\n"
    + OK
    + b"X-Big: "
    + b"a" * 20000
    + b"\r\n\r\n",
    "request line too long": b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n" + OK + b"\r\n",
    "headers too large in total": b"GET /echo HTTP/1.1\r\n"
    + b"".join(b"X-%d: " % i + b"v" * 7990 + b"\r\n" for i in range(3))
    + OK
    + b"\r\n",
    "too many headers": b"GET /echo HTTP/1.1\r\n" + OK + b"X-A: 1\r\n" * 501 + b"\r\n",
}

#: A request's headers with as many bytes as a head may have, and one more.
_FILL = 16384 - len(b"GET /echo HTTP/1.1\r\n" + OK + b"X-Fill: \r\n")
EDGES = {
    "head at the size limit": b"GET /echo HTTP/1.1\r\n"
    + OK
    + b"X-Fill: "
    + b"f" * _FILL
    + b"\r\n\r\n",
    "head one byte over the size limit": b"GET /echo HTTP/1.1\r\n"
    + OK
    + b"X-Fill: "
    + b"f" * (_FILL + 1)
    + b"\r\n\r\n",
    "500 headers": b"GET /echo HTTP/1.1\r\n" + OK + b"X-A: 1\r\n" * 498 + b"\r\n",
}

CASES = {**PLAIN, **LEFT, **EDGES}

_DATE = re.compile(rb"\r\nDate: [^\r]*")


class _ServerReads:
    """
    Counts the bytes houweb's channels are handed (so that a trickling client
    writes its next byte only once the server read the last one, and stops
    once the server closes: bytes sent to a closed socket reset the
    connection, and the answer can be lost with it).
    """

    def __init__(self, monkeypatch: Any) -> None:
        self.received = 0
        self.closing = False
        self._waiter: defer.Deferred[None] | None = None
        original = HouwebChannel.dataReceived
        reads = self

        def counted(channel: HouwebChannel, data: bytes) -> None:
            original(channel, data)
            reads.received += len(data)
            transport = channel.transport
            reads.closing = transport is None or bool(transport.disconnecting)  # type: ignore[attr-defined]
            waiter, reads._waiter = reads._waiter, None
            if waiter is not None:
                waiter.callback(None)

        monkeypatch.setattr(HouwebChannel, "dataReceived", counted)

    async def trickle(self, port: int, payload: bytes) -> bytes:
        """
        Send ``payload`` a byte at a time (pieces of 101 bytes past its
        first 2 KiB), each once the server read the one before, until the
        server closes; return all it answered.
        """
        proto = _Collect()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), proto)
        timer = reactor.callLater(20, proto.transport.abortConnection)  # type: ignore[attr-defined]
        proto.done.addBoth(self._closed)
        self.received = 0
        self.closing = False
        offset = 0
        while offset < len(payload) and not self.closing and not proto.done.called:
            step = 1 if offset < 2048 else 101
            proto.transport.write(payload[offset : offset + step])
            offset += step
            while self.received < offset and not proto.done.called:
                self._waiter = defer.Deferred()
                await self._waiter
        data = await proto.done
        if timer.active():
            timer.cancel()
        return data

    def _closed(self, result: Any) -> Any:
        """The connection closed: nothing more will be read."""
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.callback(None)
        return result


def _answers(raw: bytes) -> bytes:
    """The answers without their Date (which may differ between runs)."""
    return _DATE.sub(b"", raw)


@pytest.fixture
def seen() -> Any:
    """What the handler saw of each request, in order."""
    requests: list[tuple[Any, ...]] = []

    def echo(request: Any) -> str:
        requests.append(
            (
                request.method(),
                request.pathWithQueryString(),
                request.protocol(),
                request._header_lines,
                request.headers().get("Content-Type"),
                request.cookies(),
                request.body(),
            )
        )
        return "echo"

    houweb.urlHandler("/echo", is_prefix=True)(echo)
    return requests


@pytest.mark.parametrize("payload", list(CASES.values()), ids=list(CASES))
@pytest_twisted.ensureDeferred
async def test_a_head_read_whole_is_answered_as_when_read_line_by_line(
    serve, seen, monkeypatch, payload
):
    server = await serve(max_request_size=1000, allowed_hosts=["localhost"])
    port = server.port_numbers()[0]
    whole = await raw_request(port, payload)
    whole_seen = list(seen)
    seen.clear()
    trickled = await _ServerReads(monkeypatch).trickle(port, payload)
    trickled_seen = list(seen)
    seen.clear()
    monkeypatch.setattr(HouwebChannel, "houweb_whole_heads", False)
    line_by_line = await raw_request(port, payload)
    assert whole.startswith(b"HTTP/1."), whole[:200]
    assert _answers(whole) == _answers(line_by_line), (whole, line_by_line)
    assert _answers(whole) == _answers(trickled), (whole, trickled)
    assert whole_seen == seen == trickled_seen


@pytest.mark.parametrize("payload", list(PLAIN.values()), ids=list(PLAIN))
def test_plain_heads_are_read_whole(payload):
    assert split_head(payload, 16384, 500) is not None


@pytest.mark.parametrize("payload", list(LEFT.values()), ids=list(LEFT))
def test_heads_needing_checks_are_left_to_twisted(payload):
    assert split_head(payload, 16384, 500) is None


def test_the_head_limit_counts_every_byte_up_to_the_last_header_line():
    head = EDGES["head at the size limit"]
    assert head.index(b"\r\n\r\n") + 2 == 16384
    assert split_head(head, 16384, 500) is not None
    assert split_head(head, 16383, 500) is None
    assert split_head(EDGES["500 headers"], 16384, 500) is not None
    assert split_head(EDGES["500 headers"], 16384, 499) is None


def test_a_head_not_yet_whole_is_left_to_the_line_reader():
    head = PLAIN["post with body"]
    end = head.index(b"\r\n\r\n")
    for cut in (1, end, end + 2, end + 3):
        assert split_head(head[:cut], 16384, 500) is None
    assert split_head(head[: end + 4], 16384, 500) is not None


@pytest.mark.parametrize(
    "payload, whole",
    [(payload, True) for payload in PLAIN.values()]
    + [(payload, False) for payload in LEFT.values()],
    ids=[f"read whole: {name}" for name in PLAIN] + [f"line by line: {name}" for name in LEFT],
)
@pytest_twisted.ensureDeferred
async def test_the_channel_reads_plain_heads_whole_and_leaves_the_rest_to_twisted(
    serve, seen, monkeypatch, payload, whole
):
    """
    The comparisons above hold trivially if the channel never reads a head
    whole (a condition of _whole_head always false, a private name of
    Twisted's renamed): a plain head sent in one write must be taken by
    _head_received, any other must not.
    """
    taken: list[bytes] = []
    original = HouwebChannel._head_received

    def spy(channel: HouwebChannel, head: Any) -> None:
        taken.append(head.target)
        original(channel, head)

    monkeypatch.setattr(HouwebChannel, "_head_received", spy)
    server = await serve(max_request_size=1000, allowed_hosts=["localhost"])
    answer = await raw_request(server.port_numbers()[0], payload)
    assert answer.startswith(b"HTTP/1."), answer[:200]
    assert bool(taken) is whole, taken


#: Content-Length values longer than Python's int() takes from a string (4300 digits).
_HUGE = b"POST /echo HTTP/1.1\r\n" + OK + b"Content-Length: 1" + b"0" * 5000 + b"\r\n\r\nabc"
_ZEROS = b"POST /echo HTTP/1.1\r\n" + OK + b"Content-Length: " + b"0" * 5000 + b"3\r\n\r\nabc"


@pytest.mark.parametrize("whole_heads", [True, False], ids=["read whole", "line by line"])
@pytest_twisted.ensureDeferred
async def test_a_content_length_too_long_for_int_is_answered(serve, seen, monkeypatch, whole_heads):
    """
    int() refuses strings of more than 4300 digits: such a Content-Length
    raised out of dataReceived (an "Unhandled Error" traceback logged per
    request, the connection dropped without an answer). A huge one gets 413
    (after the Host check, as any body too large) before the handler runs;
    leading zeros are still just zeros.
    """
    monkeypatch.setattr(HouwebChannel, "houweb_whole_heads", whole_heads)
    server = await serve(max_request_size=1000, allowed_hosts=["localhost"])
    port = server.port_numbers()[0]
    answer = await raw_request(port, _HUGE)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"maximum request size of 1000 bytes" in answer
    assert seen == []
    answer = await raw_request(port, _ZEROS)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert [request[-1] for request in seen] == [b"abc"]
    answer = await raw_request(port, _HUGE.replace(b"Host: localhost", b"Host: evil.example"))
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"Invalid Host header" in answer
    assert len(seen) == 1


@pytest_twisted.ensureDeferred
async def test_houweb_reads_no_twisted_web_http_attribute_through_its_proxy_per_request(
    serve, tmp_path, monkeypatch
):
    # twisted.web.http is a deprecation proxy (twisted.python.deprecate's
    # _ModuleProxy): reading an attribute of it costs about 1 us, so houweb
    # binds what it needs once, at import. A POST with a body (its decoder)
    # and a file answer (sendfile's check of bodiless codes) read none.
    body_file = tmp_path / "f.txt"
    body_file.write_bytes(b"file body")
    houweb.urlHandler("/echo")(
        lambda request: houweb.Response(request.body(), content_type="text/plain")
    )
    houweb.urlHandler("/file")(lambda request: houweb.fileResponse(str(body_file)))
    port = (await serve()).port_numbers()[0]
    read: list[str] = []
    original = deprecate._ModuleProxy.__getattribute__

    def counted(proxy: Any, name: str) -> Any:
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.startswith("houweb"):
            read.append(f"{caller}: {name}")
        return original(proxy, name)

    with monkeypatch.context() as patched:
        patched.setattr(deprecate._ModuleProxy, "__getattribute__", counted)
        echoed = await raw_request(
            port,
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nabcde"
            b"GET /file HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
    assert echoed.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert b"\r\n\r\nabcde" in echoed and echoed.endswith(b"\r\n\r\nfile body")
    assert read == []
