"""houweb's log through Python's logging, or on stderr (houweb/_logging.py)."""

from __future__ import annotations

import os

from .support import APPS, ServerProcess


def run_logging_app(*args: str) -> str:
    child = ServerProcess(os.path.join(APPS, "logging_app.py"), *args)
    try:
        return child.output(timeout=30)
    finally:
        child.kill()


def test_an_application_that_configured_logging_gets_houwebs_log_through_it():
    output = run_logging_app()
    assert "DONE" in output, output
    lines = output.splitlines()
    assert any(
        line.startswith("PYLOG houweb INFO houweb: listening on http://127.0.0.1:")
        for line in lines
    ), output
    # A handler's exception is logged at error level, traceback included.
    assert any(line.startswith("PYLOG houweb ERROR ") for line in lines), output
    assert "RuntimeError: kaboom" in output
    assert "PYLOG houweb INFO houweb: stopped" in lines
    # No readable Twisted console lines besides: logging has it all.
    assert "[houweb#info]" not in output


def test_houweb_restores_what_it_changed_in_logging_when_it_stops():
    output = run_logging_app()
    assert "CHECK stopped True" in output
    assert "CHECK showwarning-kept-while-running True" in output
    assert "CHECK showwarning-kept True" in output
    # houweb's observer was removed: an event after the stop reaches no handler.
    assert "AFTER-STOP" not in output, output
