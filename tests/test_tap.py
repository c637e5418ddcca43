"""
The ``twistd houweb`` plugin: its options (in process) and twistd running it
(in child processes ended by PID).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time

import pytest
from twisted.python import usage

import houweb
from houweb._tap import HouwebService, Options, load_application, makeService, split_static

from .children import (
    Child,
    app,
    eventually,
    free_port,
    get,
    in_background,
    logged_port,
    refuses,
)

TAP_APP = app("tap_app.py")


def parsed(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


# Options


def test_mcp_switch_turns_on_the_mcp_tools():
    assert parsed("--mcp").run_arguments()["mcp"] is True
    assert parsed("--mcp").server_config().mcp is True


def test_defaults_are_run_defaults():
    assert parsed().run_arguments() == {
        "debug": False,
        # The one default that differs: servers log access, an embedded run() does not.
        "access_log": True,
        "mcp": False,
        "port": 8008,
        "interface": "127.0.0.1",
        "max_num_threads": 4,
        "max_in_memory_file_upload_size": None,
        "max_request_size": None,
        "settings": None,
        "shutdown_grace": 10.0,
        "idle_timeout": 60.0,
        "request_timeout": 300.0,
        "max_connections": 1000,
        "token": None,
        "metrics_path": "/metrics",
        "health_path": "/healthz",
        "ports": [],
        "listen": [],
    }


def test_options_become_run_arguments(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    arguments = parsed(
        "--port=0",
        "--debug",
        "--max-num-threads=2",
        "--max-in-memory-file-upload-size=100",
        "--max-request-size=1000",
        "--interface=::1",
        "--shutdown-grace=2.5",
        "--max-connections=50",
        f"--token-file={token}",
        "--extra-port=0",
        "--listen=tcp:0:interface=127.0.0.1",
        "--listen=tcp6:0:interface=\\:\\:1",
        "--allowed-host=a.test",
        "--allowed-host=.b.test",
    ).run_arguments()
    assert arguments["allowed_hosts"] == ["a.test", ".b.test"]
    assert arguments["port"] == 0 and arguments["debug"] is True
    assert arguments["max_num_threads"] == 2
    assert arguments["max_in_memory_file_upload_size"] == 100
    assert arguments["max_request_size"] == 1000
    assert arguments["interface"] == "::1" and arguments["shutdown_grace"] == 2.5
    assert arguments["token"] == "s3cret"
    assert arguments["max_connections"] == 50
    assert arguments["ports"] == [0]
    assert arguments["listen"] == ["tcp:0:interface=127.0.0.1", "tcp6:0:interface=\\:\\:1"]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--port=abc"], "--port: expected an integer, not 'abc'"),
        (["--port=70000"], "--port: port must be between 0 and 65535"),
        (["--max-num-threads=0"], "--max-num-threads: max_num_threads must be at least 1"),
        (["--max-request-size=-1"], "--max-request-size:"),
        (["--max-in-memory-file-upload-size=x"], "--max-in-memory-file-upload-size:"),
        (["--shutdown-grace=-1"], "--shutdown-grace:"),
        (["--shutdown-grace=soon"], "--shutdown-grace: expected a number"),
        (["--max-connections=0"], "--max-connections: max_connections must be at least 1"),
        (["--listen=udp:53"], "--listen: listen entry 'udp:53'"),
        (["--allowed-host="], "--allowed-host: allowed_hosts must be"),
        (["--extra-port=8008"], "--extra-port: ports [8008] repeats a port or the main port 8008"),
        (["--token-file=/nonexistent/token"], "--token-file: cannot read"),
        (["--static=/nonexistent/dir"], "--static: '/nonexistent/dir' is not a directory"),
        (["--app=/nonexistent/app.py"], "--app: no such file"),
        (["--app=no_such_module_here"], "--app: no module named 'no_such_module_here'"),
    ],
)
def test_each_bad_value_is_a_usage_error_naming_its_option(args, named):
    with pytest.raises(usage.UsageError) as caught:
        parsed(*args)
    assert named in str(caught.value)


def test_static_spec_splits_directory_and_prefix():
    assert split_static("public") == ("public", "/static")
    assert split_static("public:/files") == ("public", "/files")
    assert split_static("C:\\web") == ("C:\\web", "/static")
    assert split_static("C:\\web:/files") == ("C:\\web", "/files")


def test_help_ends_with_twistd_examples():
    usage_text = str(Options())
    assert "twistd -n houweb --app myapp.py" in usage_text
    assert "--listen ssl:8443:privateKey=key.pem:certKey=cert.pem" in usage_text


def test_an_app_file_is_imported_and_registers_its_handlers(registry, tmp_path):
    source = tmp_path / "tap_probe_app.py"
    source.write_text(
        "import houweb\n@houweb.urlHandler('/probe')\ndef probe(request):\n    return 'p'\n"
    )
    try:
        module = load_application(str(source))
        assert module.__file__ == str(source)
        assert str(tmp_path) in sys.path
        assert not registry.is_empty()
    finally:
        sys.modules.pop("tap_probe_app", None)
        sys.path.remove(str(tmp_path))


async def test_service_serves_while_running_and_stops_gracefully(registry, client):
    houweb.urlHandler("/hello")(lambda request: "hi")
    options = parsed("--port=0", "--app=json")  # any importable module will do
    top = makeService(options)
    (server_service,) = list(top)
    assert isinstance(server_service, HouwebService)
    top.privilegedStartService()
    top.startService()
    port = server_service.server.port_numbers()[0]
    assert (await client.get(port, "/hello")).text == "hi"
    await top.stopService()
    assert refuses(port)


# twistd in a child process


def test_twistd_help_lists_houweb():
    with Child.twistd("--help") as child:
        assert child.wait(20) == 0
        assert "houweb" in child.output


def test_twistd_houweb_answers_on_every_port_given():
    with Child.twistd(
        "-n",
        "--pidfile=",
        "houweb",
        f"--app={TAP_APP}",
        "--port=0",
        "--extra-port=0",
        "--listen=tcp:0:interface=127.0.0.1",
    ) as child:
        ports = child.ports(3)
        assert len(set(ports)) == 3
        for port in ports:
            assert get(port, "/hello") == (200, f"hello from port {port}")


def test_twistd_without_app_serves_the_demo():
    with Child.twistd("-n", "--pidfile=", "houweb", "--port=0") as child:
        status, body = get(child.port(), "/hello")
        assert (status, body) == (200, "Hello world")


def test_twistd_bad_option_fails_fast_naming_it():
    with Child.twistd(
        "-n", "--pidfile=", "houweb", "--app", TAP_APP, "--max-num-threads=0"
    ) as child:
        assert child.wait(20) != 0
        assert "--max-num-threads: max_num_threads must be at least 1, not 0" in child.output
        assert "listening" not in child.output


def test_twistd_busy_port_fails_naming_it_and_leaves_nothing_listening():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy, main = taken.getsockname()[1], free_port()
        with Child.twistd(
            "-n",
            "--pidfile=",
            "houweb",
            f"--app={TAP_APP}",
            f"--port={main}",
            f"--extra-port={busy}",
        ) as child:
            assert child.wait(20) != 0
            assert f"Could not listen on port {busy} (interface 127.0.0.1)" in child.output
            assert refuses(main)


def test_twistd_sigterm_lets_a_slow_request_finish():
    with Child.twistd("-n", "--pidfile=", "houweb", f"--app={TAP_APP}", "--port=0") as child:
        port = child.port()
        reply = in_background(lambda: get(port, "/slow?seconds=1"))
        child.wait_for("REACHED /slow")  # the request reached its handler
        child.send_signal(signal.SIGTERM)
        assert reply(20) == (200, "slow done")
        child.wait(20)  # twistd re-raises SIGTERM on itself once stopped
        assert "houweb: stopped" in child.output


def test_twistd_second_sigint_stops_at_once():
    with Child.twistd(
        "-n", "--pidfile=", "houweb", f"--app={TAP_APP}", "--port=0", "--shutdown-grace=60"
    ) as child:
        port = child.port()
        in_background(lambda: get(port, "/slow?seconds=60", timeout=60))
        child.wait_for("REACHED /slow")
        child.send_signal(signal.SIGINT)
        child.wait_for("Ctrl-C again stops at once")
        started = time.monotonic()
        child.send_signal(signal.SIGINT)
        child.wait(20)
        assert time.monotonic() - started < 10


def test_twistd_handlers_see_debug_and_ports_and_request_shutdown_stops_twistd_with_0():
    with Child.twistd(
        "-n", "--pidfile=", "houweb", f"--app={TAP_APP}", "--port=0", "--debug"
    ) as child:
        port = child.port()
        assert get(port, "/state") == (200, f"debug=True ports=[{port}]")
        assert get(port, "/stop") == (200, "stopping")
        assert child.wait(20) == 0, child.output
        assert "houweb: stopped" in child.output


def test_twistd_run_from_an_async_handler_fails_at_once_and_twistd_stops_with_0():
    # It blocked twistd's reactor for the grace plus 2 s, then blamed the
    # server for still stopping.
    with Child.twistd("-n", "--pidfile=", "houweb", f"--app={TAP_APP}", "--port=0") as child:
        status, body = get(child.port(), "/restart")
        assert status == 200 and "cannot be called on houweb's reactor thread" in body, body
        assert float(body.rsplit(" after ", 1)[1].rstrip("s")) < 1
        assert child.wait(20) == 0, child.output


def test_twistd_daemon_writes_its_pidfile_and_logfile(tmp_path):
    pidfile, logfile = tmp_path / "houweb.pid", tmp_path / "houweb.log"
    with Child.twistd(
        f"--pidfile={pidfile}", f"--logfile={logfile}", "houweb", f"--app={TAP_APP}", "--port=0"
    ) as launcher:
        assert launcher.wait(20) == 0  # the parent returns once the daemon started
    pid = int(pidfile.read_text())
    try:
        port = eventually(lambda: logged_port(logfile.read_text()))
        assert get(port, "/hello") == (200, f"hello from port {port}")
        os.kill(pid, signal.SIGTERM)
        eventually(lambda: not pidfile.exists())  # removed as the daemon ends
        eventually(lambda: not alive(pid))
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    """:returns: whether process ``pid`` (not a child of ours) still exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_twistd_static_option_serves_files(tmp_path):
    (tmp_path / "note.txt").write_text("a note")
    with Child.twistd(
        "-n", "--pidfile=", "houweb", f"--app={TAP_APP}", "--port=0", f"--static={tmp_path}:/files"
    ) as child:
        assert get(child.port(), "/files/note.txt") == (200, "a note")
