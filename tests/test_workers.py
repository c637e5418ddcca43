"""run(workers=N) and --workers: one set of ports served by N processes (POSIX)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

import houweb
from houweb import _workers

from .children import Child, app, eventually, get, refuses

pytestmark = pytest.mark.skipif(os.name != "posix", reason="workers need POSIX")

WORKERS_APP = app("workers_app.py")
TAP_APP = app("tap_app.py")


def fresh_get(port: int, path: str) -> str:
    """A GET on a new connection, so the kernel picks a process for it."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Connection": "close"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def serving_pids(port: int, wanted: int, timeout: float = 15) -> set[int]:
    """:returns: the pids answering ``/pid``, once ``wanted`` were seen (or after ``timeout`` s)."""
    pids: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(pids) < wanted and time.monotonic() < deadline:
        pids.add(int(fresh_get(port, "/pid")))
    return pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has ended too
        return stat.read().split(")")[-1].split()[0] != "Z"


def worker_pids(child: Child, count: int) -> list[int]:
    """:returns: the pids of the workers, once each of the ``count`` processes listens."""
    child.ports(count)
    return [
        int(child.wait_for(rf"started worker {n} \(pid (\d+)\)").group(1)) for n in range(1, count)
    ]


def test_two_processes_answer_on_the_same_port():
    with Child(WORKERS_APP, "2") as child:
        port = child.port()
        (worker,) = worker_pids(child, 2)
        assert serving_pids(port, 2) == {child.process.pid, worker}
        assert int(get(port, "/parent")[1]) in (child.process.pid, os.getpid())


def test_each_process_knows_whether_it_is_the_program_or_a_worker():
    with Child(WORKERS_APP, "2") as child:
        port = child.port()
        (worker,) = worker_pids(child, 2)
        roles: dict[int, str] = {}
        deadline = time.monotonic() + 15
        while len(roles) < 2 and time.monotonic() < deadline:
            pid, role = fresh_get(port, "/role").split()
            roles[int(pid)] = role
        assert roles == {child.process.pid: "program", worker: "worker"}


def test_sigterm_stops_every_worker_and_run_returns_in_each():
    with Child(WORKERS_APP, "3") as child:
        port = child.port()
        workers = worker_pids(child, 3)
        assert len(serving_pids(port, 3)) == 3
        child.send_signal(signal.SIGTERM)
        assert child.wait() == 0
        assert child.output.count("run() returned") == 3
        assert not any(alive(pid) for pid in workers)
        assert refuses(port)


def test_another_server_objects_request_shutdown_in_a_worker_leaves_the_workers_serving():
    # A worker forwarded every requestShutdown() to its parent, that of a
    # named server (running or not) too, and the whole server stopped.
    with Child(WORKERS_APP, "2") as child:
        port = child.port()
        (worker,) = worker_pids(child, 2)
        answers: dict[str, str] = {}
        deadline = time.monotonic() + 15
        while "worker" not in answers and time.monotonic() < deadline:
            _, role, asked = fresh_get(port, "/stop-other").split()
            answers[role] = asked
        assert answers["worker"] == "False"
        assert serving_pids(port, 2) == {child.process.pid, worker}


def test_a_worker_that_dies_is_started_again():
    with Child(WORKERS_APP, "2") as child:
        port = child.port()
        (worker,) = worker_pids(child, 2)
        os.kill(worker, signal.SIGKILL)
        found = child.wait_for(r"started worker 1 \(pid (\d+)\)", after=child.mark())
        replacement = int(found.group(1))
        assert replacement != worker
        assert f"worker 1 (pid {worker}) ended" in child.output
        assert eventually(lambda: replacement in serving_pids(port, 2))


def test_workers_stop_by_themselves_when_their_parent_is_killed():
    with Child(WORKERS_APP, "2") as child:
        port = child.port()
        (worker,) = worker_pids(child, 2)
        child.process.kill()
        child.wait()
        eventually(lambda: not alive(worker))
        assert refuses(port)


def test_ctrl_c_to_the_process_group_shuts_down_gracefully():
    process = subprocess.Popen(
        [sys.executable, WORKERS_APP, "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        lines = []
        while sum("listening on" in line for line in lines) < 2:  # both processes serve
            line = process.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=30)
        output = "".join(lines) + output
        assert process.returncode == 0, output
        assert output.count("run() returned") == 2, output
        assert "did not stop in time" not in output, output
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_python_m_houweb_workers_serves_the_app_from_two_processes():
    with Child.houweb(f"--app={TAP_APP}", "--port=0", "--workers=2") as child:
        port = child.port()
        worker_pids(child, 2)
        assert get(port, "/hello") == (200, f"hello from port {port}")
        assert get(port, "/stop") == (200, "stopping")
        assert child.wait() == 0


@pytest.mark.parametrize(
    ("value", "error"), [(0, ValueError), (-1, ValueError), ("2", TypeError), (True, TypeError)]
)
def test_bad_workers_values_are_refused(value, error):
    with pytest.raises(error, match="workers"):
        _workers.check_workers(value, background=False)


def test_workers_need_a_foreground_server():
    with pytest.raises(houweb.OperationFailed, match="foreground"):
        houweb.run(port=0, in_background=True, workers=2)


def test_workers_need_a_program_that_can_be_started_again():
    child = Child("-c", "import houweb; houweb.run(port=0, in_background=False, workers=2)")
    with child:
        assert child.wait() == 1
        assert "a script or a -m module" in child.output


def test_a_bad_workers_option_is_a_usage_error():
    with Child.houweb("--workers=none") as child:
        assert child.wait() == 2
        assert "--workers: expected an integer" in child.output


def test_a_houdini_script_run_by_houweb_run_has_workers_that_serve(tmp_path):
    # A worker ran the bare script, where `import hwebserver` fails: each
    # died at once and was started again every second, for ever.
    script = tmp_path / "houdini_workers.py"
    script.write_text(
        "import os\nimport hwebserver\n\n"
        "@hwebserver.urlHandler('/pid')\ndef pid(request):\n"
        "    return hwebserver.Response(str(os.getpid()))\n\n"
        "hwebserver.run(0, in_background=False, workers=2)\n"
    )
    with Child.houweb("run", str(script), cwd=str(tmp_path)) as child:
        (worker,) = worker_pids(child, 2)  # the worker listens too
        port = child.port()
        assert alive(worker)
        assert serving_pids(port, 2) == {child.process.pid, worker}
        assert "No module named" not in child.output
