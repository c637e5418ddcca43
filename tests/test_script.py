"""
``python -m houweb run SCRIPT [ARGS...]``: scripts written for Houdini's
server, run unchanged in child processes ended by PID.
"""

from __future__ import annotations

import os

from houweb.client import Service

from .children import Child, app, get

HWEBSERVER_SCRIPT = app(os.path.join("houdini", "hwebserver_script.py"))
HOU_SCRIPT = app(os.path.join("houdini", "hou_script.py"))


def test_hwebserver_script_runs_unchanged_as_main_with_its_arguments():
    with Child.houweb("run", HWEBSERVER_SCRIPT, "0", "extra") as child:
        port = child.port()
        assert get(port, "/hello") == (200, "Hello from __main__ 0 extra")
        assert Service(f"http://127.0.0.1:{port}/api").geo.vector_length(2, 3, 6) == 7.0
        assert get(port, "/stop") == (200, "stopping")
        assert child.wait() == 0
        assert "SCRIPT RETURNED" in child.output


def test_hou_webserver_script_runs_and_the_scene_api_says_it_needs_houdini():
    with Child.houweb("run", HOU_SCRIPT, "0") as child:
        port = child.port()
        status, text = get(port, "/hello")
        assert status == 200
        assert text.startswith("hou.node is part of Houdini's scene API")
        assert get(port, "/stop") == (200, "stopping")
        assert child.wait() == 0


def test_a_real_hwebserver_module_is_left_alone(tmp_path):
    (tmp_path / "hwebserver.py").write_text("REAL = True\n")
    script = tmp_path / "script.py"
    script.write_text(
        "import hwebserver\nprint('REAL' if getattr(hwebserver, 'REAL', False) else 'HOUWEB')\n"
    )
    with Child.houweb("run", str(script), cwd=str(tmp_path)) as child:
        assert child.wait() == 0
        assert "REAL" in child.output.split()


def test_the_houweb_command_with_run_but_no_script_is_a_usage_error():
    with Child.houweb("run") as child:
        assert child.wait() == 2
        assert "usage: python -m houweb run SCRIPT" in child.output


def test_a_missing_script_exits_2_naming_it(tmp_path):
    with Child.houweb("run", str(tmp_path / "nope.py")) as child:
        assert child.wait() == 2
        assert "no such script" in child.output
