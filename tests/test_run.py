"""run() in both modes, in child processes ended by PID (spec §3.2-§3.4, §4)."""

from __future__ import annotations

import os
import signal
import threading
import time

from .children import Child
from .support import APPS, ServerProcess, get


def test_foreground_run_returns_after_request_shutdown_from_a_handler():
    child = ServerProcess(os.path.join(APPS, "run_foreground.py"))
    try:
        port = child.port()
        assert get(f"http://127.0.0.1:{port}/ports") == (200, f"[{port}]".encode())
        assert get(f"http://127.0.0.1:{port}/stop") == (200, b"stopping")
        output = child.output(timeout=20)
        assert "RETURNED" in output
        assert "AGAIN houweb cannot start again in this process" in output
        assert child.process.returncode == 0
    finally:
        child.kill()


def test_foreground_start_up_log_names_the_url_as_loopback_only():
    child = ServerProcess(os.path.join(APPS, "run_foreground.py"))
    try:
        port = child.port()
        get(f"http://127.0.0.1:{port}/stop")
        assert f"listening on http://127.0.0.1:{port}/ (loopback only)" in child.output()
    finally:
        child.kill()


def signal_during_slow_request(signum: int) -> tuple[tuple[int, bytes], str, int]:
    with Child(os.path.join(APPS, "run_foreground.py")) as child:
        port = int(child.wait_for(r"^PORT (\d+)").group(1))
        result = []
        worker = threading.Thread(
            target=lambda: result.append(get(f"http://127.0.0.1:{port}/slow"))
        )
        worker.start()
        child.wait_for("REACHED /slow")  # the request reached its handler
        child.send_signal(signum)
        worker.join(20)
        code = child.wait()
        return result[0], child.output, code


def test_sigterm_lets_the_request_in_flight_finish_and_run_returns():
    reply, output, code = signal_during_slow_request(signal.SIGTERM)
    assert reply == (200, b"slow done")
    assert "RETURNED" in output and code == 0


def test_sigint_lets_the_request_in_flight_finish_and_run_returns():
    reply, output, code = signal_during_slow_request(signal.SIGINT)
    assert reply == (200, b"slow done")
    assert "RETURNED" in output and code == 0


def test_background_run_ports_debug_restart_and_clean_exit():
    child = ServerProcess(os.path.join(APPS, "run_background.py"))
    try:
        child.wait_for_line("PORT")
        started = time.monotonic()
        output = child.output(timeout=20)
        assert time.monotonic() - started < 20
        assert child.process.returncode == 0, output
        assert "BEFORE [] False" in output
        assert "RUNNING 2 True hello" in output
        assert "DOUBLE houweb is already running on port" in output
        assert "AFTER [] False" in output
        assert "AGAIN hello" in output
    finally:
        child.kill()
