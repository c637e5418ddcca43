"""
The private names of Twisted and autobahn houweb still relies on, each named
once here with where and why, so that a release that drops one fails this
test with a clear message instead of failing somewhere deep in a request.

Those a public API could replace were replaced (the reactor's
``_asyncioEventloop``: ``asyncio.get_running_loop()`` on the reactor
thread). pyproject.toml bounds Twisted and autobahn below their next major
version; raising a bound means running this test against the new release.
"""

from __future__ import annotations

import _nvx_xormasker
import pytest
from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet import abstract, tcp
from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.logger import globalLogBeginner
from twisted.protocols import basic
from twisted.web import http, http_headers, resource, server


def _connected_channel() -> http.HTTPChannel:
    """:returns: an HTTPChannel on a transport (some attributes are set on connection)."""
    from twisted.internet.testing import StringTransport

    channel = http.HTTPChannel()
    channel.makeConnection(StringTransport())
    return channel


#: (what owns it, how houweb reaches it, the attribute, where houweb uses it and why).
PRIVATE_NAMES = [
    (
        "twisted.web.http.HTTPChannel",
        http.HTTPChannel,
        "_respondToBadRequestAndDisconnect",
        "houweb/_channel.py overrides it to answer a malformed request in houweb's error style",
    ),
    (
        "twisted.web.http.HTTPChannel",
        http.HTTPChannel(),
        "_waitingForTransport",
        "houweb/_channel.py (requestDone): whether the transport's buffer is full, to hold the next pipelined request",
    ),
    (
        "twisted.web.http.HTTPChannel",
        http.HTTPChannel(),
        "_dataBuffer",
        "houweb/_channel.py (requestDone, _close_if_answered): the pipelined bytes read while a request was answered, held while the transport is full, or answered before a half-closed connection closes",
    ),
    (
        "twisted.web.http.HTTPChannel",
        _connected_channel(),
        "_networkProducer",
        "houweb/_channel.py (requestDone): the socket reader, paused while pipelined requests are held",
    ),
    (
        "twisted.web.http.HTTPChannel",
        http.HTTPChannel(),
        "_savedTimeOut",
        "houweb/_channel.py (requestDone): the idle timeout, suspended while pipelined requests are held (the drain timer rules then); "
        "(allContentReceived): the idle timeout kept while a request is answered, its timer left armed",
    ),
    (
        "twisted.web.http_headers",
        http_headers,
        "_nameEncoder",
        "houweb/_render.py: a response's header names in twisted.web's canonical spelling "
        "(refusing a name that is not a token), for an answer written in one go; "
        "houweb/_channel.py (_head_received): a request head's names, as Headers does",
    ),
    (
        "twisted.web.http_headers.Headers",
        http_headers.Headers(),
        "_rawHeaders",
        "houweb/_channel.py (HouwebRequest.houweb_answer): the response headers twisted.web "
        "holds (Server, Date, Connection), merged with the answer's and read in one go; "
        "(_head_received): a request head's headers stored as addRawHeader would; "
        "(HouwebRequest.process): Server and Date set as setHeader would; "
        "houweb/_site.py (klein_routes_here): the last Host header as sent, to remember Klein's verdict by",
    ),
    (
        "twisted.web.server.Request",
        server.Request,
        "_encoder",
        "houweb/_channel.py (HouwebRequest.houweb_answer): an encoded answer is left to twisted.web; "
        "(HouwebRequest.process): set as twisted.web's process sets it",
    ),
    (
        "twisted.web.resource",
        resource,
        "_IEncodingResource",
        "houweb/_channel.py (HouwebRequest.process): a resource that encodes its answers "
        "(gzip) gets its encoder, as in twisted.web's process",
    ),
    (
        "twisted.web.server.Request",
        server.Request,
        "_inFakeHead",
        "houweb/_channel.py (HouwebRequest.houweb_answer): a faked HEAD is left to twisted.web",
    ),
    (
        "twisted.web.http.Request",
        http.Request,
        "_disconnected",
        "houweb/_site.py: whether the client left before the answer was written",
    ),
    (
        "twisted.logger.globalLogBeginner",
        globalLogBeginner,
        "_temporaryObserver",
        "houweb/_logging.py: whether the program already began Twisted logging",
    ),
    (
        "twisted.internet.tcp.Port",
        tcp.Port,
        "_shouldShutdown",
        "houweb/_handover.py: keep a listening socket open for the restarted process or a worker",
    ),
    (
        "twisted.internet.tcp.Port",
        tcp.Port,
        "_type",
        "houweb/_restart.py: an adopted TLS port logs itself as TLS",
    ),
    (
        "twisted.internet.abstract.FileDescriptor",
        abstract.FileDescriptor(),
        "dataBuffer",
        "houweb/_writethrough.py: whether everything written was sent, before os.sendfile "
        "and before a response or WebSocket frame goes to the socket at once",
    ),
    (
        "twisted.internet.abstract.FileDescriptor",
        abstract.FileDescriptor(),
        "_tempDataLen",
        "houweb/_writethrough.py: whether everything written was sent, before os.sendfile "
        "and before a response or WebSocket frame goes to the socket at once",
    ),
    (
        "twisted.internet.abstract.FileDescriptor",
        abstract.FileDescriptor(),
        "_writeDisconnected",
        "houweb/_writethrough.py: a response or WebSocket frame is sent on the socket at once "
        "only if the transport may still write",
    ),
    (
        "twisted.internet.tcp.Connection",
        tcp.Connection,
        "_aborting",
        "houweb/_writethrough.py: nothing is sent on the socket at once after abortConnection",
    ),
    (
        "twisted.internet.abstract.FileDescriptor",
        abstract.FileDescriptor(),
        "producerPaused",
        "houweb/_sendfile.py: pause the transport while os.sendfile writes",
    ),
    (
        "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
        AsyncioSelectorReactor,
        "_disconnectSelectable",
        "houweb/_reactor.py: lose a connection whose socket uvloop stopped watching "
        "(a reset), as Twisted loses one whose write failed",
    ),
    (
        "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
        AsyncioSelectorReactor,
        "_readOrWrite",
        "houweb/_reactor.py extends it (the loop calls it back) to find, after a read on uvloop, "
        "a socket error that made uvloop stop watching the socket",
    ),
    (
        "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
        AsyncioSelectorReactor,
        "_readOrWrite",
        "houweb/_websocket.py registers HouwebReactor's with the loop as an open WebSocket's "
        "reader, without Twisted's callWithLogger and log context per read",
    ),
    (
        "autobahn.twisted.websocket.WebSocketServerProtocol",
        WebSocketServerProtocol,
        "_connectionMade",
        "houweb/_websocket.py extends it to hand the upgrade request to autobahn",
    ),
    (
        "autobahn.twisted.websocket.WebSocketServerProtocol",
        WebSocketServerProtocol,
        "_dataReceived",
        "houweb/_websocket.py feeds it the bytes read, skipping the adapter's debug formatting",
    ),
    (
        "autobahn.twisted.websocket.WebSocketServerProtocol",
        WebSocketServerProtocol,
        "consumeData",
        "houweb/_websocket.py hands it the frames its own reader (houweb/_ws_frames.py) leaves "
        "to autobahn; the parser state it checks first (data, current_frame, inside_message) "
        "is checked on a live connection in tests/test_websocket_frames.py",
    ),
    *(
        (
            "_nvx_xormasker.lib (autobahn's NVX masker, a CFFI module)",
            _nvx_xormasker.lib,
            name,
            "houweb/_ws_frames.py unmasks a frame's payload in place with one C call",
        )
        for name in ("nvx_xormask_new", "nvx_xormask_process", "nvx_xormask_free")
    ),
    (
        "twisted.protocols.basic.LineReceiver",
        basic.LineReceiver,
        "_buffer",
        "houweb/_channel.py (_whole_head): a head is read whole only when no part of a line is held",
    ),
    (
        "twisted.protocols.basic.LineReceiver",
        basic.LineReceiver,
        "_busyReceiving",
        "houweb/_channel.py (_whole_head): bytes handed back while a read is parsed go through LineReceiver",
    ),
    (
        "twisted.web.http.HTTPChannel",
        http.HTTPChannel,
        "_HTTPChannel__first_line",
        "houweb/_channel.py (_whole_head, _head_received): whether the channel waits for a request line, and that it no longer does",
    ),
    (
        "twisted.web.http.HTTPChannel",
        http.HTTPChannel,
        "_receivedHeaderCount",
        "houweb/_channel.py (_whole_head, _head_received): a request head read whole leaves the channel as HTTPChannel's line-by-line reading would",
    ),
    (
        "twisted.web.http.HTTPChannel",
        http.HTTPChannel,
        "_receivedHeaderSize",
        "houweb/_channel.py (_whole_head, _head_received): a request head read whole leaves the channel as HTTPChannel's line-by-line reading would",
    ),
    (
        "twisted.web.http.HTTPChannel",
        http.HTTPChannel(),
        "_transferDecoder",
        "houweb/_channel.py (_whole_head, _head_received): a request head read whole leaves the channel as HTTPChannel's line-by-line reading would (the body's decoder)",
    ),
    (
        "twisted.web.http.HTTPChannel",
        http.HTTPChannel,
        "_finishRequestBody",
        "houweb/_channel.py (_whole_head, _head_received): a request head read whole leaves the channel as HTTPChannel's line-by-line reading would (the body's decoder calls it)",
    ),
    (
        "twisted.web.http",
        http,
        "_IdentityTransferDecoder",
        "houweb/_channel.py (_head_received): the decoder of a Content-Length body, as HTTPChannel makes it",
    ),
]


@pytest.mark.parametrize(
    ("owner", "holder", "name", "use"),
    PRIVATE_NAMES,
    ids=[f"{o}.{n}" for o, _, n, _ in PRIVATE_NAMES],
)
def test_each_private_name_houweb_relies_on_still_exists(owner, holder, name, use):
    assert hasattr(holder, name), (
        f"{owner}.{name} is gone in this Twisted/autobahn release, and {use}. "
        "Find the public replacement (or pin the previous release in pyproject.toml)."
    )


def test_the_package_bounds_twisted_and_autobahn_below_their_next_major_version():
    import os
    import re

    from .support import ROOT

    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as pyproject:
        text = pyproject.read()
    for project in ("twisted", "autobahn"):
        found = re.search(rf'"{project}(\[\w+\])?>=[\d.]+,<(\d+)"', text)
        assert found, f"pyproject.toml has no upper bound on {project}"


#: Instance attributes twisted.web's HTTPChannel sets while it reads a request
#: line, and where houweb reads them.
CHANNEL_ATTRIBUTES = [
    ("_command", "houweb/_channel.py: the method, checked by the header guard before the body"),
    ("_path", "houweb/_channel.py: the raw target, for errors answered before the body"),
    (
        "_version",
        "houweb/_site.py and houweb/_asgi.py: the protocol, for the access line of a request answered early and an ASGI scope's http_version",
    ),
]


@pytest.mark.parametrize(
    ("name", "use"), CHANNEL_ATTRIBUTES, ids=[n for n, _ in CHANNEL_ATTRIBUTES]
)
def test_each_request_line_attribute_houweb_reads_is_set_by_http_channel(name, use):
    from twisted.internet.testing import StringTransport

    seen = {}

    class Channel(http.HTTPChannel):
        def allHeadersReceived(self):
            seen[name] = getattr(self, name, None)
            super().allHeadersReceived()

    channel = Channel()
    channel.makeConnection(StringTransport())
    channel.dataReceived(b"POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n\r\n")
    assert seen.get(name) is not None, (
        f"twisted.web.http.HTTPChannel no longer sets {name} while reading a request line, "
        f"and {use}. Find the public replacement (or pin the previous release in pyproject.toml)."
    )
    channel.connectionLost(None)


def test_twisted_web_server_version_is_what_process_sets_as_server():
    from twisted.web import server

    assert isinstance(server.version, bytes), (
        "twisted.web.server.version is gone or changed, and houweb/_channel.py compares "
        "the Server header twisted.web's process() sets with it (by identity) to send "
        "'Server: houweb' instead."
    )
