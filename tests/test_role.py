"""houweb._role: what started this process is said once, where it starts."""

from __future__ import annotations

import pytest

from houweb._handover import Listener, Program
from houweb._role import ProcessRole, Role, WorkerOf, this_process


def test_a_process_is_the_program_unless_its_start_says_otherwise():
    assert this_process.role is Role.PROGRAM  # pytest is nobody's restart nor worker
    fresh = ProcessRole()
    assert fresh.role is Role.PROGRAM
    assert fresh.worker is None and fresh.inherited == []
    assert fresh.program_to_run_again() == Program.current()


def test_a_reloaded_program_or_worker_runs_the_program_it_was_given():
    given = Program(argv=["app.py"], cwd="/w", path="/w/app.py")
    kept = Listener(0, "127.0.0.1", port=8123, fd=None)
    worker = ProcessRole()
    worker.begin(Role.WORKER, given, [kept], WorkerOf(number=1, parent_pid=42))
    assert worker.role is Role.WORKER
    assert worker.program_to_run_again() == given
    assert worker.worker == WorkerOf(1, 42)
    assert worker.take_inherited() == [kept]
    assert worker.inherited == []  # adopted: no longer the role's to close


def test_the_role_is_set_once():
    given = Program(argv=["app.py"], cwd="/w", path="/w/app.py")
    process = ProcessRole()
    process.begin(Role.RELOADED, given, [])
    with pytest.raises(RuntimeError, match="set once"):
        process.begin(Role.WORKER, given, [], WorkerOf(1, 42))
    assert process.role is Role.RELOADED
