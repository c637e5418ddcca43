"""
reload_source_changes (spec §3.5): the helpers in process; restarts in child
processes that serve a copy of an application the tests edit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import sys
import threading
import urllib.request

import pytest

from houweb import _handover, _restart, _watch
from houweb._config import ServerConfig

from .children import Child, app, eventually, get
from .conftest import messages
from .test_tls import self_signed


def edit(path, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` in ``path`` the way editors save: write, then rename."""
    text = path.read_text().replace(old, new)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


@pytest.fixture
def copied(tmp_path):
    """The reload test applications, copied where the tests may edit them."""
    for name in ("reload_app.py", "reload_script.py"):
        shutil.copy(app(name), tmp_path / name)
    return tmp_path


def version(port: int) -> str:
    """:returns: ``"<VERSION> <pid>"`` as the application answers it."""
    status, body = get(port, "/version")
    assert status == 200, body
    return body


def answers(port: int, expected: str) -> bool:
    return version(port).startswith(expected + " ")


def serve_copy(copied, *more: str) -> Child:
    """``python -m houweb --app <copy>/reload_app.py --port 0 --debug``."""
    return Child.houweb(f"--app={copied / 'reload_app.py'}", "--port=0", "--debug", *more)


# Helpers, in process


def test_application_files_leave_out_the_standard_library_packages_and_houweb():
    files = _watch.application_files()
    assert os.path.realpath(__file__) in files
    assert os.path.realpath(json.__file__) not in files
    assert os.path.realpath(pytest.__file__) not in files
    assert os.path.realpath(_watch.__file__) not in files


def test_a_syntax_error_is_logged_with_its_traceback(tmp_path, logged):
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n")
    assert not _watch.compiles([str(broken)])
    text = messages(logged)
    assert f"houweb: {broken} has an error; still running the previous code" in text
    assert any(event.get("log_failure") for event in logged)


def test_valid_files_compile(tmp_path):
    fine = tmp_path / "fine.py"
    fine.write_text("x = 1\n")
    assert _watch.compiles([str(fine)])


def test_reloading_is_on_with_debug_unless_refused():
    reactor = object()
    plain, debug = ServerConfig.from_arguments(), ServerConfig.from_arguments(debug=True)
    assert _restart.reloading(reactor, None, plain) is reactor
    assert isinstance(_restart.reloading(reactor, None, debug), _restart.ReloadingReactor)
    assert _restart.reloading(reactor, False, debug) is reactor
    assert isinstance(_restart.reloading(reactor, True, plain), _restart.ReloadingReactor)


def test_restart_state_survives_the_command_line():
    state = _handover.RestartState(
        program=_handover.Program(argv=["app.py", "--x", "é"], cwd="/w", path="/w/app.py"),
        listeners=[_handover.Listener(0, "127.0.0.1", tls=True, port=8123, family=2, fd=7)],
        files=["/w/app.py"],
        log_format="json",
    )
    assert _handover.RestartState.from_json(state.to_json()) == state


def test_source_watcher_reports_a_saved_file(tmp_path):
    watched = tmp_path / "watched.py"
    watched.write_text("x = 1\n")
    stop = threading.Event()
    changes = _watch.SourceWatcher(lambda: {os.path.realpath(watched)}).changes(stop)
    saver = threading.Timer(0.5, lambda: edit(watched, "1", "2"))
    saver.start()
    try:
        assert next(changes) == [os.path.realpath(watched)]
    finally:
        saver.cancel()
        stop.set()


def test_source_watcher_still_watches_a_file_deleted_and_saved_again_later(tmp_path):
    watched = tmp_path / "watched.py"
    watched.write_text("x = 1\n")
    real = os.path.realpath(watched)
    deleted = threading.Event()
    rescans = {"before": 0, "after": 0}

    def files() -> set[str]:
        # As application_files() does: only files that exist.
        rescans["after" if deleted.is_set() else "before"] += 1
        return {real} if os.path.isfile(real) else set()

    stop = threading.Event()
    changes = _watch.SourceWatcher(files).changes(stop)
    found: list[list[str]] = []
    reader = threading.Thread(target=lambda: found.extend(changes), daemon=True)
    reader.start()
    try:
        eventually(lambda: rescans["before"] >= 2, every=0.05)  # watching, one rescan done
        watched.unlink()
        deleted.set()
        eventually(lambda: rescans["after"] >= 2, every=0.05)  # rescanned without the file
        watched.write_text("x = 2\n")
        eventually(lambda: found, timeout=10, every=0.05)
        assert found[0] == [real]
    finally:
        stop.set()
        reader.join(10)


# Restarts, in child processes


def test_editing_a_handler_file_changes_the_answer_on_the_same_port(copied):
    with serve_copy(copied) as child:
        port = child.port()
        before = version(port)
        assert before.startswith("one ")
        assert (
            "houweb-reload" in get(port, "/threads")[1].split()
        )  # what the --no-reload test relies on
        edit(copied / "reload_app.py", '"one"', '"two"')
        eventually(lambda: answers(port, "two"))
        assert child.wait_for(r"houweb: .*reload_app\.py changed, restarting")
        assert version(port).split()[1] == before.split()[1]  # the same process, exec'd


def test_a_restarted_program_knows_it_was_reloaded(copied):
    with serve_copy(copied) as child:
        port = child.port()
        assert get(port, "/role") == (200, "program")
        edit(copied / "reload_app.py", '"one"', '"two"')
        eventually(lambda: answers(port, "two"))
        assert get(port, "/role") == (200, "reloaded")


def test_a_syntax_error_keeps_the_previous_code_serving(copied):
    with serve_copy(copied) as child:
        port = child.port()
        edit(copied / "reload_app.py", 'VERSION = "one"', 'VERSION = "two')
        child.wait_for(r"reload_app\.py has an error; still running the previous code")
        child.wait_for("SyntaxError")
        assert answers(port, "one")
        edit(copied / "reload_app.py", 'VERSION = "two', 'VERSION = "three"')
        eventually(lambda: answers(port, "three"))


def test_an_application_that_fails_to_start_comes_back_after_a_fix(copied):
    with serve_copy(copied) as child:
        port = child.port()
        edit(copied / "reload_app.py", 'VERSION = "one"', "VERSION = 1 / 0")
        child.wait_for("the application failed to start; waiting for a change to retry")
        child.wait_for("ZeroDivisionError")
        # The port stays open meanwhile: 503, with the error (debug mode).
        status, body = get(port, "/version")  # never refused: at worst it waits in the backlog
        assert status == 503, body
        assert "failed to start" in body and "ZeroDivisionError: division by zero" in body
        edit(copied / "reload_app.py", "VERSION = 1 / 0", 'VERSION = "fixed"')
        eventually(lambda: answers(port, "fixed"))


def test_a_request_the_503_page_accepted_is_answered_before_the_fixed_program_starts(copied):
    # Once a fix was saved, the process answering 503 stopped accepting and
    # exec'd the fixed program at once: a connection it had accepted whose
    # request was still arriving was closed unanswered (a lost request, what
    # keeping the sockets open is for).
    import socket

    with serve_copy(copied) as child:
        port = child.port()
        edit(copied / "reload_app.py", 'VERSION = "one"', "VERSION = 1 / 0")
        child.wait_for("the application failed to start; waiting for a change to retry")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as arriving:
            arriving.sendall(f"GET /version HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
            # Answered after it: the connection above was accepted first.
            assert get(port, "/version")[0] == 503
            mark = child.mark()
            edit(copied / "reload_app.py", "VERSION = 1 / 0", 'VERSION = "fixed"')
            child.wait_for("answering 1 connection.s. accepted before restarting", after=mark)
            arriving.sendall(b"\r\n")
            answer = b""
            while b"\r\n\r\n" not in answer:
                received = arriving.recv(65536)
                assert received, f"closed unanswered after {answer!r}"
                answer += received
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert b"connection: close" in answer.lower()
        eventually(lambda: answers(port, "fixed"))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_application_fails_to_start_stops_gracefully(copied, signum):
    # Ctrl-C printed a KeyboardInterrupt traceback (exit status 1) and
    # SIGTERM killed the process outright (-15), unlike a server that runs.
    with serve_copy(copied) as child:
        port = child.port()
        edit(copied / "reload_app.py", 'VERSION = "one"', "VERSION = 1 / 0")
        child.wait_for("the application failed to start; waiting for a change to retry")
        assert get(port, "/version")[0] == 503
        mark = child.mark()
        child.send_signal(signum)
        assert child.wait() == 0, child.output
        child.wait_for("houweb: stopped", after=mark)
        assert "KeyboardInterrupt" not in child.output


def raw_get(port: int, path: str, headers: dict[str, str]) -> tuple[int, str]:
    """A GET with exactly these headers (urllib always sends its own Host)."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_host=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8")
    finally:
        connection.close()


def test_while_the_application_fails_to_start_the_503_keeps_the_servers_guards(copied):
    # The 503 page (with the traceback, in debug mode) was served to any Host
    # (a DNS-rebinding page) and without the token the server requires.
    (copied / "token.txt").write_text("s3cret")
    with serve_copy(copied, f"--token-file={copied / 'token.txt'}") as child:
        port = child.port()
        edit(copied / "reload_app.py", 'VERSION = "one"', "VERSION = 1 / 0")
        child.wait_for("the application failed to start; waiting for a change to retry")
        bearer = {"Authorization": "Bearer s3cret"}
        status, body = raw_get(port, "/version", {"Host": "localhost", **bearer})
        assert status == 503 and "ZeroDivisionError" in body, body
        status, body = raw_get(port, "/version", {"Host": "attacker.example", **bearer})
        assert status == 400 and "ZeroDivisionError" not in body, body
        status, body = raw_get(port, "/version", {"Host": "localhost"})
        assert status == 401 and "ZeroDivisionError" not in body, body


def test_requests_made_during_a_restart_are_all_answered(copied):
    with serve_copy(copied) as child:
        port = child.port()
        seen: list[str] = []
        failures: list[BaseException] = []
        stop = threading.Event()

        def keep_asking() -> None:
            while not stop.is_set():
                try:
                    seen.append(version(port).split()[0])
                except BaseException as exc:  # noqa: BLE001 - counted
                    failures.append(exc)

        asker = threading.Thread(target=keep_asking, daemon=True)
        asker.start()
        try:
            eventually(lambda: "one" in seen)
            edit(copied / "reload_app.py", '"one"', '"two"')
            eventually(lambda: seen.count("two") >= 20)
        finally:
            stop.set()
            asker.join(20)
        assert failures == []


def test_a_tls_port_is_kept_across_a_restart(copied):
    key, cert = self_signed(copied)
    secure = f"--listen=ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    context = ssl.create_default_context(cafile=cert)

    def secure_version(port: int) -> str:
        url = f"https://127.0.0.1:{port}/version"
        with urllib.request.urlopen(url, timeout=10, context=context) as response:
            return response.read().decode()

    with serve_copy(copied, secure) as child:
        port, tls_port = child.ports(2)
        assert secure_version(tls_port).startswith("one ")
        edit(copied / "reload_app.py", '"one"', '"two"')
        eventually(lambda: answers(port, "two"))
        assert secure_version(tls_port).startswith("two ")


def test_a_script_with_reload_source_changes_restarts_with_the_same_command_line(copied):
    with Child(str(copied / "reload_script.py"), "--flag", "value", cwd=str(copied)) as child:
        port = child.port()
        edit(copied / "reload_app.py", '"one"', '"two"')
        eventually(lambda: answers(port, "two"))
        assert get(port, "/argv") == (200, json.dumps(["--flag", "value"]))


def test_a_program_failing_after_it_adopted_the_sockets_still_answers_503(copied):
    # The new program adopted the kept main socket, then failed to bind an
    # extra port: adopting had closed the kept copy, so the port was closed
    # and clients refused until a fix.
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        script = copied / "reload_script.py"
        with Child(str(script), cwd=str(copied)) as child:
            port = child.port()
            edit(script, "run(port=0,", f"run(port=0, ports=[{busy}],")
            child.wait_for("the application failed to start; waiting for a change to retry")
            status, body = get(port, "/version")  # never refused
            assert status == 503, body
            edit(script, f"run(port=0, ports=[{busy}],", "run(port=0,")
            eventually(lambda: answers(port, "one"))


def test_the_settings_file_is_watched_too(copied):
    settings = copied / "reload_settings.py"
    settings.write_text("CORS_ALLOWED_ORIGINS = []\n")
    with serve_copy(copied, f"--settings={settings}") as child:
        child.port()
        mark = child.mark()
        edit(settings, "[]", '["http://a.test"]')
        child.wait_for(r"reload_settings\.py changed, restarting", after=mark)


def test_a_background_server_warns_and_does_not_reload():
    with Child(app("reload_background.py")) as child:
        assert child.wait() == 0
        assert "reload_source_changes needs a foreground server" in child.output
        assert "SERVING [" in child.output


@pytest.mark.skipif(sys.platform == "win32", reason="no os.execv restart on Windows")
def test_no_reload_keeps_debug_without_restarts(copied):
    with serve_copy(copied, "--no-reload") as child:
        port = child.port()
        # Nothing watches the sources: no watcher thread, so no restart can
        # come, now or later (a reloading server starts it before it serves).
        status, names = get(port, "/threads")
        assert status == 200 and "houweb-reload" not in names.split(), names
        edit(copied / "reload_app.py", '"one"', '"two"')
        assert answers(port, "one")
        assert "changed, restarting" not in child.output


HOUDINI_RELOAD_SCRIPT = """\
import os
import sys

import hwebserver

VERSION = "one"


@hwebserver.urlHandler("/version")
def version(request):
    return hwebserver.Response(f"{VERSION} {os.getpid()}")


@hwebserver.urlHandler("/argv")
def argv(request):
    return hwebserver.Response(" ".join(sys.argv[1:]))


hwebserver.run(0, debug=True, in_background=False, reload_source_changes=True)
"""


def test_a_houdini_script_run_by_houweb_run_restarts_as_houweb_run(tmp_path):
    # The restart ran the bare script, where `import hwebserver` fails: the
    # server answered 503 "failed to start" for ever after the first save.
    script = tmp_path / "houdini_script.py"
    script.write_text(HOUDINI_RELOAD_SCRIPT)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with Child.houweb("run", str(script), "an argument", cwd=str(elsewhere)) as child:
        port = child.port()
        assert answers(port, "one")
        edit(script, '"one"', '"two"')
        eventually(lambda: answers(port, "two"))
        assert get(port, "/argv") == (200, "an argument")
        assert "failed to start" not in child.output
