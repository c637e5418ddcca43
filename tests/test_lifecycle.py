"""
Graceful shutdown of run() in a script (spec §3.2, §3.3; behaviours 23, 27,
30-32), in child processes ended by PID. tests/test_run.py covers the rest of
run()'s lifecycle (SIGINT/SIGTERM exit 0, run() again in the background,
run() after a foreground run()).
"""

from __future__ import annotations

import re
import signal
import socket
import time

from .children import Child, app, free_port, get, in_background, refuses

LIFECYCLE_APP = app("lifecycle_app.py")


def foreground(grace: float) -> Child:
    return Child(LIFECYCLE_APP, "foreground", str(grace))


def test_request_shutdown_returns_at_once_and_its_response_arrives_whole():
    with foreground(10) as child:
        status, body = get(child.port(), "/stop")
        took, message = body.split(" ", 1)
        assert status == 200 and message == "x" * 1_000_000
        assert float(took) < 0.1
        assert child.wait() == 0
        assert "RETURNED" in child.output


def test_second_sigint_during_a_slow_request_stops_at_once():
    with foreground(60) as child:
        port = child.port()
        in_background(lambda: get(port, "/slow?seconds=60", timeout=60))
        child.wait_for("REACHED /slow")  # the request reached its handler
        child.send_signal(signal.SIGINT)
        started = time.monotonic()
        while not refuses(port):  # the first one was handled: no longer accepting
            assert time.monotonic() - started < 10
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        assert child.wait() == 0
        assert time.monotonic() - started < 10
        assert "RETURNED" in child.output


def test_a_handler_that_never_returns_is_abandoned_after_the_grace():
    with foreground(1) as child:
        port = child.port()
        in_background(lambda: get(port, "/slow?seconds=3600", timeout=60))
        child.wait_for("REACHED /slow")
        started = time.monotonic()
        child.send_signal(signal.SIGTERM)
        assert child.wait() == 0
        assert 0.9 < time.monotonic() - started < 1 + 5
        assert "still running after the 1.0s shutdown grace; abandoned" in child.output


def test_a_script_ending_after_a_background_run_exits_within_the_grace_plus_2s():
    with Child(LIFECYCLE_APP, "background", "1") as child:
        child.wait_for("ENDING")
        started = time.monotonic()
        assert child.wait() == 0
        assert time.monotonic() - started < 1 + 2


def test_a_script_ending_right_after_request_shutdown_lets_the_request_in_flight_finish():
    # requestShutdown() promises the requests in progress finish: the script
    # ending meanwhile must not cut them (it did, 2 s after it ended).
    with Child(LIFECYCLE_APP, "stopping", "10") as child:
        child.wait_for("ENDING")
        assert child.wait() == 0, child.output
        assert "CLIENT slow done" in child.output, child.output
        assert "abandoned" not in child.output


def test_a_busy_extra_port_raises_naming_it_and_nothing_stays_listening():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy, main = taken.getsockname()[1], free_port()
        with Child(LIFECYCLE_APP, "busy", str(main), str(busy)) as child:
            failed = child.wait_for(r"FAILED (.*) \[\]$")
            assert failed.group(1) == (
                f"Could not listen on port {busy} (interface 127.0.0.1): address already in use"
            )
            assert child.process.poll() is None  # still running, having caught it
            assert refuses(main)


RESTART_APP = app("restart_app.py")


def test_run_right_after_request_shutdown_waits_for_the_old_server_then_starts():
    with Child(RESTART_APP, "restart", "20") as child:
        child.wait_for(r"RESTARTED 20\b", timeout=60)
        assert child.wait() == 0
        assert "already running" not in child.output


def test_a_foreground_run_after_a_background_one_stops_gracefully_on_sigterm():
    with Child(RESTART_APP, "foreground_after_background") as child:
        child.ports(2)  # the second server listens, its signal handlers installed before
        child.send_signal(signal.SIGTERM)
        assert child.wait() == 0, child.output
        assert "RETURNED" in child.output


def test_a_second_sigterm_stops_a_foreground_run_after_a_background_one_at_once():
    # run() returned at the second signal, but its server went on serving
    # (and the process waited for the whole grace to exit).
    with Child(RESTART_APP, "foreground_after_background", "60") as child:
        port = child.ports(2)[1]
        in_background(lambda: get(port, "/slow?seconds=60", timeout=60))
        child.wait_for("REACHED /slow")
        child.send_signal(signal.SIGTERM)
        started = time.monotonic()
        while not refuses(port):  # the first one was handled: no longer accepting
            assert time.monotonic() - started < 10
            time.sleep(0.05)
        child.send_signal(signal.SIGTERM)
        assert child.wait() == 0, child.output
        assert time.monotonic() - started < 10
        assert child.output.rindex("houweb: stopped") < child.output.index("RETURNED")


def test_sigterm_while_a_foreground_run_waits_for_the_previous_server_lets_it_finish():
    # SIGTERM killed the process (-15) while run() waited, cutting the
    # previous server's request in flight; now run() returns without
    # starting, once that server has stopped gracefully.
    with Child(RESTART_APP, "waiting_foreground") as child:
        child.wait_for("HANDLING")
        child.send_signal(signal.SIGTERM)
        assert child.wait() == 0, child.output
        assert "CLIENT slow done" in child.output
        assert "RETURNED" in child.output
        assert len(re.findall("houweb: listening on", child.output)) == 1  # never started


def test_run_from_an_async_handler_fails_at_once_instead_of_blocking_the_reactor():
    # It blocked the reactor thread for the grace plus 2 s (the old server
    # could not stop meanwhile), then blamed the old server for not stopping.
    with Child(RESTART_APP, "from_async") as child:
        answer = child.wait_for(r"ASYNC (.*) after ([\d.]+)s$")
        assert "cannot be called on houweb's reactor thread" in answer.group(1)
        assert float(answer.group(2)) < 1
        assert child.wait() == 0, child.output


def test_run_raises_operation_failed_when_the_reactor_cannot_start():
    for mode in ("background", "foreground"):
        with Child(RESTART_APP, "stopped_reactor", mode) as child:
            failed = child.wait_for(r"FAILED (.*)$")
            assert "ReactorNotRestartable" in failed.group(1)
            assert child.wait() == 0


def test_two_threads_calling_run_at_once_never_both_start():
    with Child(RESTART_APP, "race", "20") as child:
        assert child.wait_for(r"BOTH (\d+)\b", timeout=60).group(1) == "0"
        assert child.wait() == 0
