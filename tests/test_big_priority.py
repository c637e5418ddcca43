"""
Small requests first (houweb/_priority.py): while other requests are in
flight on a server, the thread encoding a large API result steps aside for a
time in proportion to the work it just did (bounded: it keeps a share of the
time, never starves); on an idle server it never pauses. The policy's
decisions with an injected clock and signal; then real servers: the encoder
steps aside while another request is in flight, not when it is alone, and a
large result completes byte-exact while small requests run all along.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

import houweb
from houweb import _api_wire, _json_pieces
from houweb._dispatch import RunningCalls
from houweb._priority import MAX_PAUSE, STEP_ASIDE, Pacer, SmallFirst

#: About 1 MB of JSON: encoded a piece at a time, a few dozen steps.
ROWS = [
    {"id": i, "name": f"item {i}", "value": i * 0.25, "tags": ["a", "é"]} for i in range(15_000)
]
ROWS_JSON = json.dumps(ROWS, allow_nan=False)


class Clock:
    """The encoding thread's CPU time, moved by hand; the pauses asked for."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)


def pacer(clock: Clock, others: list[bool], **kwargs: Any) -> Pacer:
    return Pacer(lambda: others[0], work_clock=clock, sleep=clock.sleep, **kwargs)


def test_an_encoding_on_an_idle_server_never_pauses():
    clock, others = Clock(), [False]
    step_aside = pacer(clock, others).step_aside
    for _ in range(100):
        clock.now += 0.0005
        step_aside()
    # time.sleep(0): the GIL still changes hands; no pause is asked for (the
    # sleep itself still takes a timer's slack, tens of microseconds).
    assert clock.pauses == [0.0] * 100


def test_an_encoding_pauses_in_proportion_to_its_work_while_others_are_in_flight():
    clock, others = Clock(), [True]
    step_aside = pacer(clock, others).step_aside
    for worked in (0.0005, 0.001, 0.0002):
        clock.now += worked
        step_aside()
    assert clock.pauses == pytest.approx([STEP_ASIDE * w for w in (0.0005, 0.001, 0.0002)])
    others[0] = False  # the others are done: full speed again at once
    clock.now += 0.0005
    step_aside()
    assert clock.pauses[-1] == 0.0


def test_a_pause_counts_only_the_work_since_the_last_one():
    # The time spent paused (or waiting for the GIL) is not work.
    clock, others = Clock(), [True]
    step_aside = pacer(clock, others, factor=1.0).step_aside
    clock.now += 0.0005
    step_aside()
    step_aside()  # no work since
    assert clock.pauses == pytest.approx([0.0005, 0.0])


def test_a_large_result_keeps_a_share_of_the_time_however_long_others_are_in_flight():
    clock, others = Clock(), [True]
    step_aside = pacer(clock, others).step_aside
    work = 0.0
    for worked in [0.0005] * 1000 + [1.0, 0.03]:  # a slow step is not paused for long
        clock.now += worked
        work += worked
        step_aside()
    assert max(clock.pauses) <= MAX_PAUSE
    assert all(p <= STEP_ASIDE * 0.0005 + 1e-12 for p in clock.pauses[:1000])
    # Paused at most STEP_ASIDE seconds per second of work: the encoding
    # has at least 1 / (1 + STEP_ASIDE) of the time.
    assert sum(clock.pauses) <= STEP_ASIDE * work
    assert work / (work + sum(clock.pauses)) >= 1 / (1 + STEP_ASIDE)


def test_large_results_step_aside_for_the_other_calls_not_for_each_other():
    in_progress = [1]
    small_first = SmallFirst(lambda: in_progress[0])
    assert small_first.others_in_flight()  # a call, no large result
    with small_first.large_result():
        assert not small_first.others_in_flight()  # only itself
        in_progress[0] = 2
        with small_first.large_result():
            assert not small_first.others_in_flight()  # two large results alone
            in_progress[0] = 3
            assert small_first.others_in_flight()  # and one more call
        in_progress[0] = 2
        assert small_first.others_in_flight()


def test_a_large_result_that_fails_to_encode_is_no_longer_counted():
    small_first = SmallFirst(lambda: 1)
    with pytest.raises(ValueError):
        _json_pieces.encode(
            list(range(300)) + [float("nan")],
            allow_nan=False,
            default=_api_wire._refuse,
            large=small_first.large_result,
        )
    assert small_first.others_in_flight()  # the failed encoding is not counted


def test_only_a_value_encoded_in_pieces_is_paced(monkeypatch):
    entered: list[int] = []
    steps: list[int] = []

    @contextmanager
    def large() -> Iterator[Callable[[], None]]:
        entered.append(1)
        yield lambda: steps.append(1)

    def encode(value: object) -> bytes:
        return b"".join(
            _json_pieces.encode(value, allow_nan=False, default=_api_wire._refuse, large=large)
        )

    assert encode({"small": [1, 2, 3]}) == b'{"small": [1, 2, 3]}'
    assert entered == []  # no lock, no count for a small result
    monkeypatch.setattr(_json_pieces, "YIELD_EVERY", 0.0)  # a step after each group
    assert encode(ROWS) == ROWS_JSON.encode()
    assert entered == [1] and len(steps) > 10


class Pauses:
    """Every pause a :class:`Pacer` decides on in a real server (the real policy, recorded)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.decided: list[float] = []
        real = Pacer.pause

        def pause(pacer: Pacer, worked: float) -> float:
            seconds = real(pacer, worked)
            self.decided.append(seconds)
            return seconds

        monkeypatch.setattr(Pacer, "pause", pause)


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> Pauses:
    return Pauses(monkeypatch)


class Held:
    """A URL handler ``/hold`` that stays in flight (in the pool) until released."""

    def __init__(self) -> None:
        self.running: defer.Deferred[None] = defer.Deferred()
        self.running.addTimeout(30, reactor)  # bounded: fails the test, never hangs it
        self.release = threading.Event()

        @houweb.urlHandler("/hold")
        def hold(request: houweb.Request) -> str:
            reactor.callFromThread(self.running.callback, None)
            self.release.wait(60)  # bounded: released by the test
            return "released"


def serve_rows() -> None:
    @houweb.apiFunction("f")
    def rows(request: houweb.Request) -> list[dict[str, Any]]:
        return ROWS

    @houweb.urlHandler("/small")
    def small(request: houweb.Request) -> str:
        return "small"


async def call_rows(client: Any, port: int) -> Any:
    reply = await client.post(port, "/api", data={"json": '["f.rows", [], {}]'})
    assert reply.status == 200
    return reply


@pytest_twisted.ensureDeferred
async def test_a_large_result_steps_aside_while_another_request_is_in_flight(serve, client, pauses):
    serve_rows()
    held = Held()
    port = (await serve()).port_numbers()[0]
    holding = defer.ensureDeferred(client.get(port, "/hold"))
    try:
        await held.running  # in flight, in a pool thread
        reply = await call_rows(client, port)
    finally:
        held.release.set()
    assert reply.body == ROWS_JSON.encode()
    assert (await holding).body == b"released"
    assert pauses.decided and all(seconds > 0 for seconds in pauses.decided)


@pytest_twisted.ensureDeferred
async def test_a_large_result_alone_on_the_server_never_pauses(serve, client, pauses):
    serve_rows()
    port = (await serve()).port_numbers()[0]
    reply = await call_rows(client, port)
    assert reply.body == ROWS_JSON.encode()
    assert pauses.decided and all(seconds == 0 for seconds in pauses.decided)


@pytest_twisted.ensureDeferred
async def test_a_large_result_completes_while_small_requests_run_all_along(serve, client, pauses):
    # Others are in flight from start to end (a held request, and small
    # ones one after another): the large result still makes progress.
    serve_rows()
    held = Held()
    port = (await serve()).port_numbers()[0]
    holding = defer.ensureDeferred(client.get(port, "/hold"))
    small_answers: list[bytes] = []
    try:
        await held.running
        large = defer.ensureDeferred(call_rows(client, port))
        for _ in range(100_000):  # bounded: the large result arrives well before
            if large.called:
                break
            small_answers.append((await client.get(port, "/small")).body)
        reply = await large
    finally:
        held.release.set()
    await holding
    assert json.loads(reply.body) == ROWS
    assert reply.body == ROWS_JSON.encode()
    assert small_answers and set(small_answers) == {b"small"}
    assert any(seconds > 0 for seconds in pauses.decided)


@pytest_twisted.ensureDeferred
async def test_a_large_result_does_not_step_aside_for_calls_waiting_for_its_thread(
    serve, client, monkeypatch
):
    # One pool thread: a call queued behind the encoding cannot run before
    # it ends, so pausing for it would only make it wait longer.
    serve_rows()
    port = (await serve(max_num_threads=1)).port_numbers()[0]
    queued = threading.Event()
    small: list[defer.Deferred[Any]] = []
    real_call = RunningCalls.call

    def call(self: RunningCalls, *args: Any) -> Any:
        d = real_call(self, *args)
        if args[-1].path() == "/small":
            queued.set()  # counted as in progress, waiting for the one thread
        return d

    monkeypatch.setattr(RunningCalls, "call", call)
    decided: list[float] = []
    real_pause = Pacer.pause

    def pause(pacer: Pacer, worked: float) -> float:
        if not small:  # the first step: a small request comes meanwhile
            small.append(None)  # type: ignore[arg-type]
            reactor.callFromThread(
                lambda: small.append(defer.ensureDeferred(client.get(port, "/small")))
            )
            assert queued.wait(30)  # bounded: fails the test, never hangs it
            return real_pause(pacer, worked)
        seconds = real_pause(pacer, worked)
        decided.append(seconds)
        return seconds

    monkeypatch.setattr(Pacer, "pause", pause)
    reply = await call_rows(client, port)
    assert reply.body == ROWS_JSON.encode()
    assert (await small[1]).body == b"small"
    assert decided and all(seconds == 0 for seconds in decided)


def _raw_call_and_leave(port: int, body: bytes) -> None:
    """Send an /api call and close the connection before the answer (on the reactor: short)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        head = (
            "POST /api HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + body)


@pytest_twisted.ensureDeferred
async def test_the_counts_return_to_zero_after_failures_async_results_and_clients_that_left(
    serve, client, monkeypatch
):
    # Large results that fail midway (NaN, a cycle, an unencodable object,
    # KeyboardInterrupt inside), async ones, clients that leave, all at
    # once with small requests: once every call is done, nothing is
    # counted as running or as a large result (no pause forever, no drift).
    serve_rows()
    cycle: list[Any] = list(range(300))
    cycle.append(cycle)

    class Interrupting(dict):  # type: ignore[type-arg]
        def items(self) -> Any:
            raise KeyboardInterrupt  # in the pool thread, midway through the encoding

    @houweb.apiFunction("f")
    def nan(request: houweb.Request) -> list[Any]:
        return [*ROWS, float("nan")]

    @houweb.apiFunction("f")
    def cyclic(request: houweb.Request) -> list[Any]:
        return [*ROWS, cycle]

    @houweb.apiFunction("f")
    def odd(request: houweb.Request) -> list[Any]:
        return [*ROWS, object()]

    @houweb.apiFunction("f")
    def interrupted(request: houweb.Request) -> list[Any]:
        return [*ROWS, Interrupting(a=1)]

    @houweb.apiFunction("f")
    async def arows(request: houweb.Request) -> list[dict[str, Any]]:
        return ROWS

    server = await serve(max_num_threads=3)
    port = server.port_numbers()[0]
    context = server.context
    all_done: list[defer.Deferred[None]] = []  # fired once no call is in progress
    real_end = RunningCalls._end

    def end(self: RunningCalls, record: Any) -> None:
        real_end(self, record)
        if len(self) == 0 and self is context.running and all_done:
            all_done.pop().callback(None)

    monkeypatch.setattr(RunningCalls, "_end", end)

    def call(name: str) -> Any:
        return client.post(port, "/api", data={"json": json.dumps([f"f.{name}", [], {}])})

    names = ["rows", "nan", "cyclic", "odd", "interrupted", "arows", "rows", "arows"]
    replies = [defer.ensureDeferred(call(name)) for name in names]
    smalls = [defer.ensureDeferred(client.get(port, "/small")) for _ in range(5)]
    for name in ("rows", "arows"):
        _raw_call_and_leave(port, json.dumps([f"f.{name}", [], {}]).encode())
    statuses = [(await reply).status for reply in replies]
    assert statuses == [200, 500, 500, 500, 500, 200, 200, 200]
    assert [(await small).body for small in smalls] == [b"small"] * 5
    if len(context.running):  # the calls of the clients that left
        all_done.append(defer.Deferred())
        await all_done[0].addTimeout(30, reactor)  # bounded: fails the test, never hangs it
    assert context.running.started() == 0
    assert context.small_first._large == 0  # else a large result would never step aside
    assert not context.small_first.others_in_flight()


@pytest_twisted.ensureDeferred
async def test_an_async_functions_large_result_steps_aside_only_for_the_others(
    serve, client, pauses
):
    # Encoded in the pool after the coroutine: counted as a call running,
    # as a plain function's is, so that the held request counts as other.
    @houweb.apiFunction("f")
    async def rows(request: houweb.Request) -> list[dict[str, Any]]:
        return ROWS

    held = Held()
    port = (await serve()).port_numbers()[0]
    alone = await call_rows(client, port)
    assert alone.body == ROWS_JSON.encode()
    assert pauses.decided and all(seconds == 0 for seconds in pauses.decided)
    pauses.decided.clear()
    holding = defer.ensureDeferred(client.get(port, "/hold"))
    try:
        await held.running
        reply = await call_rows(client, port)
    finally:
        held.release.set()
    assert reply.body == ROWS_JSON.encode()
    assert (await holding).body == b"released"
    assert pauses.decided and all(seconds > 0 for seconds in pauses.decided)
