"""WebSockets: @webSocket and WebSocket (spec §15, §16 item 108), on real sockets."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.internet import reactor, ssl
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.ssl import optionsForClientTLS
from twisted.logger import LogLevel

import houweb

from .conftest import messages
from .support import (
    WSClient,
    connect_raw,
    raw_request,
    sleep,
    ws_connect,
    ws_frame,
    ws_handshake,
)
from .test_dispatch import until


class Recorder(houweb.WebSocket):
    """Echoes every message and records each callback in ``events``."""

    events: list[Any]

    async def connect(self, request):
        self.events.append(("connect", request.path(), request.GET()))
        await self.accept()

    async def receive(self, text_data=None, bytes_data=None):
        self.events.append(("receive", text_data, bytes_data))
        if text_data == "close 4000":
            await self.close(4000)
        elif text_data is not None:
            await self.send(text_data)
        else:
            await self.send(bytes_data=bytes_data)

    async def disconnect(self, code):
        self.events.append(("disconnect", code))


def recorder(path: str = "/echo", **kwargs: Any) -> list[Any]:
    """Register a :class:`Recorder` at ``path``; :returns: its event list."""
    events: list[Any] = []
    houweb.webSocket(path, **kwargs)(type("Echo", (Recorder,), {"events": events}))
    return events


def disconnects(events: list[Any]) -> list[Any]:
    return [event for event in events if event[0] == "disconnect"]


async def settled(events: list[Any]) -> None:
    """Wait for ``disconnect``, then a little more, so a second one would show."""
    await until(lambda: disconnects(events))
    await sleep(0.2)


def close_code(data: bytes) -> int:
    """:returns: the code of the (short) close frame at the start of ``data``."""
    assert data[0] == 0x88, data
    return int.from_bytes(data[2:4], "big")


async def open_raw(port: int, path: str = "/echo") -> Any:
    """A raw connection that completed the handshake."""
    connection = await connect_raw(port)
    connection.transport.write(ws_handshake(path))
    await until(lambda: b"\r\n\r\n" in connection.data)
    assert connection.data.startswith(b"HTTP/1.1 101 ")
    connection.data = b""
    return connection


# echoing, callbacks, closing


@pytest_twisted.ensureDeferred
async def test_echoes_text_and_binary_and_disconnects_once_with_1000(serve):
    events = recorder()
    port = (await serve()).port_numbers()[0]
    ws = await ws_connect(port, "/echo?room=1")
    ws.sendMessage("héllo".encode(), isBinary=False)
    assert await ws.next_message() == "héllo"
    ws.sendMessage(b"\x00\xff", isBinary=True)
    assert await ws.next_message() == b"\x00\xff"
    ws.sendClose(1000)
    assert await ws.wait_closed() == 1000
    await settled(events)
    assert events == [
        ("connect", "/echo", {"room": "1"}),
        ("receive", "héllo", None),
        ("receive", None, b"\x00\xff"),
        ("disconnect", 1000),
    ]


@pytest_twisted.ensureDeferred
async def test_a_fragmented_message_is_received_once(serve):
    events = recorder()
    port = (await serve()).port_numbers()[0]
    ws = await ws_connect(port, "/echo")
    ws.sendMessage(b"x" * 1000, isBinary=False, fragmentSize=100)
    assert await ws.next_message() == "x" * 1000
    assert [e for e in events if e[0] == "receive"] == [("receive", "x" * 1000, None)]
    ws.sendClose(1000)
    await settled(events)


@pytest_twisted.ensureDeferred
async def test_server_close_sends_the_code_and_disconnects_once(serve):
    events = recorder()
    port = (await serve()).port_numbers()[0]
    ws = await ws_connect(port, "/echo")
    ws.sendMessage(b"close 4000")
    assert await ws.wait_closed() == 4000
    await settled(events)
    assert disconnects(events) == [("disconnect", 4000)]


@pytest_twisted.ensureDeferred
async def test_client_vanishing_without_a_close_frame_is_1006_once(serve):
    events = recorder()
    server = await serve()
    ws = await ws_connect(server.port_numbers()[0], "/echo")
    ws.transport.abortConnection()
    await settled(events)
    assert disconnects(events) == [("disconnect", 1006)]
    await until(lambda: not server.site.houweb_connections and server.site.in_flight() == 0)


@pytest_twisted.ensureDeferred
async def test_client_leaving_before_accept_is_1006_once_after_connect(serve):
    events = []
    entered = asyncio.Event()
    go_on = asyncio.Event()

    @houweb.webSocket("/wait")
    class Wait(houweb.WebSocket):
        async def connect(self, request):
            entered.set()
            await go_on.wait()
            await self.accept()  # too late: returns, nothing to accept
            await self.send("lost")
            events.append("connect done")

        async def disconnect(self, code):
            events.append(("disconnect", code))

    server = await serve()
    raw = await connect_raw(server.port_numbers()[0])
    raw.transport.write(ws_handshake("/wait"))
    await until(entered.is_set)
    raw.transport.abortConnection()
    await raw.done
    go_on.set()
    await settled(events)
    assert events == ["connect done", ("disconnect", 1006)]
    await until(lambda: not server.site.houweb_connections and server.site.in_flight() == 0)


@pytest_twisted.ensureDeferred
async def test_close_frame_without_a_code_is_1005(serve):
    events = recorder()
    port = (await serve()).port_numbers()[0]
    raw = await open_raw(port)
    raw.transport.write(ws_frame(0x8, b""))
    await raw.done
    await settled(events)
    assert disconnects(events) == [("disconnect", 1005)]


@pytest_twisted.ensureDeferred
async def test_callbacks_run_one_at_a_time_in_order(serve):
    order = []

    @houweb.webSocket("/slow")
    class Slow(houweb.WebSocket):
        async def connect(self, request):
            await self.accept()
            await self.send("welcome")
            await asyncio.sleep(0.2)  # the client's message waits
            order.append("connect done")

        async def receive(self, text_data=None, bytes_data=None):
            order.append(f"receive {text_data}")
            await asyncio.sleep(0.05)
            order.append(f"receive {text_data} done")

        async def disconnect(self, code):
            order.append(f"disconnect {code}")

    port = (await serve()).port_numbers()[0]
    ws = await ws_connect(port, "/slow")
    assert await ws.next_message() == "welcome"
    ws.sendMessage(b"a")
    ws.sendMessage(b"b")
    ws.sendClose(1000)
    await until(lambda: "disconnect 1000" in order)
    assert order == [
        "connect done",
        "receive a",
        "receive a done",
        "receive b",
        "receive b done",
        "disconnect 1000",
    ]


@pytest_twisted.ensureDeferred
async def test_the_default_callbacks_accept_and_ignore(serve):
    houweb.webSocket("/plain")(houweb.WebSocket)
    port = (await serve()).port_numbers()[0]
    ws = await ws_connect(port, "/plain")
    ws.sendMessage(b"ignored")
    ws.sendClose(1000)
    assert await ws.wait_closed() == 1000


@pytest_twisted.ensureDeferred
async def test_send_from_another_thread(serve, client):
    sockets: list[houweb.WebSocket] = []

    @houweb.webSocket("/push")
    class Push(houweb.WebSocket):
        async def connect(self, request):
            await self.accept()
            sockets.append(self)

    @houweb.urlHandler("/notify")
    def notify(request):  # runs in the pool
        sockets[0].send(f"from {threading.current_thread().name}").result(10)
        sockets[0].send(b"\x01").result(10)
        return "sent"

    port = (await serve()).port_numbers()[0]
    ws = await ws_connect(port, "/push")
    await until(lambda: sockets)
    assert (await client.get(port, "/notify")).text == "sent"
    assert (await ws.next_message()).startswith("from PoolThread-houweb")
    assert await ws.next_message() == b"\x01"


@pytest_twisted.ensureDeferred
async def test_send_checks_its_arguments(serve):
    errors: list[str] = []

    @houweb.webSocket("/args")
    class Args(houweb.WebSocket):
        async def connect(self, request):
            await self.accept()
            for args, kwargs in [
                ((), {}),
                (("a",), {"bytes_data": b"b"}),
                ((), {"text_data": b"x", "bytes_data": b"y"}),
                ((1,), {}),
                ((), {"bytes_data": "text"}),
            ]:
                try:
                    self.send(*args, **kwargs)
                except (TypeError, ValueError) as exc:
                    errors.append(type(exc).__name__)
            for code in (1005, 1006, 999, 5000):
                try:
                    self.close(code)
                except ValueError:
                    errors.append(f"close {code}")
            await self.send(b"positional bytes")
            await self.send("positional text")

    port = (await serve()).port_numbers()[0]
    ws = await ws_connect(port, "/args")
    assert await ws.next_message() == b"positional bytes"
    assert await ws.next_message() == "positional text"
    assert errors == [
        "ValueError",
        "ValueError",
        "ValueError",
        "TypeError",
        "TypeError",
        "close 1005",
        "close 1006",
        "close 999",
        "close 5000",
    ]


def test_a_websocket_not_made_by_houweb_cannot_send():
    with pytest.raises(RuntimeError):
        houweb.WebSocket().send("x")


# refusing and failing


@pytest_twisted.ensureDeferred
async def test_connect_without_accept_is_403_and_no_disconnect(serve, client):
    called = []

    @houweb.webSocket("/no")
    class No(houweb.WebSocket):
        async def connect(self, request):
            called.append("connect")

        async def disconnect(self, code):
            called.append("disconnect")

    houweb.urlHandler("/ok")(lambda request: "ok")
    server = await serve()
    port = server.port_numbers()[0]
    answer = await raw_request(port, ws_handshake("/no"))
    assert answer.startswith(b"HTTP/1.1 403 ")
    await until(lambda: not server.site.houweb_connections)  # the server saw it close
    await sleep(0)  # one more turn: a disconnect() started then would have run by now
    assert called == ["connect"]
    assert (await client.get(port, "/ok")).text == "ok"


@pytest_twisted.ensureDeferred
async def test_close_in_connect_before_accept_refuses_with_403(serve):
    @houweb.webSocket("/closes")
    class Closes(houweb.WebSocket):
        async def connect(self, request):
            await self.close()

    port = (await serve()).port_numbers()[0]
    assert (await raw_request(port, ws_handshake("/closes"))).startswith(b"HTTP/1.1 403 ")


@pytest_twisted.ensureDeferred
async def test_connect_raising_is_500_and_logged(serve, logged):
    @houweb.webSocket("/raises")
    class Raises(houweb.WebSocket):
        async def connect(self, request):
            raise ValueError("no way")

    port = (await serve()).port_numbers()[0]
    assert (await raw_request(port, ws_handshake("/raises"))).startswith(b"HTTP/1.1 500 ")
    errors = [e for e in logged if e.get("log_level") == LogLevel.error]
    assert any("no way" in str(e.get("log_failure", "")) for e in errors)


@pytest_twisted.ensureDeferred
async def test_receive_raising_closes_with_1011_and_disconnects_once(serve, logged):
    codes = []

    @houweb.webSocket("/fails")
    class Fails(houweb.WebSocket):
        async def receive(self, text_data=None, bytes_data=None):
            raise ValueError("bad message")

        async def disconnect(self, code):
            codes.append(code)

    port = (await serve()).port_numbers()[0]
    ws = await ws_connect(port, "/fails")
    ws.sendMessage(b"x")
    assert await ws.wait_closed() == 1011
    await until(lambda: codes)
    await sleep(0.2)
    assert codes == [1011]
    assert any("bad message" in str(e.get("log_failure", "")) for e in logged)


# bad input


@pytest.mark.parametrize(
    "key, version",
    [("short", "13"), ("", "13"), ("dGhlIHNhbXBsZSBub25jZQ==", "12"), ("!!!!", "x")],
)
@pytest_twisted.ensureDeferred
async def test_bad_handshakes_are_400_and_connect_is_not_called(serve, client, key, version):
    events = recorder()
    houweb.urlHandler("/ok")(lambda request: "ok")
    port = (await serve()).port_numbers()[0]
    answer = await raw_request(port, ws_handshake("/echo", key=key, version=version))
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert events == []
    assert (await client.get(port, "/ok")).text == "ok"


@pytest_twisted.ensureDeferred
async def test_oversized_messages_close_with_1009(serve, client):
    codes = []

    @houweb.webSocket("/small")
    class Small(houweb.WebSocket):
        max_message_size = 10

        async def disconnect(self, code):
            codes.append(code)

    houweb.urlHandler("/ok")(lambda request: "ok")
    port = (await serve()).port_numbers()[0]
    ws = await ws_connect(port, "/small")
    ws.sendMessage(b"x" * 11, isBinary=True)
    assert await ws.wait_closed() == 1009
    await until(lambda: codes)
    assert codes == [1009]
    fragmented = await ws_connect(port, "/small")
    fragmented.sendMessage(b"x" * 20, isBinary=True, fragmentSize=5)
    assert await fragmented.wait_closed() == 1009
    assert (await client.get(port, "/ok")).text == "ok"


@pytest_twisted.ensureDeferred
async def test_invalid_utf8_text_closes_with_1007(serve):
    events = recorder()
    port = (await serve()).port_numbers()[0]
    raw = await open_raw(port)
    raw.transport.write(ws_frame(0x1, b"ok\xff"))
    await until(lambda: len(raw.data) >= 4)
    assert close_code(raw.data) == 1007
    raw.transport.write(ws_frame(0x8, (1007).to_bytes(2, "big")))
    await raw.done
    await settled(events)
    assert [e[0] for e in events] == ["connect", "disconnect"]
    assert disconnects(events) == [("disconnect", 1007)]


@pytest_twisted.ensureDeferred
async def test_unmasked_frames_close_with_1002(serve):
    events = recorder()
    port = (await serve()).port_numbers()[0]
    raw = await open_raw(port)
    raw.transport.write(b"\x81\x02hi")
    await until(lambda: len(raw.data) >= 4)
    assert close_code(raw.data) == 1002
    raw.transport.abortConnection()
    await settled(events)
    assert len(disconnects(events)) == 1


@pytest_twisted.ensureDeferred
async def test_frames_sent_with_the_handshake_are_not_lost(serve):
    recorder()
    port = (await serve()).port_numbers()[0]
    raw = await connect_raw(port)
    raw.transport.write(ws_handshake("/echo") + ws_frame(0x1, b"early"))
    await until(lambda: raw.data.endswith(b"\x81\x05early"))
    raw.transport.abortConnection()


# routing


@pytest_twisted.ensureDeferred
async def test_plain_http_to_a_websocket_path_is_426(serve):
    recorder()
    port = (await serve()).port_numbers()[0]
    answer = await raw_request(port, b"GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert b"\r\nUpgrade: websocket\r\n" in answer
    assert b"<h1>this URL takes WebSocket connections only</h1>" in answer


@pytest_twisted.ensureDeferred
async def test_an_upgrade_request_to_a_url_handler_is_plain_http(serve):
    houweb.urlHandler("/page")(lambda request: "page")
    port = (await serve()).port_numbers()[0]
    answer = await raw_request(port, ws_handshake("/page", connection="Upgrade, close"))
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"page")


@pytest_twisted.ensureDeferred
async def test_is_prefix_takes_paths_below(serve):
    events = recorder("/rooms", is_prefix=True)
    port = (await serve()).port_numbers()[0]
    ws = await ws_connect(port, "/rooms/blue")
    ws.sendClose(1000)
    await settled(events)
    assert events[0] == ("connect", "/rooms/blue", {})


@pytest_twisted.ensureDeferred
async def test_websockets_share_the_ports_rules(serve):
    server = await serve(ports=[0])
    main, extra = server.port_numbers()
    recorder(ports=[extra])
    refused = await raw_request(main, ws_handshake("/echo", connection="Upgrade, close"))
    assert refused.startswith(b"HTTP/1.1 404 ")
    ws = await ws_connect(extra, "/echo")
    ws.sendClose(1000)
    await ws.wait_closed()


def test_webSocket_checks_what_it_registers(registry):
    with pytest.raises(TypeError):
        houweb.webSocket("/x")(object)
    with pytest.raises(TypeError):
        houweb.webSocket("/x")(lambda: None)

    class Sync(houweb.WebSocket):
        def receive(self, text_data=None, bytes_data=None):
            pass

    with pytest.raises(TypeError, match="Sync.receive must be an async def"):
        houweb.webSocket("/x")(Sync)
    with pytest.raises(ValueError):
        houweb.webSocket("x")
    with pytest.raises(ValueError):
        houweb.webSocket("/api")
    assert registry.is_empty()
    assert houweb.webSocket("/ok")(houweb.WebSocket) is houweb.WebSocket


# the server around it


@pytest_twisted.ensureDeferred
async def test_shutdown_closes_websockets_with_1001(serve):
    events = recorder()
    server = await serve(shutdown_grace=30)
    ws = await ws_connect(server.port_numbers()[0], "/echo")
    stopped = server.shutdown()
    assert await ws.wait_closed() == 1001
    await stopped.addTimeout(5, reactor)
    await settled(events)
    assert disconnects(events) == [("disconnect", 1001)]


@pytest_twisted.ensureDeferred
async def test_closed_websockets_leave_nothing_behind(serve, client):
    events = recorder()
    server = await serve()
    port = server.port_numbers()[0]
    for _ in range(5):
        ws = await ws_connect(port, "/echo")
        ws.sendMessage(b"x")
        await ws.next_message()
        ws.sendClose(1000)
        await ws.wait_closed()
    refused = await raw_request(port, ws_handshake("/echo", key="bad"))
    assert refused.startswith(b"HTTP/1.1 400 ")
    await until(lambda: len(disconnects(events)) == 5)
    await until(lambda: not server.site.houweb_connections and server.site.in_flight() == 0)
    assert (await client.get(port, "/echo")).status == 426


async def wss_echo(serve: Any, tmp_path: Any) -> Any:
    """A server with a TLS port (a self-signed certificate), and an autobahn client open on its ``/echo`` over it."""
    from .test_tls import self_signed

    key, cert = self_signed(tmp_path)
    server = await serve(listen=[f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"])
    tls_port = server.port_numbers()[1]
    trust = ssl.Certificate.loadPEM(open(cert, "rb").read())
    factory = WebSocketClientFactory(f"wss://localhost:{tls_port}/echo")
    factory.protocol = WSClient
    endpoint = wrapClientTLS(
        optionsForClientTLS("localhost", trustRoot=trust),
        TCP4ClientEndpoint(reactor, "127.0.0.1", tls_port),
    )
    ws = await endpoint.connect(factory)
    await ws.opened.addTimeout(10, reactor)
    return ws


@pytest_twisted.ensureDeferred
async def test_secure_websockets_over_a_tls_port(serve, tmp_path):
    events = recorder(ports=[-1])
    ws = await wss_echo(serve, tmp_path)
    ws.sendMessage(b"over tls")
    assert await ws.next_message() == "over tls"
    ws.sendClose(1000)
    assert await ws.wait_closed() == 1000
    await settled(events)
    assert disconnects(events) == [("disconnect", 1000)]


# Houdini's send(data, is_binary) and close(code, reason)


@pytest_twisted.ensureDeferred
async def test_houdinis_send_data_is_binary_and_houwebs_keywords_both_work(serve):
    @houweb.webSocket("/forms")
    class Forms(houweb.WebSocket):
        async def connect(self, request):
            await self.accept()
            await self.send("text")  # Houdini: str, is_binary=False
            await self.send("as binary", True)  # Houdini: str sent as a binary message
            await self.send(b"\x00\x01", is_binary=True)
            await self.send(b"utf-8 bytes as text", is_binary=False)
            await self.send(b"\xff")  # bytes, is_binary left out: binary (houweb's old form)
            await self.send(text_data="keyword text")
            await self.send(bytes_data=b"keyword bytes")

    port = (await serve()).port_numbers()[0]
    ws = await ws_connect(port, "/forms")
    assert [await ws.next_message() for _ in range(7)] == [
        "text",
        b"as binary",
        b"\x00\x01",
        "utf-8 bytes as text",
        b"\xff",
        "keyword text",
        b"keyword bytes",
    ]


@pytest_twisted.ensureDeferred
async def test_contradictory_send_arguments_raise_clear_errors(serve):
    errors: list[str] = []

    @houweb.webSocket("/bad")
    class Bad(houweb.WebSocket):
        async def connect(self, request):
            await self.accept()
            for args, kwargs in [
                (("a",), {"text_data": "b"}),
                ((b"a",), {"bytes_data": b"b"}),
                ((), {"text_data": "a", "is_binary": True}),
                ((None, True), {}),
                (("a", "yes"), {}),
                ((None, b"old positional bytes_data"), {}),
                ((b"\xff", False), {}),
                (("a",), {"is_binary": 1}),
            ]:
                try:
                    self.send(*args, **kwargs)
                except (TypeError, ValueError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
            await self.send("done")

    port = (await serve()).port_numbers()[0]
    ws = await ws_connect(port, "/bad")
    assert await ws.next_message() == "done"  # nothing of the bad calls was sent
    assert errors == [
        "ValueError: send() takes one message: data (Houdini's send(data, is_binary)), "
        "or text_data, or bytes_data; got data, text_data",
        "ValueError: send() takes one message: data (Houdini's send(data, is_binary)), "
        "or text_data, or bytes_data; got data, bytes_data",
        "ValueError: is_binary goes with data, not with text_data or bytes_data",
        "ValueError: send() takes one message: data (Houdini's send(data, is_binary)), "
        "or text_data, or bytes_data; got none",
        "TypeError: is_binary must be True or False, not str",
        "TypeError: is_binary must be True or False, not bytes",
        "ValueError: send(data, is_binary=False): data is not UTF-8 text",
        "TypeError: is_binary must be True or False, not int",
    ]


@pytest_twisted.ensureDeferred
async def test_close_sends_houdinis_code_and_reason(serve):
    errors: list[str] = []

    @houweb.webSocket("/bye")
    class Bye(houweb.WebSocket):
        async def connect(self, request):
            await self.accept()
            for args in [(1000, "x" * 124), (1000, b"bytes"), ("1000", "")]:
                try:
                    self.close(*args)
                except (TypeError, ValueError) as exc:
                    errors.append(type(exc).__name__)
            await self.close(4001, "done here: é")

    port = (await serve()).port_numbers()[0]
    ws = await ws_connect(port, "/bye")
    assert await ws.wait_closed() == 4001
    assert ws.remoteCloseReason == "done here: é"
    assert errors == ["ValueError", "TypeError", "TypeError"]


MESSAGE_TAG: contextvars.ContextVar[str | None] = contextvars.ContextVar("tag", default=None)


@pytest_twisted.ensureDeferred
async def test_a_context_variable_set_in_one_callback_is_not_seen_by_the_next(serve):
    # Each callback runs in a context of its own, as it did in a task of its
    # own (decimal's context, structlog's bound values and the like are
    # context variables): a value set while handling one message does not
    # leak into the next one, even when both arrived in one read.
    seen = []

    @houweb.webSocket("/tagged")
    class Tagged(houweb.WebSocket):
        async def connect(self, request):
            MESSAGE_TAG.set("connect")
            await self.accept()

        async def receive(self, text_data=None, bytes_data=None):
            seen.append(MESSAGE_TAG.get())
            MESSAGE_TAG.set(text_data)
            await asyncio.sleep(0)
            await self.send(text_data)

        async def disconnect(self, code):
            seen.append(MESSAGE_TAG.get())

    port = (await serve()).port_numbers()[0]
    raw = await open_raw(port, "/tagged")
    raw.transport.write(ws_frame(0x1, b"a") + ws_frame(0x1, b"b") + ws_frame(0x1, b"c"))
    await until(lambda: raw.data.count(b"\x81\x01") == 3)
    raw.transport.write(ws_frame(0x8, (1000).to_bytes(2, "big")))
    await raw.done
    await until(lambda: len(seen) == 4)
    assert "a" not in seen and "b" not in seen and "c" not in seen, seen


@pytest_twisted.ensureDeferred
async def test_receives_ending_at_once_or_awaiting_keep_order_task_context_and_the_receive_bound(
    serve, logged
):
    # A receive() that awaits nothing that waits ends within its first step
    # (no bridge built); one that awaits a Deferred or an asyncio future goes
    # on under the bridge. Either way: in order, inside a task (asyncio's
    # timeouts need one), in a context of its own, each message's bytes
    # counted taken once it ended (or failed), so reading never stays paused.
    from twisted.internet import task

    seen: list[tuple[str, bool, str | None]] = []
    instances: list[Any] = []

    @houweb.webSocket("/steps")
    class Steps(houweb.WebSocket):
        max_pending_receive = 1  # every message pauses reading until taken

        async def connect(self, request):
            instances.append(self)
            await self.accept()

        async def receive(self, text_data=None, bytes_data=None):
            seen.append((text_data, asyncio.current_task() is not None, MESSAGE_TAG.get()))
            MESSAGE_TAG.set(text_data)
            if text_data == "deferred":
                await task.deferLater(reactor, 0, lambda: None)
            elif text_data == "sleep":
                async with asyncio.timeout(5):
                    await asyncio.sleep(0)
            elif text_data == "fails-later":
                await asyncio.sleep(0)
                raise ValueError("after awaiting")
            elif text_data == "fails-now":
                raise ValueError("at once")
            await self.send(text_data)

    port = (await serve()).port_numbers()[0]
    raw = await open_raw(port, "/steps")
    names = ["now", "deferred", "sleep", "now-again"]
    raw.transport.write(b"".join(ws_frame(0x1, name.encode()) for name in names))
    await until(lambda: len(server_frames(raw.data)) == len(names))
    assert [payload.decode() for _, _, payload in server_frames(raw.data)] == names
    assert seen == [(name, True, None) for name in names]
    connection = instances[0]._houweb_connection
    await until(lambda: connection._pending_receive == 0 and not connection._reading_paused)
    raw.transport.write(ws_frame(0x1, b"fails-later"))
    await until(lambda: connection._pending_receive == 0 and len(seen) == 5)
    # the failure closed the connection with 1011, logged
    await until(lambda: any(first == 0x88 for first, _, _ in server_frames(raw.data)))
    close = [payload for first, _, payload in server_frames(raw.data) if first == 0x88][0]
    assert int.from_bytes(close[:2], "big") == 1011
    assert "Steps.receive raised an exception" in messages(logged)


def server_frames(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """:returns: the whole (unmasked) frames at the start of ``data``: (first byte, header, payload)."""
    frames = []
    while len(data) >= 2:
        size, start = data[1] & 0x7F, 2
        if size == 126:
            size, start = int.from_bytes(data[2:4], "big"), 4
        elif size == 127:
            size, start = int.from_bytes(data[2:10], "big"), 10
        if len(data) < start + size:
            break
        frames.append((data[0], data[:start], data[start : start + size]))
        data = data[start + size :]
    return frames


@pytest_twisted.ensureDeferred
async def test_messages_of_each_header_size_go_out_whole_with_the_shortest_header(serve):
    # The length takes 7 bits up to 125 bytes, 16 bits up to 65535, 64 bits
    # beyond (RFC 6455 section 5.2, "the minimal number of bytes").
    sizes = [0, 1, 125, 126, 127, 65535, 65536, 300_000]

    @houweb.webSocket("/sizes")
    class Sizes(houweb.WebSocket):
        async def receive(self, text_data=None, bytes_data=None):
            for size in sizes:
                self.send(bytes_data=bytes(range(256)) * (size // 256) + bytes(size % 256))
                self.send(text_data="é" * (size // 2) + "x" * (size % 2))

    port = (await serve()).port_numbers()[0]
    raw = await open_raw(port, "/sizes")
    raw.transport.write(ws_frame(0x1, b"go"))
    await until(lambda: len(server_frames(raw.data)) == 2 * len(sizes))
    frames = server_frames(raw.data)
    for index, size in enumerate(sizes):
        for first, header, payload in frames[2 * index : 2 * index + 2]:
            binary = first == 0x82
            assert first in (0x81, 0x82)  # FIN, no RSV bits, no fragments
            assert len(payload) == size
            assert len(header) == (2 if size <= 125 else 4 if size <= 65535 else 10)
            assert payload == (
                bytes(range(256)) * (size // 256) + bytes(size % 256)
                if binary
                else ("é" * (size // 2) + "x" * (size % 2)).encode()
            )
        assert [first for first, _, _ in frames[2 * index : 2 * index + 2]] == [0x82, 0x81]
