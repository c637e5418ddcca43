"""houweb's log through Python's logging, or on stderr (houweb/_logging.py)."""

from __future__ import annotations

import os

from .children import Child, app, get
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


def test_python_m_houweb_logs_through_logging_an_app_configured():
    with Child.houweb(f"--app={app('logging_cli_app.py')}", "--port=0") as child:
        port = int(
            child.wait_for(
                r"^PYLOG houweb INFO houweb: listening on http://127.0.0.1:(\d+)/"
            ).group(1)
        )
        get(port, "/hello")
        child.wait_for(
            r'^PYLOG houweb\.access INFO 127\.0\.0\.1 - - \[.*\] "GET /hello HTTP/1\.1" 200 5$'
        )
        assert "[houweb#info]" not in child.output


def test_python_m_houweb_log_format_json_wins_over_logging():
    with Child.houweb(
        f"--app={app('logging_cli_app.py')}", "--port=0", "--log-format=json"
    ) as child:
        child.wait_for(r'"text": "houweb: listening on http://127.0.0.1:(\d+)/')
        assert "PYLOG houweb" not in child.output


def test_twisteds_legacy_log_lines_go_to_the_twisted_logger(caplog):
    # twisted.web and the reactor still log through twisted.python.log
    # ("HouwebSite starting on 8008", "(TCP Port 8008 Closed)"): events of
    # namespace 'log_legacy', which went to a logger of that name, not under
    # 'twisted' where an application configuring logging looks for them.
    import logging

    from twisted.logger import globalLogPublisher
    from twisted.python import log as legacy

    from houweb._logging import StdlibObserver

    observer = StdlibObserver()
    globalLogPublisher.addObserver(observer)
    try:
        with caplog.at_level(logging.INFO):
            legacy.msg("Site starting on 8008")
    finally:
        globalLogPublisher.removeObserver(observer)
    (record,) = [r for r in caplog.records if r.getMessage() == "Site starting on 8008"]
    assert (record.name, record.levelno) == ("twisted", logging.INFO)
