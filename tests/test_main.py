"""
``python -m houweb``: its options (in process) and the server it runs (in
child processes ended by PID).
"""

from __future__ import annotations

import json
import re
import signal
import socket
import time

import pytest

from houweb.__main__ import parse
from houweb.client import Service

from .children import Child, app, free_port, get, in_background, refuses

TAP_APP = app("tap_app.py")


# Options


def test_without_options_it_serves_on_port_8008_in_the_foreground():
    options = parse([])
    assert options.run_arguments()["port"] == 8008
    assert options["app"] == []
    assert options.reload_source_changes() is None


def test_mcp_switch_reaches_run():
    assert parse(["--mcp"]).run_arguments()["mcp"] is True
    assert parse([]).run_arguments()["mcp"] is False


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit) as exited:
        parse(["--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert "Examples:" in shown
    assert "python -m houweb --app myapp.py --debug" in shown
    assert "--log-format" in shown


def test_bad_option_exits_2_naming_it(capsys):
    with pytest.raises(SystemExit) as exited:
        parse(["--port", "abc"])
    assert exited.value.code == 2
    assert "--port: expected an integer, not 'abc'" in capsys.readouterr().err


def test_bad_log_format_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        parse(["--log-format", "xml"])
    assert "--log-format: expected text or json, not 'xml'" in capsys.readouterr().err


def test_reload_switches_set_reload_source_changes():
    assert parse(["--reload"]).reload_source_changes() is True
    assert parse(["--no-reload"]).reload_source_changes() is False


# The server, in a child process


def test_serves_an_app_on_the_port_given():
    with Child.houweb(f"--app={TAP_APP}", "--port=0") as child:
        port = child.port()
        assert get(port, "/hello") == (200, f"hello from port {port}")


def test_without_app_serves_the_demo():
    with Child.houweb("--port=0") as child:
        assert get(child.port(), "/hello") == (200, "Hello world")
        demo = Service(f"http://127.0.0.1:{child.port()}/api", timeout=10)
        assert demo.geo.vector_length("1", 2, 3) == 3.7416573867739413


def test_bad_option_fails_before_listening():
    with Child.houweb(f"--app={TAP_APP}", "--listen=udp:53") as child:
        assert child.wait() == 2
        assert "--listen: listen entry 'udp:53'" in child.output
        assert "listening" not in child.output


def test_busy_port_exits_1_naming_it_and_leaves_nothing_listening():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy, main = taken.getsockname()[1], free_port()
        with Child.houweb(f"--app={TAP_APP}", f"--port={main}", f"--extra-port={busy}") as child:
            assert child.wait() == 1
            assert f"Could not listen on port {busy} (interface 127.0.0.1)" in child.output
            assert refuses(main)


def test_debug_logs_one_line_per_request():
    with Child.houweb(f"--app={TAP_APP}", "--port=0", "--debug", "--no-access-log") as child:
        get(child.port(), "/hello?x=1")
        line = child.wait_for(r'"GET /hello\?x=1" 200 (\d+) (\d+\.\d)ms')
        assert int(line.group(1)) == len("hello from port ") + len(str(child.port()))


def test_log_format_json_writes_one_object_per_line():
    with Child.houweb(f"--app={TAP_APP}", "--port=0", "--log-format=json") as child:
        port = int(
            child.wait_for(r'"text": "houweb: listening on http://127.0.0.1:(\d+)/').group(1)
        )
        get(port, "/stop")
        assert child.wait() == 0
    events = [json.loads(line) for line in child.lines]
    listening = next(e for e in events if e["text"].startswith("houweb: listening on"))
    assert listening["level"] == "info"
    assert listening["log_namespace"] == "houweb"


def test_request_shutdown_from_a_handler_exits_0():
    with Child.houweb(f"--app={TAP_APP}", "--port=0") as child:
        assert get(child.port(), "/stop") == (200, "stopping")
        assert child.wait() == 0
        assert "houweb: stopped" in child.output


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_lets_a_slow_request_finish_and_exits_0(signum):
    with Child.houweb(f"--app={TAP_APP}", "--port=0") as child:
        port = child.port()
        reply = in_background(lambda: get(port, "/slow?seconds=1"))
        child.wait_for("REACHED /slow")  # the request reached its handler
        child.send_signal(signum)
        assert reply(20) == (200, "slow done")
        assert child.wait() == 0


def test_second_sigint_during_a_slow_request_stops_at_once():
    with Child.houweb(f"--app={TAP_APP}", "--port=0", "--shutdown-grace=60") as child:
        port = child.port()
        in_background(lambda: get(port, "/slow?seconds=60", timeout=60))
        child.wait_for("REACHED /slow")
        child.send_signal(signal.SIGINT)
        started = time.monotonic()
        eventually_stopped_accepting(port)
        child.send_signal(signal.SIGINT)
        assert child.wait() == 0
        assert time.monotonic() - started < 10


def eventually_stopped_accepting(port: int) -> None:
    """Wait until the first signal was handled: the port no longer accepts."""
    deadline = time.monotonic() + 10
    while not refuses(port):
        assert time.monotonic() < deadline, "still accepting"
        time.sleep(0.05)


def test_start_up_line_names_the_url_and_its_reach():
    with Child.houweb(f"--app={TAP_APP}", "--port=0") as child:
        line = child.wait_for(r"houweb: listening on (\S+) \((.+)\)")
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", line.group(1))
        assert line.group(2) == "loopback only"


def host_status(port: int, host: str) -> int:
    """The status of ``GET /hello`` sent to ``port`` with ``Host: host``."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(f"GET /hello HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        return int(conn.makefile("rb").readline().split()[1])


def test_allowed_host_option_sets_the_host_allow_list():
    with Child.houweb(
        f"--app={TAP_APP}", "--port=0", "--allowed-host=app.test", "--allowed-host=.corp.test"
    ) as child:
        port = child.port()
        assert host_status(port, "app.test") == 200
        assert host_status(port, "x.corp.test") == 200
        assert host_status(port, "localhost") == 400  # replaced, not added to
        assert host_status(port, "rebind.attacker.example") == 400


def test_loopback_server_refuses_foreign_host_names_by_default():
    with Child.houweb(f"--app={TAP_APP}", "--port=0") as child:
        port = child.port()
        assert host_status(port, f"localhost:{port}") == 200
        assert host_status(port, f"rebind.attacker.example:{port}") == 400
