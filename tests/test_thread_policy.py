"""
The pool threads' scheduling policy (houweb/_thread_policy.py): houweb's
part of a call under ``SCHED_BATCH`` (a woken pool thread does not preempt
the reactor thread), the user's code under the thread's own policy.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from typing import Any, Callable

import pytest
import pytest_twisted

import houweb
from houweb._api_wire import ResultError, encode_result
from houweb._pool import HandlerPool
from houweb._priority import SmallFirst
from houweb._thread_policy import ThreadPolicy

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="scheduling policies are Linux's"
)


@pytest_twisted.ensureDeferred
async def test_handler_code_runs_under_the_normal_policy_and_the_pool_waits_under_batch(
    serve, client
):
    seen = []

    @houweb.urlHandler("/policy")
    def policy(request):
        seen.append((threading.get_native_id(), os.sched_getscheduler(0)))
        return "ok"

    port = (await serve()).port_numbers()[0]
    response = await client.get(port, "/policy")
    assert response.status == 200
    ((thread_id, during),) = seen
    assert during == os.SCHED_OTHER
    # The policy goes back to batch before the result is handed back, so the
    # answer having arrived means the thread waits under batch now.
    assert os.sched_getscheduler(thread_id) == os.SCHED_BATCH


@pytest_twisted.ensureDeferred
async def test_a_process_a_handler_starts_gets_the_normal_policy(serve, client):
    @houweb.urlHandler("/child")
    def child(request):
        return subprocess.run(
            [sys.executable, "-c", "import os; print(os.sched_getscheduler(0))"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()

    port = (await serve()).port_numbers()[0]
    response = await client.get(port, "/child")
    assert response.status == 200
    assert int(response.text) == os.SCHED_OTHER


def _policy_in_pool_started_under(policy: int) -> tuple[int, int]:
    """
    Start a one-thread pool from a thread running under ``policy`` (the pool
    thread inherits it), and run a call in it.

    :returns: the policy the call ran under, and the pool thread's policy
        once the result was handed back.
    """
    out: dict[str, int] = {}
    done = threading.Event()

    def starter() -> None:
        os.sched_setscheduler(0, policy, os.sched_param(0))
        pool = HandlerPool(1, name="policy-test")
        pool.start()

        def call() -> tuple[int, int]:
            return threading.get_native_id(), os.sched_getscheduler(0)

        def on_result(ok: bool, result: tuple[int, int]) -> None:
            out["thread"], out["during"] = result
            out["after"] = os.sched_getscheduler(0)
            done.set()

        pool.callInThreadWithCallback(on_result, call)
        assert done.wait(30)
        pool.stop()

    thread = threading.Thread(target=starter)
    thread.start()
    thread.join(60)
    assert done.is_set()
    return out["during"], out["after"]


def test_a_policy_chosen_for_the_threads_is_left_alone():
    # SCHED_IDLE (any unprivileged thread may take it): not switched.
    during, after = _policy_in_pool_started_under(os.SCHED_IDLE)
    assert (during, after) == (os.SCHED_IDLE, os.SCHED_IDLE)


def test_a_pool_started_under_the_normal_policy_switches():
    during, after = _policy_in_pool_started_under(os.SCHED_OTHER)
    assert (during, after) == (os.SCHED_OTHER, os.SCHED_BATCH)


def _run_in(pool: HandlerPool, func: Callable[[], Any]) -> tuple[bool, Any]:
    """Run ``func`` in ``pool``; :returns: ``(ok, result)`` as handed back."""
    results: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
    pool.callInThreadWithCallback(lambda ok, result: results.put((ok, result)), func)
    return results.get(timeout=30)


def _own_policy() -> int:
    return os.sched_getscheduler(0)


def test_a_refusal_midway_leaves_the_call_running_and_stops_the_switching(monkeypatch):
    pool = HandlerPool(1, name="policy-refused")
    pool.start()
    try:
        assert _run_in(pool, _own_policy) == (True, os.SCHED_OTHER)
        refused: list[int] = []

        def refuse(pid: int, policy: int, param: os.sched_param) -> None:
            refused.append(policy)
            raise PermissionError(1, "Operation not permitted")

        # As a seccomp filter or a changed limit would, from the next call on.
        monkeypatch.setattr(os, "sched_setscheduler", refuse)
        # The call runs and its result comes back: the refusal stays houweb's.
        assert _run_in(pool, _own_policy)[0]
        assert refused  # it tried, was refused ...
        tries = len(refused)
        assert _run_in(pool, _own_policy)[0]
        assert len(refused) == tries  # ... and does not try again on every call
    finally:
        pool.stop()


def test_a_refusal_at_the_start_changes_nothing(monkeypatch):
    def refuse(pid: int, policy: int, param: os.sched_param) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    pool = HandlerPool(1, name="policy-refused-at-start")
    pool.start()
    try:
        ok, policy = _run_in(pool, _own_policy)
        assert (ok, policy) == (True, os.SCHED_OTHER)
        assert ThreadPolicy().switching is False
    finally:
        pool.stop()


def test_not_linux_no_policy_call_is_made(monkeypatch):
    calls: list[object] = []
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(os, "sched_setscheduler", lambda *a: calls.append(a))
    monkeypatch.setattr(os, "sched_getscheduler", lambda *a: calls.append(a))
    pool = HandlerPool(1, name="policy-not-linux")
    pool.start()
    try:
        assert _run_in(pool, lambda: "ran") == (True, "ran")
        assert ThreadPolicy().switching is False
        assert calls == []
    finally:
        pool.stop()


@pytest.mark.skipif(
    os.geteuid() != 0, reason="leaving SCHED_IDLE takes CAP_SYS_NICE (or a RLIMIT_NICE)"
)
def test_a_handler_changing_its_threads_policy_changes_it_for_that_call_only():
    pool = HandlerPool(1, name="policy-own-change")
    pool.start()
    try:

        def to_idle() -> tuple[int, int]:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            os.nice(1)
            return threading.get_native_id(), os.sched_getscheduler(0)

        def own() -> tuple[int, int, int]:
            return (
                threading.get_native_id(),
                os.sched_getscheduler(0),
                os.getpriority(os.PRIO_PROCESS, 0),
            )

        ok, (thread, during) = _run_in(pool, to_idle)
        assert (ok, during) == (True, os.SCHED_IDLE)
        nice = os.getpriority(os.PRIO_PROCESS, thread)
        # The next call, in the same thread: the normal policy again, the
        # nice value kept (README.rst says both).
        assert _run_in(pool, own) == (True, (thread, os.SCHED_OTHER, nice))
    finally:
        pool.stop()


def _policies_around_a_large_encoding(policy: int) -> tuple[int, int]:
    """
    In a thread running under ``policy``, open a large result's pacing
    (what the encoder of a large API result runs in).

    :returns: the thread's policy inside the block and after it.
    """
    out: dict[str, int] = {}

    def encode() -> None:
        os.sched_setscheduler(0, policy, os.sched_param(0))
        with SmallFirst(lambda: 0).large_result():
            out["inside"] = os.sched_getscheduler(0)
        out["after"] = os.sched_getscheduler(0)

    thread = threading.Thread(target=encode)
    thread.start()
    thread.join(60)
    return out["inside"], out["after"]


def test_a_large_result_is_encoded_under_batch_and_the_normal_policy_comes_back():
    assert _policies_around_a_large_encoding(os.SCHED_OTHER) == (os.SCHED_BATCH, os.SCHED_OTHER)


def test_a_large_result_encoded_under_another_policy_keeps_it():
    assert _policies_around_a_large_encoding(os.SCHED_IDLE) == (os.SCHED_IDLE, os.SCHED_IDLE)


class _Interrupting(dict):  # type: ignore[type-arg]
    """A row whose encoding notes the thread's policy, then is interrupted (Ctrl+C)."""

    policies: list[int] = []

    def items(self) -> Any:
        self.policies.append(os.sched_getscheduler(0))
        raise KeyboardInterrupt


@pytest.mark.parametrize(
    "last, raised",
    [(float("nan"), ResultError), (_Interrupting(a=1), KeyboardInterrupt)],
    ids=["nan", "keyboard-interrupt"],
)
def test_a_large_result_whose_encoding_fails_gives_the_normal_policy_back(last, raised):
    # Through the encoder as /api runs it, outside the pool (which would set
    # the policy again before its next call anyway): the thread is under
    # SCHED_BATCH while it encodes, and under its own policy once the
    # encoding raised midway.
    _Interrupting.policies.clear()
    value = [{"id": i} for i in range(2000)] + [last]
    out: dict[str, Any] = {}

    def encode() -> None:
        try:
            encode_result(value, "f", False, SmallFirst(lambda: 0).large_result)
        except BaseException as exc:  # noqa: BLE001 - the test's subject
            out["raised"] = type(exc)
        out["after"] = os.sched_getscheduler(0)

    thread = threading.Thread(target=encode)
    thread.start()
    thread.join(60)
    assert out == {"raised": raised, "after": os.SCHED_OTHER}
    if raised is KeyboardInterrupt:
        assert _Interrupting.policies == [os.SCHED_BATCH]
