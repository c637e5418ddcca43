"""
The reactor houweb runs on (houweb/_reactor.py): every connection a client
resets reaches ``connectionLost``, on uvloop's loop as on asyncio's.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.logger import formatEvent

import houweb

from .support import raw_request
from .test_dispatch import until

BIG = bytes(range(256)) * (4 * 4096)  # 4 MiB: more than a socket buffer takes at once
CLIENTS = 20


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with an RST (``SO_LINGER`` 0) instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize(
    "so_error_check", [True, False], ids=["so_error_check", "add_writer_fails"]
)
@pytest_twisted.ensureDeferred
async def test_connections_reset_while_their_answer_is_pending_are_all_closed(
    serve, monkeypatch, so_error_check
):
    # Without the SO_ERROR check after each read (which finds these resets
    # first), the answer's add_writer meets uvloop's closed handle: its
    # RuntimeError must lose the connection too.
    if not so_error_check:
        if not reactor._houweb_drops_on_error:
            pytest.skip("only uvloop closes its handle for a socket in error")
        monkeypatch.setattr(reactor, "_houweb_drops_on_error", False)
    # On uvloop, a reset that arrives with unread bytes makes libuv report an
    # error for the socket: uvloop runs the reader once (it reads the bytes)
    # and then closes its poll handle for the fd. The response written later
    # made loop.add_writer raise "unable to perform operation on <UVPoll
    # closed=True>": the connection never got connectionLost and its socket
    # stayed open (and counted against max_connections) for good.
    entered: list[int] = []
    release = threading.Event()

    @houweb.urlHandler("/big")
    def big(request: houweb.Request) -> houweb.Response:
        entered.append(1)
        release.wait(30)
        return houweb.Response(BIG, content_type="application/octet-stream")

    houweb.urlHandler("/hello")(lambda request: houweb.Response("hi", content_type="text/plain"))
    server = await serve(max_num_threads=CLIENTS + 2)
    port = server.port_numbers()[0]
    fds_before = _open_fds()
    clients = []
    for _ in range(CLIENTS):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
        clients.append(sock)
    await until(lambda: len(entered) == CLIENTS)
    # The reactor runs this test: it reads nothing until the test awaits, so
    # each server socket finds the next request's bytes and the reset at once.
    for sock in clients:
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
        _reset(sock)
    release.set()
    await until(lambda: not server.site.houweb_connections, timeout=20)
    assert _open_fds() <= fds_before
    answer = await raw_request(
        port, b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"hi")


@pytest_twisted.ensureDeferred
async def test_connections_reset_with_part_of_a_request_unread_are_all_closed(serve):
    # The same reset after bytes that are only part of a request: nothing is
    # written, so no add_writer ever came; the connection stayed open until
    # the idle timeout (a minute by default).
    houweb.urlHandler("/hello")(lambda request: houweb.Response("hi", content_type="text/plain"))
    server = await serve()
    port = server.port_numbers()[0]
    fds_before = _open_fds()
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(CLIENTS)]
    await until(lambda: len(server.site.houweb_connections) == CLIENTS)
    for sock in clients:
        sock.sendall(b"GET /hello HTTP/1.1\r\nHo")
        _reset(sock)
    await until(lambda: not server.site.houweb_connections, timeout=20)
    assert _open_fds() <= fds_before
    answer = await raw_request(
        port, b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"hi")


@pytest.mark.parametrize("stage", ["headers", "pending_answer", "mid_answer", "upload"])
@pytest_twisted.ensureDeferred
async def test_tls_connections_reset_at_any_stage_are_each_lost_once(
    serve, monkeypatch, tmp_path, stage
):
    # TLS wraps the TCP transport: a reset seen by either path (the SO_ERROR
    # check after a read of TLS records, or a failed add_writer for the
    # encrypted answer) must reach the HTTP channel's connectionLost once.
    import ssl

    from twisted.internet import threads

    from houweb._channel import HouwebChannel

    from .test_tls import self_signed

    lost: dict[int, int] = {}
    made: list[HouwebChannel] = []
    original_made, original_lost = HouwebChannel.connectionMade, HouwebChannel.connectionLost

    def connection_made(self: HouwebChannel) -> None:
        made.append(self)
        original_made(self)

    def connection_lost(self: HouwebChannel, reason: object) -> None:
        lost[id(self)] = lost.get(id(self), 0) + 1
        original_lost(self, reason)

    monkeypatch.setattr(HouwebChannel, "connectionMade", connection_made)
    monkeypatch.setattr(HouwebChannel, "connectionLost", connection_lost)
    entered: list[int] = []
    all_entered, release = threading.Event(), threading.Event()

    def big(request: houweb.Request) -> houweb.Response:
        if stage == "pending_answer":
            entered.append(1)
            if len(entered) == CLIENTS:
                all_entered.set()
            release.wait(30)
        return houweb.Response(BIG, content_type="application/octet-stream")

    houweb.urlHandler("/big")(big)
    key, cert = self_signed(tmp_path)
    server = await serve(
        listen=[f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"],
        max_num_threads=CLIENTS + 2,
    )
    port = server.port_numbers()[-1]
    fds_before = _open_fds()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    get = b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n"

    def one_client() -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=20)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock = context.wrap_socket(raw)
        if stage == "headers":
            sock.sendall(get[:20])
        elif stage == "upload":
            sock.sendall(
                b"POST /big HTTP/1.1\r\nHost: localhost\r\nContent-Length: 9000000\r\n\r\n"
            )
            sock.sendall(b"a" * 200_000)
        else:
            sock.sendall(get)
            if stage == "pending_answer":
                all_entered.wait(20)
            else:
                sock.recv(65536)
            sock.sendall(get)
        _reset(sock)

    def clients() -> None:
        running = [threading.Thread(target=one_client) for _ in range(CLIENTS)]
        for thread in running:
            thread.start()
        for thread in running:
            thread.join(30)
        release.set()

    await threads.deferToThread(clients)
    await until(lambda: not server.site.houweb_connections, timeout=20)
    assert len(made) == CLIENTS
    assert [lost.get(id(channel)) for channel in made] == [1] * CLIENTS
    await until(lambda: _open_fds() <= fds_before)


def _from_threads(calls_per_thread: int, threads: int, record: list[tuple[int, int]]) -> None:
    """Have ``threads`` threads each ask for ``calls_per_thread`` calls of ``record.append``."""

    def ask(number: int) -> None:
        for index in range(calls_per_thread):
            reactor.callFromThread(record.append, (number, index))

    workers = [threading.Thread(target=ask, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)


@pytest_twisted.ensureDeferred
async def test_call_from_thread_keeps_each_threads_order_and_wakes_the_idle_reactor():
    # The reactor sits idle while the threads ask: each call must wake it,
    # and each thread's calls run in the order it made them.
    record: list[tuple[int, int]] = []
    asked = threading.Thread(target=_from_threads, args=(200, 4, record))
    asked.start()
    await until(lambda: len(record) == 800)
    asked.join(10)
    for number in range(4):
        assert [index for n, index in record if n == number] == list(range(200))
    assert threading.current_thread() is threading.main_thread()


@pytest_twisted.ensureDeferred
async def test_call_from_thread_calls_each_function_without_a_delayed_call(monkeypatch):
    # Twisted's asyncio reactor made a DelayedCall (and an asyncio timer)
    # per call: houweb's calls the function straight from the loop.
    scheduled: list[object] = []
    real_call_later = reactor.callLater

    def counting_call_later(delay, function, *args, **kwargs):
        scheduled.append(function)
        return real_call_later(delay, function, *args, **kwargs)

    monkeypatch.setattr(reactor, "callLater", counting_call_later)
    ran: list[str] = []
    on_thread: list[threading.Thread] = []

    def note(what: str) -> None:
        ran.append(what)
        on_thread.append(threading.current_thread())

    def ask() -> None:
        for i in range(50):
            reactor.callFromThread(note, str(i))

    caller = threading.Thread(target=ask)
    caller.start()
    await until(lambda: len(ran) == 50)
    caller.join(10)
    assert ran == [str(i) for i in range(50)]
    assert set(on_thread) == {threading.current_thread()}  # the reactor thread
    assert note not in scheduled


@pytest_twisted.ensureDeferred
async def test_call_from_thread_logs_an_exception_naming_the_thread_call_and_goes_on(logged):
    ran: list[int] = []

    def fails() -> None:
        raise ValueError("boom from a thread's call")

    def ask() -> None:
        reactor.callFromThread(fails)
        reactor.callFromThread(ran.append, 1)

    threading.Thread(target=ask).start()
    await until(lambda: ran == [1])
    failures = [e for e in logged if e.get("log_failure") is not None]
    assert len(failures) == 1
    assert failures[0]["log_failure"].check(ValueError)
    assert failures[0]["log_format"].startswith(
        "Unhandled error in a function called from a thread (callFromThread)"
    )
    assert failures[0]["function"] is fails
    text = formatEvent(failures[0]) + failures[0]["log_failure"].getTraceback()
    assert "callFromThread" in text and "fails" in text and "boom from a thread's call" in text
    assert failures[0]["log_namespace"] == "twisted.internet.base"
    failures[0]["log_failure"].cleanFailure()


_STANDALONE = """
import sys, threading
from houweb._reactor import HouwebReactor, new_event_loop
reactor = HouwebReactor(new_event_loop())
ran = []
reactor.callFromThread(ran.append, "before run")
def from_thread():
    reactor.callFromThread(ran.append, "from a thread")
    reactor.callFromThread(reactor.stop)
reactor.callWhenRunning(lambda: threading.Thread(target=from_thread).start())
shutdown = []
reactor.addSystemEventTrigger("before", "shutdown", shutdown.append, "shutdown")
reactor.run(installSignalHandlers=False)
print(ran, shutdown)
"""


def test_call_from_thread_before_the_reactor_runs_and_stop_from_a_thread_still_work(tmp_path):
    # cwd elsewhere: the repository's twisted/ folder would shadow Twisted.
    done = subprocess.run(
        [sys.executable, "-c", _STANDALONE],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['before run', 'from a thread'] ['shutdown']"


@pytest_twisted.ensureDeferred
async def test_call_from_thread_passes_every_keyword_argument_to_the_function():
    # The function is positional-only: keyword arguments named as Twisted's
    # reactors name it (f, callable) are the function's, not a TypeError in
    # the calling thread.
    got: list[dict[str, object]] = []
    raised: list[BaseException] = []

    def note(**kwargs: object) -> None:
        got.append(kwargs)

    def ask() -> None:
        try:
            reactor.callFromThread(note, f=1, callable=2, args=3, kwargs=4)
        except BaseException as exc:  # noqa: BLE001 - reported below
            raised.append(exc)
            reactor.callFromThread(got.append, None)

    threading.Thread(target=ask).start()
    await until(lambda: len(got) == 1)
    assert raised == []
    assert got == [{"f": 1, "callable": 2, "args": 3, "kwargs": 4}]


@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit], ids=["interrupt", "exit"])
@pytest_twisted.ensureDeferred
async def test_call_from_thread_logs_an_interrupt_or_exit_and_the_reactor_goes_on(logged, raised):
    # As Twisted's reactor does for a timed call: a function given to
    # callFromThread that raises KeyboardInterrupt or SystemExit is logged;
    # it does not stop the reactor (houweb's signal handlers do that).
    ran: list[int] = []

    def fails() -> None:
        raise raised()

    def ask() -> None:
        reactor.callFromThread(fails)
        reactor.callFromThread(ran.append, 1)

    threading.Thread(target=ask).start()
    await until(lambda: ran == [1])
    assert reactor.running
    failures = [e for e in logged if e.get("log_failure") is not None]
    assert len(failures) == 1 and failures[0]["log_failure"].check(raised)
    failures[0]["log_failure"].cleanFailure()


@pytest.mark.parametrize("answers", [True, False], ids=["echo_sent", "nothing_sent"])
@pytest_twisted.ensureDeferred
async def test_websockets_reset_right_after_a_message_are_all_closed_with_1006(serve, answers):
    # On uvloop the SO_ERROR check after a read waits until the callbacks the
    # read queued have run, and is skipped when one of them sent bytes
    # straight to the socket. Whether the message's receive() answers (its
    # send fails on the reset socket: the rest goes through add_writer) or
    # not (nothing is written: the check finds the reset), every connection
    # must reach disconnect(1006) and close its socket.
    from .support import ws_frame, ws_handshake

    received: list[str] = []
    disconnected: list[int] = []

    @houweb.webSocket("/ws")
    class Endpoint(houweb.WebSocket):
        async def receive(self, text_data=None, bytes_data=None):
            received.append(text_data)
            if answers:
                await self.send(text_data=text_data)

        async def disconnect(self, code):
            disconnected.append(code)

    server = await serve()
    port = server.port_numbers()[0]
    fds_before = _open_fds()
    clients = []
    for _ in range(CLIENTS):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(ws_handshake("/ws"))
        clients.append(sock)
    await until(lambda: len(server.site.houweb_connections) == CLIENTS)
    for sock in clients:  # every handshake answered
        sock.settimeout(10)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += await _recv_off_thread(sock)
        assert answer.startswith(b"HTTP/1.1 101 ")
    # The reactor runs this test: each server socket finds the message and
    # the reset at once.
    for sock in clients:
        sock.sendall(ws_frame(0x1, b"hello"))
        _reset(sock)
    await until(lambda: len(disconnected) == CLIENTS, timeout=20)
    assert disconnected == [1006] * CLIENTS
    assert received == ["hello"] * CLIENTS
    await until(lambda: not server.site.houweb_connections, timeout=20)
    await until(lambda: _open_fds() <= fds_before)


def _recv_off_thread(sock: socket.socket) -> object:
    """``sock.recv`` in a thread (the reactor must run meanwhile): a Deferred of the bytes."""
    from twisted.internet import threads

    return threads.deferToThread(sock.recv, 65536)
